"""The ``e2cl`` trainer: E2CL (Wang et al., "E2CL: Exploration-based Error Correction Learning for
Embodied Agents", Findings of EMNLP 2024, arXiv:2409.03256) and its two baselines on the household env,
on the same expert-demonstration budget.

Algorithms (a spec's ``algorithms``):

- ``sft``: the sequence model trained on expert trajectories (plan records only); plain inference.
- ``sft_feedback``: SFT, then teacher-guided and teacher-free exploration; trained on plan + feedback
  records (no corrections); plain inference. The feedback skill is an auxiliary task only.
- ``e2cl``: the same exploration; trained on plan + feedback + correction records; speculative
  inference (propose -> predict feedback -> correct -> re-check, one round per step).

:meth:`E2CLTrainer.train` reads in the paper's order: (1) collect expert demonstrations until they hold
``budget.steps`` env steps; (2) SFT on them; (3) teacher-guided and teacher-free exploration with the
SFT agent; (4) one more round of training on the algorithm's records; (5) evaluate on the card's split.

Every algorithm gets the same schedule (``sft_epochs`` on the demonstrations, then ``finetune_epochs``
on its own records, ``sft`` on the demonstrations again), so differences come from the data and the
inference, not from more updates. Stages shared between trials of one seed (the SFT model, the
exploration data) are cached under ``$REWARDLAB_CACHE/e2cl`` keyed by everything that decides them,
including the source of this package and of the household env, so the same seed gives the same
result with or without the cache.

Deviations from the paper, labelled: a ~0.1M-parameter Transformer trained from scratch (not Flan-T5);
the last 6 steps of history in prompts (not the whole episode); teacher-free corrections from the expert
planner (not GPT-4o), filtered by the env; the final training continues from the SFT weights (the paper
runs one SFT pass on all data from the pretrained LM); the episode ends when the goal holds (no END step);
prompts carry the observation focused on the task's objects (:func:`rewardlab.e2cl.agents.focus`);
steps are decoded with arguments grounded in the prompt, never the step just taken, and a correction
never the erroneous step itself (:class:`rewardlab.e2cl.agents.SeqAgent`); teacher-free exploration also
keeps the env's check of each kept correction as a feedback example (:func:`rewardlab.e2cl.exploration.teacher_free`);
the feedback records are class-balanced (:func:`balance_feedback`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from rewardlab.cards import EnvCard
from rewardlab.config import TrainConfig, validate_config
from rewardlab.e2cl.agents import SeqAgent, is_error
from rewardlab.e2cl.datasets import Record, counts, read_jsonl, write_jsonl
from rewardlab.e2cl.exploration import collect_demos, expert_records, teacher_free, teacher_guided
from rewardlab.e2cl.inference import EpisodeStats, run_episodes
from rewardlab.e2cl.model import ModelConfig, Seq2Seq
from rewardlab.e2cl.sft import fit
from rewardlab.e2cl.tokenizer import Tokenizer
from rewardlab.errors import UserError
from rewardlab.household.env import HouseholdEnv
from rewardlab.paths import cache_dir
from rewardlab.runtime import limit_threads
from rewardlab.sources import NativeReward, ResolvedReward
from rewardlab.training.evaluation import eval_seed
from rewardlab.types import EvalResult, TrialResult

ALGORITHMS = ("sft", "sft_feedback", "e2cl")


class E2CLConfig(BaseModel):
    """The trainer's settings (a spec's ``hyperparameters``); each field is one line of help."""

    model_config = ConfigDict(extra="forbid")
    sft_epochs: int = Field(default=30, ge=1, le=10_000, description="epochs of SFT on the expert demonstrations")
    finetune_epochs: int = Field(default=10, ge=0, le=10_000, description="epochs on the algorithm's records after SFT")
    lr: float = Field(default=2e-3, gt=0, le=1.0, description="Adam learning rate")
    batch_size: int = Field(default=32, ge=1, le=4096, description="examples per update")
    teacher_free_episodes: int = Field(default=64, ge=0, le=100_000, description="episodes of teacher-free exploration")
    explore_temperature: float = Field(default=1.0, ge=0.0, le=5.0,
                                       description="sampling temperature of the agent's steps during exploration")
    d_model: int = Field(default=64, ge=8, le=1024, description="model width")
    layers: int = Field(default=2, ge=1, le=12, description="encoder layers (one decoder layer)")
    feedback_true_ratio: float = Field(default=1.0, gt=0, le=1000.0,
                                       description="'True' feedback records kept per error feedback record (class balance)")
    cache: bool = Field(default=True, description="reuse the SFT model and exploration data of an identical earlier trial")


def _code_hash() -> str:
    """The source of the E2CL package and the household env: a changed rule or model invalidates caches."""
    h = hashlib.sha256()
    for pkg in ("e2cl", "household"):
        for path in sorted((Path(__file__).parents[1] / pkg).glob("*.py")):
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


class _Stages:
    """Cached pipeline stages: a directory per key, written atomically."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def path(self, key: dict[str, Any]) -> Path | None:
        if not self.enabled:
            return None
        digest = hashlib.sha256(json.dumps({**key, "code": _code_hash()}, sort_keys=True).encode()).hexdigest()[:24]
        return cache_dir() / "e2cl" / digest

    @staticmethod
    def publish(tmp: Path, final: Path) -> None:
        try:
            tmp.rename(final)
        except OSError:  # another worker finished the same stage first: theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)


