"""E2CL: tokenizer, records, exploration, speculative inference, the sequence model and the ``e2cl``
trainer end to end at a tiny budget."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from rewardlab.cards import load_card
from rewardlab.e2cl.agents import SeqAgent, focus, is_error, prompt
from rewardlab.e2cl.datasets import Context, Record, counts, read_jsonl, write_jsonl
from rewardlab.e2cl.exploration import collect_demos, expert_records, teacher_free, teacher_guided
from rewardlab.e2cl.inference import run_episodes
from rewardlab.e2cl.model import ModelConfig, Seq2Seq, pad_batch
from rewardlab.e2cl.report import mean_ci, summary_table
from rewardlab.e2cl.sft import fit
from rewardlab.e2cl.tokenizer import Tokenizer
from rewardlab.errors import UserError
from rewardlab.household import HouseholdEnv
from rewardlab.household.world import ENTITIES
from rewardlab.store import TrialRecord
from rewardlab.training import train
from rewardlab.types import EvalResult, TrialResult


def test_tokenizer_covers_every_text_the_env_emits() -> None:
    tok = Tokenizer()
    env = HouseholdEnv()
    env.action_space.seed(0)
    unknown: set[str] = set()
    for seed in range(60):
        obs, _ = env.reset(seed=seed)
        unknown |= set(tok.unknown(obs["text"] + " " + obs["task"]))
        for t in range(20):
            action = env.action_space.sample() if (seed + t) % 3 else (env.expert_step() or "stand up")
            obs, _, term, trunc, info = env.step(action)
            unknown |= set(tok.unknown(f"{obs['text']} {info['feedback']} {info['step']}"))
            if term or trunc:
                break
    assert not unknown
    text = "Error, cup not in hand. Robot agent should hold cup first."
    assert tok.decode(tok.encode(text)) == text.lower()


class ScriptedAgent:
    """Proposes an infeasible step first at every step; knows the env's feedback; corrects with the expert."""

    def __init__(self, envs: Sequence[HouseholdEnv], wrong: str = "grab fridge"):
        self.envs, self.wrong = {id(e.task): e for e in envs}, wrong
        self.all = list(envs)

    def _env(self, ctx: Context) -> HouseholdEnv:
        return next(e for e in self.all if e.task is not None and e.task.instruction == ctx.task
                    and e.world is not None and e.world.observation_text() == ctx.observation)

    def plan(self, contexts: Sequence[Context]) -> list[str]:
        return [self.wrong for _ in contexts]

    def predict_feedback(self, contexts: Sequence[Context], steps: Sequence[str]) -> list[str]:
        return [self._env(c).check(s).text for c, s in zip(contexts, steps, strict=True)]

    def correct(self, contexts: Sequence[Context], steps: Sequence[str], feedbacks: Sequence[str]) -> list[str]:
        out = []
        for c in contexts:
            step = self._env(c).expert_step()
            out.append(step.text if step else "stand up")
        return out


def test_speculative_inference_corrects_and_logs() -> None:
    envs = [HouseholdEnv(split="train") for _ in range(3)]
    options = [{"task": t, "home": h} for t, h in (("turn on the tv", 0), ("wash the cup", 1), ("eat the apple", 2))]
    agent = ScriptedAgent(envs)
    spec = run_episodes(agent, envs, [0, 1, 2], speculative=True, options=options)
    assert all(s.success and s.executability == 1.0 for s in spec)
    assert all(s.fired == s.accepted == s.fired_right == s.accepted_right == s.steps for s in spec)
    entry = spec[0].log[0]
    assert entry["proposal"] == "grab fridge" and entry["predicted_feedback"].startswith("Error, ")
    assert entry["accepted"] and entry["executed"] == entry["correction"] and entry["env_feedback"] == "True"
    agent.correct = lambda contexts, steps, feedbacks: list(steps)  # type: ignore[method-assign]
    same = run_episodes(agent, envs, [0, 1, 2], speculative=True, options=options)
    # a "correction" equal to the refused proposal is re-checked, refused again, and not counted as accepted
    assert all(s.fired == s.steps and s.accepted == 0 and not s.success for s in same)
    assert not any(e["accepted"] for e in same[0].log)
    plain = run_episodes(agent, envs, [0, 1, 2], speculative=False, options=options)
    assert not any(s.success for s in plain) and all(s.executability == 0.0 and s.fired == 0 for s in plain)
    assert all(s.steps == envs[0].max_steps for s in plain)


