"""ONNX export (rewardlab/export.py): parity with the torch policy for PPO (VecNormalize folded in), SAC,
TD3 and MoE policies, checked with onnxruntime; the metadata; ``play`` without torch, matching the
torch policy's evaluation on the same seeds; and one-line errors for bad references."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rewardlab.errors import UserError
from rewardlab.export import (
    PARITY_TOLERANCE,
    OnnxPolicy,
    compare_with_torch,
    export_policy,
    load_export,
    load_model,
    load_normalization,
    locate_trial,
    play,
    run_episodes,
    torch_actor,
)
from rewardlab.runs.runner import run_experiment
from rewardlab.store import DB_NAME, RunStore
from rewardlab.training import train

TASK = "mujoco/InvertedPendulum-v5"
pytestmark = pytest.mark.slow


def rewardlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "rewardlab", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real run (runner, store, worker process): PPO with VecNormalize, the reference reward, 2048 steps."""
    from rich.console import Console

    folder = tmp_path_factory.mktemp("export-run")
    spec = folder / "tiny.yaml"
    spec.write_text(yaml.safe_dump({"name": "tiny", "description": "export test", "tasks": [TASK],
                                    "rewards": ["reference"], "algorithms": ["ppo"], "seeds": [0],
                                    "budget": {"steps": 2048}, "evaluation": {"episodes": 2}, "workers": 1}))
    out = folder / "runs"
    summary = run_experiment(spec, out=out, console=Console(quiet=True))
    assert summary.counts["done"] == 1
    return out, summary.run_id


TRIAL = "mujoco_InvertedPendulum-v5__reference__ppo__s0"


@pytest.fixture(scope="module")
def ppo_export(ppo_run: tuple[Path, str]) -> Path:
    out, run_id = ppo_run
    trial = locate_trial(f"{run_id}/{TRIAL}", out)
    return export_policy(trial, parity_observations=1000, evaluation_episodes=3).directory


def test_ppo_export_with_folded_normalisation_matches_torch(ppo_run: tuple[Path, str], ppo_export: Path) -> None:
    out, run_id = ppo_run
    parity = json.loads((ppo_export / "parity.json").read_text())
    assert parity["max_abs"] <= PARITY_TOLERANCE and parity["observations"] >= 1000
    # independently of the export's own check: fresh observations, far from the recorded ones
    trial = locate_trial(f"{run_id}/{TRIAL}", out)
    norm = load_normalization(trial.trial_dir)
    assert norm is not None and np.any(norm.mean != 0)  # VecNormalize was on, so folding matters
    reference = torch_actor(load_model(trial), norm)
    obs = np.random.default_rng(0).normal(0, 0.3, size=(500, 4))
    onnx_actions = OnnxPolicy(ppo_export / "policy.onnx")(obs)
    assert onnx_actions.shape == (500, 1)
    assert np.max(np.abs(onnx_actions - reference(obs))) <= PARITY_TOLERANCE
    # the clip to the action bounds is in the graph: a huge observation still gives a bounded action
    assert np.all(np.abs(OnnxPolicy(ppo_export / "policy.onnx")(np.full((1, 4), 50.0))) <= 3.0)


def test_metadata_describes_the_policy_for_a_robot(ppo_run: tuple[Path, str], ppo_export: Path) -> None:
    out, run_id = ppo_run
    meta = json.loads((ppo_export / "metadata.json").read_text())
    fields = {f["name"]: f for f in meta["observation"]["fields"]}
    assert fields["pole.angle"]["columns"] == [1] and fields["pole.angle"]["unit"] == "rad"
    assert fields["cart.velocity"]["slice"] == [2, 3] and fields["cart.velocity"]["unit"] == "m/s"
    assert meta["observation"]["normalization"]["folded_into_graph"] is True
    assert meta["action"]["low"] == [-3.0] and meta["action"]["high"] == [3.0] and "force" in meta["action"]["meaning"]
    assert meta["control"]["frequency_hz"] == pytest.approx(25.0)  # dt 0.04 s, measured from the env
    with RunStore(out / DB_NAME) as store:
        trial = store.trials(run_id)[0]
        assert meta["reward"]["program_sha256"] == trial.program_id is not None
        assert meta["reward"]["lineage"][0]["sha256"] == trial.program_id
        assert meta["training"]["steps"] == trial.result.steps >= 2048  # type: ignore[union-attr]
    assert meta["versions"]["onnxruntime"] != "?" and meta["versions"]["torch"] != "?"
    assert meta["parity"]["passed"] is True