def _new_model(tok: Tokenizer, cfg: E2CLConfig, seed: int) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(len(tok), tok.pad, tok.bos, tok.eos, ModelConfig(d_model=cfg.d_model, layers=cfg.layers))


class E2CLTrainer:
    """The ``e2cl`` trainer (see module docstring)."""

    name = "e2cl"
    algorithms = ALGORITHMS

    def validate(self, card: EnvCard, config: TrainConfig) -> None:
        if card.simulator != "household":
            raise UserError(f"the e2cl trainer runs on household cards (household/...), not {card.id} "
                            f"(simulator {card.simulator!r})")
        validate_config(E2CLConfig, config.overrides, "e2cl hyperparameters")
        if config.budget.steps < card.episode_steps:
            raise UserError(f"budget.steps is the expert-demonstration budget in env steps; {config.budget.steps} "
                            f"is less than one episode ({card.episode_steps} steps)")

    def train(self, card: EnvCard, reward: ResolvedReward, config: TrainConfig, run_dir: Path,
              callbacks: Sequence[Any] = (), progress: Callable[[int, int], None] | None = None,
              check: bool = True) -> TrialResult:
        """Collect data, train and evaluate one E2CL agent (or baseline) into ``run_dir``: ``model.pt``,
        ``datasets/*.jsonl`` with ``datasets/counts.json``, ``eval_log.jsonl`` (every evaluation step:
        proposal, predicted feedback, correction, env feedback) and ``result.json``.

        :raises UserError: a reward other than the env's own (E2CL learns from demonstrations and
            feedback, not from a reward program), or settings :meth:`validate` refuses
        """
        limit_threads()
        start = time.perf_counter()
        self.validate(card, config)
        if not isinstance(reward, NativeReward):
            raise UserError("the e2cl trainer learns from demonstrations and env feedback, not from a reward "
                            "program: use the reward source 'env'")
        cfg = validate_config(E2CLConfig, config.overrides, "e2cl hyperparameters")
        seed, algo, demo_steps = config.seed, config.algo, config.budget.steps
        stages = _Stages(cfg.cache)
        tok = Tokenizer()
        report = progress or (lambda done, total: None)
        total_work = 4

        # (1) expert demonstrations on the training split, and (2) SFT on their plan records
        demos = collect_demos(demo_steps, seed, "train", card.episode_steps)
        demo_records = expert_records(demos, feedback=algo != "sft")
        sft_key = {"stage": "sft", "seed": seed, "demo_steps": demo_steps, "max_steps": card.episode_steps,
                   **cfg.model_dump(exclude={"cache", "finetune_epochs", "teacher_free_episodes", "explore_temperature"})}
        model = self._sft(tok, cfg, seed, [r for r in demo_records if r.skill == "plan"], stages.path(sft_key))
        report(1, total_work)

        # (3) teacher-guided and teacher-free exploration with the SFT agent
        explore_stats: dict[str, int] = {}
        explored: list[Record] = []
        if algo != "sft":
            explore_key = {**sft_key, "stage": "explore", "teacher_free_episodes": cfg.teacher_free_episodes,
                           "explore_temperature": cfg.explore_temperature}
            explored, explore_stats = self._explore(model, tok, cfg, seed, demos, card.episode_steps,
                                                    stages.path(explore_key))
        report(2, total_work)

        # (4) the algorithm's training records: SFT sees plans only, SFT+feedback adds feedback records,
        #     E2CL adds the corrections too
        keep = {"sft": {"plan"}, "sft_feedback": {"plan", "feedback"}, "e2cl": {"plan", "feedback", "correction"}}[algo]
        records = [r for r in demo_records + explored if r.skill in keep]
        records, balance = balance_feedback(records, cfg.feedback_true_ratio, seed)
        data_dir = run_dir / "datasets"
        for source in ("expert", "teacher_guided", "teacher_free"):
            write_jsonl(data_dir / f"{source}.jsonl", [r for r in records if r.source == source])
        data_counts = {**counts(records), "exploration": explore_stats, "feedback_balance": balance, "demo_episodes": len(demos),
                       "demo_steps": sum(len(d.steps) for d in demos)}
        (data_dir / "counts.json").write_text(json.dumps(data_counts, indent=1))
        final_key = {**sft_key, "stage": f"final-{algo}", "finetune_epochs": cfg.finetune_epochs,
                     "teacher_free_episodes": cfg.teacher_free_episodes, "explore_temperature": cfg.explore_temperature}
        losses = self._finetune(model, tok, cfg, seed, records, stages.path(final_key))
        agent = SeqAgent(model, tok)
        agent.save(run_dir / "model.pt")
        report(3, total_work)

        # (5) evaluation on the card's split: plain inference, or speculative for E2CL
        split = str(card.make_kwargs.get("split", "train"))
        episodes = config.evaluation.episodes
        envs = [HouseholdEnv(split=split, max_steps=card.episode_steps) for _ in range(episodes)]
        stats = run_episodes(agent, envs, [eval_seed(seed) + i for i in range(episodes)], speculative=algo == "e2cl")
        with (run_dir / "eval_log.jsonl").open("w") as f:
            for i, st in enumerate(stats):
                for entry in st.log:
                    f.write(json.dumps({"episode": i, **entry}) + "\n")
        final = _eval_result(stats)
        report(4, total_work)
        env_steps = data_counts["demo_steps"] + explore_stats.get("env_steps", 0) + explore_stats.get("guided_checks", 0)
        result = TrialResult(curve=[final.point(env_steps)], eval=final, wall_s=time.perf_counter() - start,
                             steps=int(env_steps), model_path=str(run_dir / "model.pt"), trainer=self.name, algo=algo)
        (run_dir / "result.json").write_text(result.to_json(indent=1))
        (run_dir / "train_log.json").write_text(json.dumps({"finetune_losses": losses, "config": cfg.model_dump()}, indent=1))
        return result

    # -- stages ------------------------------------------------------------------------------------
    def _sft(self, tok: Tokenizer, cfg: E2CLConfig, seed: int, plan_records: list[Record], cached: Path | None) -> Seq2Seq:
        model = _new_model(tok, cfg, seed)
        if cached is not None and (cached / "model.pt").is_file():
            model.load_state_dict(torch.load(cached / "model.pt", weights_only=True))
            return model
        fit(model, tok, plan_records, cfg.sft_epochs, cfg.lr, cfg.batch_size, seed)
        if cached is not None:
            tmp = cached.with_name(cached.name + f".tmp{time.time_ns()}")
            tmp.mkdir(parents=True)
            torch.save(model.state_dict(), tmp / "model.pt")
            _Stages.publish(tmp, cached)
        return model

    def _finetune(self, model: Seq2Seq, tok: Tokenizer, cfg: E2CLConfig, seed: int, records: list[Record],
                  cached: Path | None) -> list[float]:
        if cached is not None and (cached / "model.pt").is_file():
            model.load_state_dict(torch.load(cached / "model.pt", weights_only=True))
            return list(json.loads((cached / "losses.json").read_text()))
        losses = fit(model, tok, records, cfg.finetune_epochs, cfg.lr, cfg.batch_size, seed + 1)
        if cached is not None:
            tmp = cached.with_name(cached.name + f".tmp{time.time_ns()}")
            tmp.mkdir(parents=True)
            torch.save(model.state_dict(), tmp / "model.pt")
            (tmp / "losses.json").write_text(json.dumps(losses))
            _Stages.publish(tmp, cached)
        return losses

    def _explore(self, model: Seq2Seq, tok: Tokenizer, cfg: E2CLConfig, seed: int, demos: list[Any],
                 max_steps: int, cached: Path | None) -> tuple[list[Record], dict[str, int]]:
        if cached is not None and (cached / "records.jsonl").is_file():
            return read_jsonl(cached / "records.jsonl"), json.loads((cached / "stats.json").read_text())
        explorer = SeqAgent(model, tok, temperature=cfg.explore_temperature, seed=seed)
        guided, checks = teacher_guided(explorer, demos, "train", max_steps)
        free, stats = teacher_free(explorer, cfg.teacher_free_episodes, seed, "train", max_steps)
        stats = {**stats, "guided_checks": checks}
        records = guided + free
        if cached is not None:
            tmp = cached.with_name(cached.name + f".tmp{time.time_ns()}")
            write_jsonl(tmp / "records.jsonl", records)
            (tmp / "stats.json").write_text(json.dumps(stats))
            _Stages.publish(tmp, cached)
        return records, stats