def test_exploration_records_feedback_and_corrections(tmp_path: Path) -> None:
    demos = collect_demos(40, seed=0)
    assert sum(len(d.steps) for d in demos) >= 40
    assert [d.seed for d in demos] == [d.seed for d in collect_demos(40, seed=0)]
    envs: list[HouseholdEnv] = []
    guided, checked = teacher_guided(_Wrong(), demos)
    assert checked == sum(len(d.steps) for d in demos)
    corr = [r for r in guided if r.skill == "correction"]
    assert corr and all(r.source == "teacher_guided" and r.feedback.startswith("Error, ") for r in corr)
    expert_targets = {(c.observation, s) for d in demos for c, s in d.steps}
    assert all((r.context.observation, r.target) in expert_targets for r in corr)
    free, stats = teacher_free(_Wrong(), episodes=3, seed=0, batch=2)
    assert stats["env_steps"] == 3 * 30 and stats["errors"] == 90 and stats["corrections_kept"] == 90
    assert all(r.skill in ("feedback", "correction") and r.source == "teacher_free" for r in free)
    records = expert_records(demos, feedback=True) + guided + free
    write_jsonl(tmp_path / "all.jsonl", records)
    assert read_jsonl(tmp_path / "all.jsonl") == records
    c = counts(records)
    assert c["by_source"]["teacher_free"]["correction"] == 90 and c["error_kinds"]["cannot"] > 0
    # every kept teacher-free correction is also a feedback example "True" for the same context
    checks = [r for r in free if r.skill == "feedback" and r.target == "True"]
    assert len(checks) == 90 and {(r.context, r.step) for r in checks} == {
        (r.context, r.target) for r in free if r.skill == "correction"}
    del envs


class _Wrong:
    """An explorer that always tries to grab the fridge (the env refuses: 'fridge cannot be grabbed.')."""

    def plan(self, contexts: Sequence[Context]) -> list[str]:
        return ["grab fridge"] * len(contexts)

    def predict_feedback(self, contexts: Sequence[Context], steps: Sequence[str]) -> list[str]:
        return ["True"] * len(contexts)

    def correct(self, contexts: Sequence[Context], steps: Sequence[str], feedbacks: Sequence[str]) -> list[str]:
        return list(steps)


