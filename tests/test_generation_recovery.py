"""Generation never loses work and replays exactly: a failed request ends a run ``interrupted`` with its
finished candidates and best program kept, ``--resume`` continues it to the result an uninterrupted run
gets, a replay of a reject-then-fix generation with the correction memory on is exact, and the CLI says
what happened (waiting and retries, no candidate passed, per-env programs) in one line each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llm_server import BROKEN_CODE, GOOD_CODE, ScriptedLLMServer

from rewardlab.store import RunStore
from rewardlab.text2reward.loop import DB_NAME, GenerationConfig, generate

EVIL = "```python\nimport os\ndef compute_dense_reward(self, action):\n    return 0.0\n```"
GOOD_2 = GOOD_CODE.replace("5.0", "3.0")
GOOD_3 = GOOD_CODE.replace("5.0", "2.0")
PER_ENV = """```python
import math
def compute_dense_reward(self, action, obs):
    d = self.robot.ee_position - self.obj1.position
    return -math.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
```"""
FAIL = ("status", 503, None, "the model is overloaded")


def _cfg(server: ScriptedLLMServer, **kw: object) -> GenerationConfig:
    base = dict(provider="openai", model="scripted-model", base_url=server.base_url, api_key="test", samples=2,
                rounds=2, probe_steps=0, use_memory=False, max_retries=1, timeout_s=10.0)
    return GenerationConfig(**{**base, **kw})


def _candidates(out: Path, run_id: str) -> list[tuple]:
    with RunStore(out / DB_NAME) as store:
        return [(c.round, c.sample, c.attempt, c.program_id, c.status, c.score) for c in store.candidates(run_id=run_id)]


def test_a_failed_request_keeps_finished_work_and_resume_finishes_exactly(tmp_path: Path, llm_server) -> None:
    # the reference: the same replies, no failure
    llm_server.script(("code", [GOOD_CODE, EVIL]), ("code", GOOD_2), ("code", [GOOD_3, GOOD_2]))
    whole = generate("metaworld/drawer-open-v3", _cfg(llm_server), out=tmp_path / "whole")
    assert whole.status == "done"

    # round 1 (a reject, then its fix) finishes; the round-2 request fails after its retry
    llm_server.requests.clear()
    llm_server.script(("code", [GOOD_CODE, EVIL]), ("code", GOOD_2), FAIL, FAIL)
    cut = generate("metaworld/drawer-open-v3", _cfg(llm_server), out=tmp_path / "cut")
    assert cut.status == "interrupted" and "HTTP 503" in cut.stopped and "overloaded" in cut.stopped
    assert cut.best_program_id is not None and (cut.run_dir / "best_reward.py").is_file()
    assert (cut.run_dir / "generation.json").is_file()
    with RunStore(tmp_path / "cut" / DB_NAME) as store:
        run = store.get_run(cut.run_id)
        assert run.status == "interrupted" and "HTTP 503" in run.reason and "\n" not in run.reason
        assert run.holder_pid is None  # the lease is free for --resume
    assert len(_candidates(tmp_path / "cut", cut.run_id)) == 3

    # --resume answers the finished requests from the run's own replies and asks only the rest
    llm_server.requests.clear()
    llm_server.script(("code", [GOOD_3, GOOD_2]))
    resumed = generate(None, _cfg(llm_server, timeout_s=20.0), out=tmp_path / "cut", resume=cut.run_id)
    assert len(llm_server.requests) == 1 and llm_server.requests[0]["n"] == 2
    assert resumed.status == "done" and resumed.run_id == cut.run_id
    assert _candidates(tmp_path / "cut", cut.run_id) == _candidates(tmp_path / "whole", whole.run_id)
    assert resumed.best_program_id == whole.best_program_id and resumed.best_score == whole.best_score


def test_resume_refuses_a_finished_run_and_an_unknown_one(tmp_path: Path) -> None:
    import pytest

    from rewardlab.errors import UserError

    cfg = GenerationConfig(provider="offline", samples=1, rounds=1, probe_steps=0, use_memory=False)
    done = generate("metaworld/reach-v3", cfg, out=tmp_path)
    with pytest.raises(UserError, match="finished; nothing to resume"):
        generate(None, cfg, out=tmp_path, resume=done.run_id)
    with pytest.raises(UserError, match="no generation run 'generate-nope'"):
        generate(None, cfg, out=tmp_path, resume="generate-nope")


def test_replay_of_a_reject_then_fix_generation_with_memory_is_exact(tmp_path: Path, llm_server) -> None:
    # both samples break the same rule; sample 0's fix is stored in the memory during the run, and must
    # not reach sample 1's prompt (it would not in a replay, which starts with the fix already stored)
    llm_server.script(("code", [EVIL, EVIL]), ("code", GOOD_CODE), ("code", GOOD_2))
    live = generate("metaworld/drawer-open-v3", _cfg(llm_server, rounds=1, use_memory=True), out=tmp_path)
    error_prompts = [r["messages"][-1]["content"] for r in llm_server.requests[1:]]
    assert "tanh(5.0" not in error_prompts[1]  # no sibling's fix from the same round
    with RunStore(tmp_path / DB_NAME) as store:
        assert any(c.origin == "generation" for c in store.corrections())  # the fix was stored
    replayed = generate("metaworld/drawer-open-v3", GenerationConfig(provider="replay", samples=2, rounds=1,
                                                                     probe_steps=0, use_memory=True), out=tmp_path)
    assert len(llm_server.requests) == 3 and replayed.status == "done"  # the replay asked the server nothing
    strip = lambda rows: [r[:3] + r[4:] for r in rows]  # noqa: E731 - same rounds, statuses, scores
    assert strip(_candidates(tmp_path, replayed.run_id)) == strip(_candidates(tmp_path, live.run_id))
    assert [r[3] for r in _candidates(tmp_path, replayed.run_id)] == [r[3] for r in _candidates(tmp_path, live.run_id)]


# -- the command line ---------------------------------------------------------------------------------------
def _cli(tmp_path: Path, server: ScriptedLLMServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="250")
    endpoint = ("--provider", "openai", "--model", "scripted-model", "--base-url", server.base_url, "--api-key", "t")
    return subprocess.run([sys.executable, "-m", "rewardlab", *args, *endpoint, "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_shows_retries_says_interrupted_and_resumes(tmp_path: Path, llm_server) -> None:
    llm_server.script(FAIL, FAIL)
    cut = _cli(tmp_path, llm_server, "generate", "--env", "metaworld/reach-v3", "--samples", "1", "--rounds", "1",
               "--probe-steps", "0", "--max-retries", "1", "--timeout", "5")
    assert cut.returncode == 1, cut.stderr
    assert "(up to 5 s a request, 1 retry)" in cut.stdout
    assert "waiting: HTTP 503" in cut.stdout and "retrying in" in cut.stdout and "(attempt 2/2)" in cut.stdout
    assert "continue with: rewardlab generate --resume generate-metaworld_reach-v3-" in cut.stderr
    assert "--out " in cut.stderr and cut.stderr.rstrip().endswith(tmp_path.name)  # the hint names where
    assert "Traceback" not in cut.stderr
    other = _cli(tmp_path, llm_server, "generate", "--resume", "--samples", "3")
    assert other.returncode == 2 and "these differ: samples 3 (the run has 1)" in other.stderr
    assert len(llm_server.requests) == 2
    llm_server.script(("code", GOOD_CODE))
    resumed = _cli(tmp_path, llm_server, "generate", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "best reward:" in resumed.stdout and "all rounds done" in resumed.stdout


def test_cli_exits_non_zero_when_no_candidate_passed(tmp_path: Path, llm_server) -> None:
    llm_server.script(("code", BROKEN_CODE))
    out = _cli(tmp_path, llm_server, "generate", "--env", "metaworld/reach-v3", "--samples", "1", "--rounds", "1",
               "--probe-steps", "0", "--fix-attempts", "0")
    assert out.returncode == 1 and "no reward program passed the checks" in out.stderr, out.stderr
    assert "best reward: none passed the checks" in out.stdout


def test_cli_says_per_env_once_in_the_progress_line(tmp_path: Path, llm_server) -> None:
    llm_server.script(("code", PER_ENV))
    out = _cli(tmp_path, llm_server, "generate", "--env", "metaworld/reach-v3", "--samples", "1", "--rounds", "1",
               "--probe-steps", "2000", "--probe-algo", "ppo", "--eval-episodes", "1")
    assert out.returncode == 0, out.stderr
    assert "runs per env (compat mode" in out.stdout
    assert "CompatModeWarning" not in out.stderr and "warnings.warn" not in out.stderr
    assert out.stderr.count("compat mode") <= 1


def test_refine_without_probes_prints_its_summary(tmp_path: Path) -> None:
    env = dict(os.environ, COLUMNS="250")
    run = lambda *a: subprocess.run([sys.executable, "-m", "rewardlab", *a, "--out", str(tmp_path)],  # noqa: E731
                                    capture_output=True, text=True, env=env, timeout=300)
    first = run("generate", "--env", "metaworld/reach-v3", "--samples", "1", "--rounds", "1", "--probe-steps", "0")
    assert first.returncode == 0, first.stderr
    program = first.stdout.split("best reward: ")[1].split()[0]
    revised = run("refine", program, "--feedback", "reach faster", "--probe-steps", "0")
    assert revised.returncode == 0 and "Traceback" not in revised.stderr, revised.stderr
    assert "best reward:" in revised.stdout and "not scored" not in revised.stdout


# -- probes ---------------------------------------------------------------------------------------------------
PENDULUM = """```python
import numpy as np
def compute_dense_reward(self, action):
    upright = 1.0 - np.abs(self.pole.angle)
    return upright - {w} * np.sum(action ** 2, axis=-1), {{"upright": upright}}
```"""
#: legal and passes the sandbox trial, but far slower than the simulator's step: training stops it
SLOW = """```python
import numpy as np
def compute_dense_reward(self, action):
    extra = np.zeros_like(self.pole.angle)
    for _ in range(4000):
        extra = extra + 0.0 * np.abs(self.pole.angle)
    return 1.0 - np.abs(self.pole.angle) + extra
```"""


def test_probes_train_side_by_side_in_workers_with_the_same_scores(tmp_path: Path, llm_server) -> None:
    from rewardlab.runs.backends.local import LocalBackend

    replies = ("code", [PENDULUM.format(w=0.001), PENDULUM.format(w=0.1)])
    cfg = _cfg(llm_server, rounds=1, probe_steps=1024, eval_episodes=1, probe_algo="ppo")
    llm_server.script(replies)
    alone = generate("mujoco/InvertedPendulum-v5", cfg, out=tmp_path / "alone")
    llm_server.script(replies)
    backend = LocalBackend(2)
    try:
        pooled = generate("mujoco/InvertedPendulum-v5", cfg, out=tmp_path / "pooled", backend=backend)
    finally:
        backend.shutdown()
    a, b = _candidates(tmp_path / "alone", alone.run_id), _candidates(tmp_path / "pooled", pooled.run_id)
    assert a == b and all(c[4] == "trained" for c in a)
    assert pooled.probe_steps == alone.probe_steps >= 2 * 1024 and pooled.probe_wall_s > 0


def test_a_probe_that_fails_in_training_fails_its_candidate_not_the_run(tmp_path: Path, llm_server) -> None:
    llm_server.script(("code", [SLOW, PENDULUM.format(w=0.001)]))
    result = generate("mujoco/InvertedPendulum-v5", _cfg(llm_server, rounds=1, probe_steps=1024, eval_episodes=1,
                                                         probe_algo="ppo"), out=tmp_path)
    assert result.status == "done"
    rows = _candidates(tmp_path, result.run_id)
    assert [r[4] for r in rows] == ["failed", "trained"]
    with RunStore(tmp_path / DB_NAME) as store:
        failed = store.candidates(run_id=result.run_id)[0]
    assert "[cost]" in failed.error and "\n" not in failed.error


# -- what a fresh user met ----------------------------------------------------------------------------------
def test_an_interrupted_generation_in_a_spec_interrupts_the_run_and_resuming_continues_it(tmp_path: Path,
                                                                                             llm_server) -> None:
    import pytest
    import yaml

    from rewardlab.runs.runner import RunInterrupted, run_experiment

    spec = tmp_path / "gen.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "gen", "tasks": ["mujoco/InvertedPendulum-v5"], "algorithms": ["ppo"], "seeds": [0],
        "rewards": [{"name": "gen", "generate": {"samples": 1, "rounds": 1, "probe_steps": 0, "max_retries": 0,
                                                 "use_memory": False}}],
        "budget": {"steps": 1024}, "evaluation": {"episodes": 1}, "workers": 1}))
    endpoint = {"provider": "openai", "model": "scripted-model", "base_url": llm_server.base_url}
    llm_server.script(FAIL)
    with pytest.raises(RunInterrupted, match=r"generation of gen .* interrupted.*--resume gen-"):
        run_experiment(spec, out=tmp_path / "runs", provider_overrides=endpoint)
    with RunStore(tmp_path / "runs" / DB_NAME) as store:
        [run] = store.list_runs("gen")
        [generation] = store.list_runs("generate")
        assert run.status == "interrupted" and generation.status == "interrupted"
    llm_server.script(("code", PENDULUM.format(w=0.001)))
    summary = run_experiment(spec, out=tmp_path / "runs", resume=True, provider_overrides=endpoint)
    assert summary.status == "done" and len(llm_server.requests) == 2
    with RunStore(tmp_path / "runs" / DB_NAME) as store:
        [again] = store.list_runs("generate")  # the interrupted generation was continued, not redone
        assert again.id == generation.id and again.status == "done"


def test_replay_picks_a_generation_not_a_refine_and_a_miss_ends_failed(tmp_path: Path) -> None:
    from rewardlab.text2reward.loop import refine

    cfg = GenerationConfig(provider="offline", samples=2, rounds=1, probe_steps=0, use_memory=False)
    first = generate("metaworld/reach-v3", cfg, out=tmp_path)
    revised = refine(first.best_program_id, "reach faster", GenerationConfig(provider="offline", samples=1, probe_steps=0,
                                                                           use_memory=False), out=tmp_path)
    assert revised.best_score is not None  # scored by the check when there is no probe
    replayed = generate("metaworld/reach-v3", cfg.model_copy(update={"provider": "replay"}), out=tmp_path)
    assert replayed.status == "done" and replayed.best_program_id == first.best_program_id
    missing = generate("metaworld/reach-v3", cfg.model_copy(update={"provider": "replay", "samples": 3}), out=tmp_path)
    assert missing.status == "failed" and "replay: no stored reply" in missing.stopped