def balance_feedback(records: list[Record], true_ratio: float, seed: int) -> tuple[list[Record], dict[str, int]]:
    """Keep every error feedback record and at most ``true_ratio`` times as many ``True`` ones.

    Every expert step is a ``True`` example, so without this the feedback data is mostly ``True``
    (6,008 expert + 1,700 explored ``True`` against 450 errors in a 6,000-step run) and the model
    predicts ``True`` for every step: speculative inference never fires. ``True`` records from
    exploration are kept first (each is paired with an error in a similar context), then expert
    ones, shuffled with ``seed``. Deviation (labelled): the paper's feedback data come from exploration
    only and it does not say how it balances them.

    :return: the records (other skills untouched, order kept) and counts ``errors``, ``true_kept``, ``true_dropped``
    """
    fb = [i for i, r in enumerate(records) if r.skill == "feedback"]
    errors = [i for i in fb if is_error(records[i].target)]
    trues = [i for i in fb if not is_error(records[i].target)]
    if not fb:
        return records, {"errors": 0, "true_kept": 0, "true_dropped": 0}
    rng = np.random.default_rng(seed)
    explored = [i for i in trues if records[i].source != "expert"]
    expert = [i for i in trues if records[i].source == "expert"]
    ranked = [*(explored[j] for j in rng.permutation(len(explored))), *(expert[j] for j in rng.permutation(len(expert)))]
    keep_true = set(ranked[: int(round(true_ratio * len(errors)))])
    keep = keep_true | set(errors)
    kept = [r for i, r in enumerate(records) if r.skill != "feedback" or i in keep]
    return kept, {"errors": len(errors), "true_kept": len(keep_true), "true_dropped": len(trues) - len(keep_true)}


def _eval_result(stats: list[EpisodeStats]) -> EvalResult:
    """Episodes as an :class:`EvalResult`: return = success (the env's reward is 1 at success), and
    per episode the components ``executability`` (executable steps / steps) and the correction counts."""
    return EvalResult(
        env_return=[float(s.success) for s in stats],
        program_return=[None for _ in stats],
        success=[s.success for s in stats],
        length=[s.steps for s in stats],
        components=[{"executability": s.executability, "corrections_fired": float(s.fired),
                     "corrections_accepted": float(s.accepted), "fired_on_infeasible": float(s.fired_right),
                     "accepted_executable": float(s.accepted_right)} for s in stats],
    )


__all__ = ["ALGORITHMS", "E2CLConfig", "E2CLTrainer", "balance_feedback"]