def _tiny_model(tok: Tokenizer, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(len(tok), tok.pad, tok.bos, tok.eos, ModelConfig(d_model=32, layers=1, ff=64))


def test_sequence_model_learns_the_three_skills_and_is_seeded(tmp_path: Path) -> None:
    tok = Tokenizer()
    ctx = Context("wash the cup", "You see cup (on counter, dirty).")
    records = [Record("plan", ctx, "walk to cup"),
               Record("feedback", ctx, "Error, cup not in hand. Robot agent should hold cup first.", step="wash cup"),
               Record("feedback", ctx, "True", step="walk to cup"),
               Record("correction", ctx, "walk to cup", step="wash cup", feedback="Error, cup not in hand.")]
    losses = fit(_tiny_model(tok), tok, records * 4, epochs=3, lr=1e-2, batch_size=4, seed=0)
    assert losses == fit(_tiny_model(tok), tok, records * 4, epochs=3, lr=1e-2, batch_size=4, seed=0)
    model = _tiny_model(tok)
    losses = fit(model, tok, records * 4, epochs=60, lr=1e-2, batch_size=4, seed=0)
    assert losses[-1] < 0.05 * losses[0]
    agent = SeqAgent(model, tok)
    assert agent.plan([ctx]) == ["walk to cup"]
    fb = agent.predict_feedback([ctx, ctx], ["wash cup", "walk to cup"])
    assert is_error(fb[0]) and fb[1] == "true"
    assert agent.correct([ctx], ["wash cup"], ["Error, cup not in hand."]) == ["walk to cup"]
    agent.save(tmp_path / "model.pt")
    assert SeqAgent.load(tmp_path / "model.pt").plan([ctx]) == ["walk to cup"]
    with pytest.raises(UserError, match="no E2CL agent"):
        SeqAgent.load(tmp_path / "missing.pt")
    assert "<feedback>" in prompt("feedback", ctx, "wash cup") and "<fb>" in prompt("correction", ctx, "a", "b")


TINY = {"sft_epochs": 1, "finetune_epochs": 1, "teacher_free_episodes": 2, "d_model": 16, "layers": 1, "cache": False}


def test_trainer_end_to_end(tmp_path: Path) -> None:
    card = load_card("household/unseen-homes")
    result = train(card, "env", "e2cl", steps=30, seed=0, run_dir=tmp_path / "e2cl", eval_episodes=2,
                   trainer="e2cl", preset_overrides=TINY)
    assert result.algo == "e2cl" and result.eval.episodes == 2
    comps = result.eval.components[0]
    assert 0.0 <= comps["executability"] <= 1.0 and "corrections_fired" in comps
    counts_ = json.loads((tmp_path / "e2cl" / "datasets" / "counts.json").read_text())
    assert set(counts_["by_source"]) == {"expert", "teacher_guided", "teacher_free"}
    assert counts_["exploration"]["env_steps"] > 0
    log = [json.loads(line) for line in (tmp_path / "e2cl" / "eval_log.jsonl").read_text().splitlines()]
    assert log and {"proposal", "predicted_feedback", "correction", "env_feedback"} <= set(log[0])
    assert result.steps >= 30
    sft = train(card, "env", "sft", steps=30, seed=0, run_dir=tmp_path / "sft", eval_episodes=2, trainer="e2cl",
                preset_overrides=TINY)
    assert (tmp_path / "sft" / "datasets" / "teacher_free.jsonl").read_text() == ""
    assert all(log["predicted_feedback"] is None for log in
               map(json.loads, (tmp_path / "sft" / "eval_log.jsonl").read_text().splitlines()))
    assert np.isclose(sft.steps, counts_["demo_steps"])


@pytest.mark.parametrize(("card", "reward", "overrides", "message"), [
    ("mujoco/Hopper-v5", "env", {}, "runs on household cards"),
    ("household/train", "program", {}, "use the reward source 'env'"),
    ("household/train", "env", {"epochs": 3}, "e2cl hyperparameters: field 'epochs': unknown field"),
    ("household/train", "env", {"lr": -1}, "e2cl hyperparameters: field 'lr'"),
])
def test_meaningless_settings_are_refused(tmp_path: Path, card: str, reward: str, overrides: dict, message: str) -> None:
    if reward == "program":
        reward = str(tmp_path / "progress.py")
        Path(reward).write_text("def compute_dense_reward(self, action):\n    return self.goal.progress\n")
    with pytest.raises(UserError, match=message):
        train(card, reward, "e2cl", steps=60, seed=0, run_dir=tmp_path, trainer="e2cl", preset_overrides=overrides)
    with pytest.raises(UserError, match="less than one episode"):
        train("household/train", "env", "e2cl", steps=5, seed=0, run_dir=tmp_path, trainer="e2cl")


def _trial(tmp: Path, algo: str, seed: int, success: list[bool], executability: list[float]) -> TrialRecord:
    ev = EvalResult(env_return=[float(s) for s in success], program_return=[None] * len(success), success=list(success),
                    length=[10] * len(success), components=[{"executability": e} for e in executability])
    trial_dir = tmp / f"{algo}{seed}"
    trial_dir.mkdir()
    steps = [{"proposal": "grab fridge", "correction": None}] * 6 + [  # 4 of 10 steps fire a correction
        {"proposal": "grab fridge", "correction": "walk to cup", "proposal_env_feedback": "Error, x",
         "correction_predicted_feedback": "True", "env_feedback": "True"},
        {"proposal": "grab fridge", "correction": "grab fridge", "proposal_env_feedback": "True",
         "correction_predicted_feedback": "Error, y", "env_feedback": "True"},
        {"proposal": "grab cup", "correction": "grab cup", "proposal_env_feedback": "Error, z",
         "correction_predicted_feedback": "True", "env_feedback": "Error, z"},
        {"proposal": "grab cup", "correction": "walk to cup", "proposal_env_feedback": "Error, z",
         "correction_predicted_feedback": "Error, w", "env_feedback": "Error, z"}]
    (trial_dir / "eval_log.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    return TrialRecord(id=seed, run_id="r", key=f"{algo}{seed}", task="household/unseen-homes", reward="env", algo=algo,
                       seed=seed, status="done", started=None, finished=None, error=None, dir=str(trial_dir),
                       program_id=None, result=TrialResult(eval=ev, trainer="e2cl", algo=algo))


def test_report_gives_mean_and_t_interval_over_seeds(tmp_path: Path) -> None:
    m, lo, hi = mean_ci([0.5, 0.6, 0.7])  # t_{0.975, 2} = 4.302653, sd 0.1
    half = 4.302653 * 0.1 / 3 ** 0.5
    assert m == pytest.approx(0.6) and (lo, hi) == pytest.approx((0.6 - half, 0.6 + half))
    assert mean_ci([0.9, 1.0, 1.0])[2] == 1.0  # clipped to the metric's range
    assert np.isnan(mean_ci([0.5])[1])
    with pytest.raises(UserError):
        mean_ci([])
    rows = summary_table([_trial(tmp_path, "e2cl", 0, [True, False], [1.0, 0.5]),
                          _trial(tmp_path, "e2cl", 1, [True, True], [1.0, 1.0]),
                          _trial(tmp_path, "sft", 0, [False, False], [0.2, 0.4])])
    assert rows[2].startswith("| household/unseen-homes | sft | 1 | 0.000 | 0.300 |")  # baselines first
    assert "| e2cl | 2 | 0.750 [" in rows[3] and "0.50/0.75, 1.00/1.00" in rows[3]
    # per trial: 4 fired of 10 steps, 3 proposals infeasible, 2 accepted (re-check not an error), 1 of
    # them executable, 1 identical to its proposal
    assert ("fired 40% of steps; the proposal was infeasible in 75%; accepted 4/8, 50% of them executable, "
            "50% identical to the proposal") in rows[3]


def test_report_gives_no_shares_of_accepted_corrections_when_none_was_accepted(tmp_path: Path) -> None:
    from rewardlab.e2cl.report import _corrections

    trial = _trial(tmp_path, "e2cl", 0, [False], [0.5])
    rejected = {"proposal": "grab cup", "correction": "walk to cup", "proposal_env_feedback": "Error, z",
                "correction_predicted_feedback": "Error, w", "env_feedback": "Error, z"}
    (Path(trial.dir or "") / "eval_log.jsonl").write_text(json.dumps(rejected) + "\n")
    assert _corrections([trial]) == "fired 100% of steps; the proposal was infeasible in 100%; accepted 0/1"


def test_focus_keeps_the_task_objects_and_their_furniture() -> None:
    obs = ("You are in the kitchen. You are close to the counter. You hold knife (clean). You see fridge (closed), "
           "cabinet (open), counter (dirty), sink (on), apple (on counter, clean), bread (in cabinet). "
           "You know bread is in cabinet in kitchen, sink is in kitchen.")
    out = focus("put the bread on the table and then wash the knife", obs)
    seen = out.split("You see ")[1].split(".")[0]
    # bread (task), cabinet (holds bread), sink (a known tool), counter (close to it); not fridge or apple
    assert seen == "cabinet (open), counter (dirty), sink (on), bread (in cabinet)"
    assert out.startswith("You are in the kitchen. You are close to the counter. You hold knife (clean).")
    assert out.endswith("You know bread is in cabinet in kitchen, sink is in kitchen.")
    assert focus("wash the cup", "You are in the kitchen. You hold nothing. You see nothing.").endswith("You see nothing.")


def test_decoding_is_grounded_and_corrections_differ_from_the_step() -> None:
    tok = Tokenizer()
    agent = SeqAgent(_tiny_model(tok, seed=3), tok, temperature=2.0, seed=0)  # untrained: names anything
    ctxs = [Context("wash the cup", "You are in the kitchen. You hold nothing. You see cup (on counter, dirty).")] * 64
    rooms_and_prompt = {"kitchen", "livingroom", "bedroom", "bathroom", "cup", "counter"}
    named = {w for step in agent.plan(ctxs) for w in tok.split(step) if w in ENTITIES}
    assert named and named <= rooms_and_prompt
    # the banned sequence is never produced, and only it is banned: greedy decoding, then the same again
    model = _tiny_model(tok, seed=4)
    src = pad_batch([tok.encode(prompt("correction", ctxs[0], "grab cup", "Error, x."))], tok.pad)
    first = model.generate(src, 8)[0]
    again = model.generate(src, 8, banned=[first])[0]
    assert again != first and model.generate(src, 8, banned=[[tok.eos]])[0] == first