def test_play_runs_without_torch_and_matches_the_torch_evaluation(ppo_export: Path, tmp_path: Path) -> None:
    code = ("import sys\nfrom rewardlab.cli import main\n"
            f"sys.argv = ['rewardlab', 'play', {str(ppo_export)!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "loaded = [m for m in ('torch', 'stable_baselines3') if m in sys.modules]\n"
            "print('LOADED', loaded)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env=dict(os.environ, COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout
    assert "max |return difference| 0" in done.stdout
    exported = load_export(ppo_export)
    result = play(exported)
    meta = exported.metadata["evaluation"]
    assert [e.seed for e in result.episodes] == meta["seeds"]
    assert result.returns == meta["env_return"] and compare_with_torch(exported, result) == 0.0
    # and a torch evaluation done here, on the same seeds, gives the same returns
    trial = locate_trial(Path(exported.metadata["training"]["run"]) / exported.metadata["training"]["trial"],
                         ppo_export.parents[4])
    act = torch_actor(load_model(trial), load_normalization(trial.trial_dir))
    assert run_episodes(exported.card, lambda o: act(o[None])[0], meta["seeds"]).returns == result.returns


def test_exports_are_never_overwritten(ppo_run: tuple[Path, str], ppo_export: Path) -> None:
    out, run_id = ppo_run
    trial = locate_trial(f"{run_id}/{TRIAL}", out)
    again = export_policy(trial, parity_observations=10, evaluation_episodes=1)
    assert again.directory != ppo_export and again.directory.name == "onnx-2"
    with pytest.raises(UserError, match="not empty"):
        export_policy(trial, dest=ppo_export, parity_observations=10)


@pytest.mark.parametrize(("algo", "moe"), [("sac", False), ("td3", False), ("ppo", True), ("sac", True)])
def test_sac_td3_and_moe_policies_export_with_parity(algo: str, moe: bool, tmp_path: Path) -> None:
    overrides = None
    if moe:
        from rewardlab.moe.sb3 import moe_policy_kwargs

        overrides = {"policy_kwargs": moe_policy_kwargs(algo, "topk", n_experts=4, widths=[32, 32])}
    steps = 2048 if algo == "ppo" else 300
    run_dir = tmp_path / f"{TASK.replace('/', '_')}-env-{algo}-0"
    train(TASK, "env", algo, steps, 0, run_dir, eval_episodes=1, eval_every=steps, preset_overrides=overrides)
    result = export_policy(locate_trial(run_dir), parity_observations=500, evaluation_episodes=2)
    assert result.parity.max_abs <= PARITY_TOLERANCE, result.parity
    assert result.metadata["training"]["moe"] is moe
    squashed = algo != "ppo"
    assert result.metadata["action"]["postprocess"] == ("rescaled from tanh [-1, 1]" if squashed else "clipped to bounds")
    exported = load_export(result.directory)
    assert compare_with_torch(exported, play(exported)) == 0.0


def test_bad_references_are_one_line(ppo_run: tuple[Path, str], tmp_path: Path) -> None:
    out, run_id = ppo_run
    assert_one_line_error(rewardlab("export", f"{run_id[:-1]}/{TRIAL}", "--out", str(out)), "no run", "did you mean",
                          run_id)
    assert_one_line_error(rewardlab("export", f"{run_id}/{TRIAL[:-3]}", "--out", str(out)), "no trial",
                          f"did you mean {run_id}/{TRIAL}")
    assert_one_line_error(rewardlab("export", f"{run_id}/{TRIAL}", "--out", str(out), "--format", "tflite"),
                          "unknown export format 'tflite'")
    assert_one_line_error(rewardlab("play", str(tmp_path)), "is not a policy export")
    typo = out / run_id / "trials" / TRIAL.replace("ppo", "pp0")
    assert_one_line_error(rewardlab("export", str(typo), "--out", str(out)), "no trial directory",
                          f"did you mean {out / run_id / 'trials' / TRIAL}")
    # a trial that failed before saving a model
    with RunStore(out / DB_NAME) as store:
        from rewardlab.store import NewTrial

        store.add_trials(run_id, [NewTrial(key="x|broken|ppo|1", task=TASK, reward="broken", algo="ppo", seed=1,
                                           trainer="sb3")])
        row = next(t for t in store.trials(run_id) if t.key == "x|broken|ppo|1")
        broken = out / run_id / "trials" / "broken"
        broken.mkdir()
        store.mark_running(row.id, broken)
        store.mark_failed(row.id, "reward program rejected [import]")
        store.add_trials(run_id, [NewTrial(key="x|tab|q|2", task=TASK, reward="env", algo="q_learning", seed=2,
                                           trainer="tabular")])
        tab = next(t for t in store.trials(run_id) if t.key == "x|tab|q|2")
        store.mark_running(tab.id, out / run_id / "trials" / "tab")
    assert_one_line_error(rewardlab("export", f"{run_id}/broken", "--out", str(out)), "has no saved model",
                          "failed: reward program rejected")
    assert_one_line_error(rewardlab("export", f"{run_id}/tab", "--out", str(out)), "trained by 'tabular'")


@pytest.mark.parametrize("router", ["prototyping", "expert_choice", "norm_sigmoid", "softmax", "modified_softmax",
                                    "dense_to_sparse", "tsallis", "soft_moe"])
def test_every_moe_router_exports_with_parity(router: str, tmp_path: Path) -> None:
    """Untrained MoE PPO policies (parity does not need training), one per router; topk is trained above."""
    from rewardlab.cards import load_card
    from rewardlab.moe.sb3 import moe_policy_kwargs
    from rewardlab.state import StateExtractor
    from rewardlab.training.sb3 import build_agent

    card = load_card(TASK)
    overrides = {"policy_kwargs": moe_policy_kwargs("ppo", router, n_experts=4, widths=[16, 16])}
    model, env = build_agent(card, StateExtractor(card, []), None, "ppo", 0, 1024, overrides)
    env.close()
    run_dir = tmp_path / "mujoco_InvertedPendulum-v5-env-ppo-0"
    run_dir.mkdir()
    model.save(run_dir / "model.zip")
    result = export_policy(locate_trial(run_dir), parity_observations=200, evaluation_episodes=1)
    assert result.parity.max_abs <= PARITY_TOLERANCE and result.metadata["training"]["moe"] is True


# -- what a new user met (generation probes, folders that are not trials, thin ManiSkill metadata) ---------
@pytest.fixture(scope="module")
def probe_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A generation run (offline provider, the labelled no-LLM baseline) whose probe r0-s0 trained a PPO
    policy: ``(out, run id, the probe's program id)``."""
    from rewardlab.config import GenerationConfig
    from rewardlab.text2reward.loop import generate

    out = tmp_path_factory.mktemp("export-generate") / "runs"
    cfg = GenerationConfig(provider="offline", samples=1, rounds=1, probe_steps=1024, eval_episodes=1, use_memory=False)
    result = generate(TASK, cfg, out=out)
    assert result.best_program_id is not None and (out / result.run_id / "r0-s0" / "model.zip").is_file()
    return out, result.run_id, result.best_program_id


def test_a_generation_probe_exports_by_run_and_by_directory_with_its_lineage(probe_run: tuple[Path, str, str]) -> None:
    out, run_id, program = probe_run
    by_name = locate_trial(f"{run_id}/r0-s0", out)  # as the review page names it: "probe r0-s0"
    by_dir = locate_trial(out / run_id / "r0-s0")  # no --env: the task comes from the run's record
    for found in (by_name, by_dir):
        assert found.card.id == TASK and found.algo == "ppo" and found.program_id == program
        assert found.run_id == run_id and found.trial_dir.name == "r0-s0"
    meta = export_policy(by_dir, parity_observations=50, evaluation_episodes=1).metadata
    with RunStore(out / DB_NAME) as store:
        expected = [p.id for p in store.lineage(program)]
    assert [node["sha256"] for node in meta["reward"]["lineage"]] == expected and expected[0] == program
    assert "lineage_note" not in meta["reward"] and meta["reward"]["program_sha256"] == program
    assert meta["training"]["run"] == run_id and meta["parity"]["passed"] is True
    with pytest.raises(UserError, match=f"generation run {run_id} has no probe 'r0-s9'; did you mean {run_id}/r0-s0"):
        locate_trial(f"{run_id}/r0-s9", out)
    (out / run_id / "r9-s0").mkdir()  # a probe whose training saved nothing
    with pytest.raises(UserError, match=f"probe {run_id}/r9-s0 has no saved model"):
        locate_trial(out / run_id / "r9-s0", out)
    with pytest.raises(UserError, match=f"is the generate run {run_id}, not a trial; .*e.g. {run_id}/r0-s0"):
        locate_trial(out / run_id, out)


def test_folders_that_are_not_trials_say_what_they_are(ppo_run: tuple[Path, str], tmp_path: Path) -> None:
    out, run_id = ppo_run
    trial_dir = out / run_id / "trials" / TRIAL
    logs = trial_dir / "tb-test"  # e.g. a tensorboard folder inside the trial
    logs.mkdir(exist_ok=True)
    with pytest.raises(UserError) as err:
        locate_trial(logs, out)
    assert "no model.zip in" in str(err.value) and f"the trial directory is {trial_dir}" in str(err.value)
    assert "did you mean" not in str(err.value)
    with pytest.raises(UserError, match=f"is the tiny run {run_id}, not a trial; .*e.g. {run_id}/{TRIAL}"):
        locate_trial(out / run_id, out)
    with RunStore(out / DB_NAME) as store:
        store.create_run("randomize-test", "randomize", "{}")
    (out / "randomize-test").mkdir()
    for ref in (out / "randomize-test", "randomize-test/ranges"):
        with pytest.raises(UserError, match="is a randomize run"):
            locate_trial(ref, out)
    with pytest.raises(UserError, match="no model.zip in .*not a trial directory"):
        locate_trial(tmp_path, out)


def test_report_paths_outside_the_working_directory_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardlab.paths import shown_path

    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert shown_path(tmp_path / "work" / "a" / "b.json") == "a/b.json"
    assert shown_path(tmp_path / "nu_feasible.json") == str(tmp_path.resolve() / "nu_feasible.json")  # not ../


def test_maniskill_metadata_gives_the_state_observation_layout() -> None:
    """ManiSkill cards read actors, not observation columns: the layout is measured from the live env and
    must be the order ManiSkill flattens ``state_dict`` into ``state``."""
    pytest.importorskip("mani_skill")
    from rewardlab.cards import load_card
    from rewardlab.export import describe_observation
    from rewardlab.sims.maniskill import make_raw_env

    card = load_card("maniskill/PickCube-v1")
    env = make_raw_env(card)
    try:
        obs = np.asarray(env.reset(seed=0)[0]).reshape(-1)
    finally:
        env.close()
    described = describe_observation(card, obs.size)
    assert described["layout_source"].startswith("measured: ManiSkill's obs_mode='state_dict'")
    fields = {f["name"]: f for f in described["fields"]}
    assert "unnamed" not in fields
    assert [c for f in described["fields"] for c in f["columns"]] == list(range(obs.size))  # every column, once
    assert fields["agent.qpos"]["slice"] == [0, 9] and fields["agent.qpos"]["same_as"] == "robot.qpos"
    assert fields["agent.qvel"]["unit"] == "rad/s / m/s" and fields["extra.tcp_pose"]["shape"] == [7]
    assert fields["extra.tcp_pose"]["same_as"] == ["robot.ee_position", "robot.ee_quaternion"]
    assert fields["extra.goal_pos"]["same_as"] == "goal_position" and fields["extra.goal_pos"]["unit"] == "m"
    # the columns hold what the names say: the flat state obs at the same reset, column by column
    from rewardlab.sims.maniskill import state_layout

    entries, _ = state_layout(card)
    for entry in entries:
        np.testing.assert_allclose(obs[entry["columns"]], entry["values"], atol=1e-6, err_msg=entry["name"])


def test_cards_whose_fields_are_not_observation_columns_say_so(tmp_path: Path) -> None:
    from rewardlab.cards import load_card
    from rewardlab.export import describe_observation

    # a card whose one field reads the simulator (MuJoCo's data), not an observation column
    data = {"id": "test/sim-fields-only", "simulator": "mujoco", "env_id": "InvertedPendulum-v5",
            "instruction": "Keep the pole up.", "episode_steps": 1000,
            "entities": {"cart": {"position": {"source": "data.qpos[0]", "shape": [], "unit": "m", "doc": "cart"}}},
            "action": {"shape": [1], "low": -3.0, "high": 3.0, "doc": "force"}}
    path = tmp_path / "sim-only.yaml"
    path.write_text(yaml.safe_dump(data))
    described = describe_observation(load_card(str(path)), 4)
    assert described["layout_source"].startswith("none: the card reads its fields")
    (unnamed,) = described["fields"]
    assert unnamed["name"] == "unnamed" and unnamed["columns"] == [0, 1, 2, 3]
    assert "not from observation columns" in unnamed["doc"]


def test_a_maniskill_export_writes_the_measured_layout(tmp_path: Path) -> None:
    """An (untrained: parity does not need training) ManiSkill PPO policy exported end to end: its
    metadata.json carries the measured state layout, not one ``unnamed`` field."""
    pytest.importorskip("mani_skill")
    from rewardlab.cards import load_card
    from rewardlab.state import StateExtractor
    from rewardlab.training.sb3 import build_agent

    card = load_card("maniskill/PickCube-v1")
    model, env = build_agent(card, StateExtractor(card, []), None, "ppo", 0, 1024, None)
    env.close()
    trial_dir = tmp_path / "maniskill_PickCube-v1-env-ppo-0"
    trial_dir.mkdir()
    model.save(trial_dir / "model.zip")
    result = export_policy(locate_trial(trial_dir), parity_observations=20, evaluation_episodes=1)
    meta = json.loads((result.directory / "metadata.json").read_text())
    assert meta["observation"]["dim"] == 42 and meta["observation"]["layout_source"].startswith("measured")
    names = [f["name"] for f in meta["observation"]["fields"]]
    assert names[:2] == ["agent.qpos", "agent.qvel"] and "extra.tcp_pose" in names and "unnamed" not in names
    assert result.parity.passed
