"""The generation loop end to end: the real openai client over HTTP to a scripted local server, the
offline baseline, error feedback, reflection rounds, human feedback, lineage and exact replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llm_server import BROKEN_CODE, GOOD_CODE, PENDULUM, PROSE

from rewardlab.store import RunStore
from rewardlab.text2reward.loop import DB_NAME, GenerationConfig, generate, refine

EVIL = "```python\nimport os\ndef compute_dense_reward(self, action):\n    return 0.0\n```"


def _cfg(server, card_id: str = "metaworld/drawer-open-v3", **kw) -> tuple[str, GenerationConfig]:
    base = dict(provider="openai", model="scripted-model", base_url=server.base_url, api_key="test", samples=2,
                rounds=1, probe_steps=0, use_memory=False, max_retries=1, timeout_s=10.0)
    return card_id, GenerationConfig(**{**base, **kw})


def test_errors_are_fed_back_and_fixed_programs_kept(tmp_path: Path, llm_server) -> None:
    # sample 0 is prose (no program), sample 1 imports os; each is fixed on its first feedback
    llm_server.script(("code", [PROSE, EVIL]), ("code", GOOD_CODE), ("code", GOOD_CODE.replace("5.0", "4.0")))
    result = generate(*_cfg(llm_server), out=tmp_path)
    assert result.best_program_id is not None
    assert result.first_attempt_failures == 2 and result.fixes == [1, 1] and result.rejected == 0
    feedback = [r["messages"][-1]["content"] for r in llm_server.requests[1:]]
    assert "no reward program found" in feedback[0]
    assert "[import]" in feedback[1] and "'os'" in feedback[1]
    with RunStore(tmp_path / DB_NAME) as store:
        cands = store.candidates(run_id=result.run_id)
        assert [c.status for c in cands] == ["rejected", "checked", "rejected", "checked"]
        assert all(c.checks["preference"]["accuracy"] >= 0.5 for c in cands if c.status == "checked")
        fixed = store.get_program(cands[3].program_id)
        assert fixed.parent_id == cands[2].program_id  # the fix descends from the failing program
        assert len(store.exchanges(result.run_id)) == 3
    assert (result.run_dir / "best_reward.py").read_text().count("compute_dense_reward") == 1


def test_candidates_that_never_pass_are_bounded(tmp_path: Path, llm_server) -> None:
    llm_server.script(("code", BROKEN_CODE), ("code", BROKEN_CODE), ("code", EVIL))
    result = generate(*_cfg(llm_server, samples=1, fix_attempts=2), out=tmp_path)
    assert result.best_program_id is None and result.rejected == 1
    assert len(llm_server.requests) == 3  # one sample, two fixes, no more


AWAY = """```python
import numpy as np
def compute_dense_reward(self, action):
    return np.linalg.norm(self.robot.ee_position - self.goal_position, axis=-1)  # farther is better: wrong
```"""
TOWARDS = AWAY.replace("return np.linalg", "return -np.linalg").replace("farther is better: wrong", "closer is better")


def test_a_best_program_that_prefers_random_to_the_expert_is_warned_about(tmp_path: Path, llm_server) -> None:
    # found by a user: the offline baseline's best program on reach-v3 scored -0.91 and nothing said so
    llm_server.script(("code", [AWAY]))
    bad = generate(*_cfg(llm_server, "metaworld/reach-v3", samples=1), out=tmp_path)
    assert bad.best_program_id is not None and bad.best_preference is not None and bad.best_preference < 0
    assert len(bad.warnings) == 1 and "ranks random or stopped trajectories above the expert's" in bad.warnings[0]
    assert json.loads((bad.run_dir / "generation.json").read_text())["warnings"] == bad.warnings
    llm_server.script(("code", [TOWARDS]))
    good = generate(*_cfg(llm_server, "metaworld/reach-v3", samples=1), out=tmp_path)
    assert good.best_preference is not None and good.best_preference > 0 and good.warnings == []


def test_identical_candidates_train_one_probe(tmp_path: Path) -> None:
    # found by a user: the offline baseline's two samples were the same program, and both were trained
    cfg = GenerationConfig(provider="offline", samples=2, rounds=1, probe_steps=1024, final_steps=0,
                           eval_episodes=1, use_memory=False)
    result = generate("mujoco/InvertedPendulum-v5", cfg, out=tmp_path)
    with RunStore(tmp_path / DB_NAME) as store:
        cands = store.candidates(run_id=result.run_id)
    assert len(cands) == 2 and cands[0].program_id == cands[1].program_id
    assert [c.status for c in cands] == ["trained", "trained"] and cands[0].probe == cands[1].probe
    assert cands[0].score == cands[1].score and result.probe_steps == 1024  # trained once
    assert sorted(p.name for p in result.run_dir.iterdir() if p.is_dir()) == ["r0-s0"]


def test_replay_reproduces_a_generation_without_network(tmp_path: Path, llm_server) -> None:
    llm_server.script(("code", [GOOD_CODE, EVIL]), ("code", GOOD_CODE.replace("5.0", "3.0")))
    live = generate(*_cfg(llm_server), out=tmp_path)
    replayed = generate("metaworld/drawer-open-v3", GenerationConfig(provider="replay", samples=2, rounds=1,
                                                                     probe_steps=0, use_memory=False), out=tmp_path)
    assert len(llm_server.requests) == 2  # the replay asked the server nothing
    with RunStore(tmp_path / DB_NAME) as store:
        a = [(c.program_id, c.status, c.score) for c in store.candidates(run_id=live.run_id)]
        b = [(c.program_id, c.status, c.score) for c in store.candidates(run_id=replayed.run_id)]
    assert a == b and replayed.best_program_id == live.best_program_id


def test_reflection_round_builds_on_the_trained_best(tmp_path: Path, llm_server) -> None:
    llm_server.script(("code", PENDULUM), ("code", PENDULUM.replace("0.001", "0.01")))
    cfg = _cfg(llm_server, card_id="mujoco/InvertedPendulum-v5", samples=1, rounds=2, probe_steps=1024,
               eval_episodes=1)
    result = generate(*cfg, out=tmp_path)
    reflection = llm_server.requests[1]["messages"][-1]["content"]
    assert "upright" in reflection and "effort" in reflection  # per-component statistics
    with RunStore(tmp_path / DB_NAME) as store:
        first, second = store.candidates(run_id=result.run_id)
        assert first.status == second.status == "trained" and first.score is not None
        assert store.get_program(second.program_id).parent_id == first.program_id


def test_token_budget_stops_the_loop(tmp_path: Path, llm_server) -> None:
    llm_server.script(("code", GOOD_CODE, {"prompt_tokens": 900, "completion_tokens": 200, "total_tokens": 1100}))
    result = generate(*_cfg(llm_server, samples=1, rounds=3, token_budget=1000), out=tmp_path)
    assert result.tokens == 1100 and "token budget" in result.stopped and len(llm_server.requests) == 1


def test_offline_generation_refine_and_lineage(tmp_path: Path) -> None:
    cfg = GenerationConfig(provider="offline", samples=2, rounds=1, probe_steps=0, use_memory=False)
    result = generate("metaworld/window-open-v3", cfg, out=tmp_path)
    assert result.best_program_id and "offline baseline (no LLM)" in (result.run_dir / "best_reward.py").read_text()
    revised = refine(result.best_program_id[:10], "the gripper closes too early",
                     GenerationConfig(provider="offline", samples=1, probe_steps=0, use_memory=False),
                     out=tmp_path)
    with RunStore(tmp_path / DB_NAME) as store:
        assert store.get_program(revised.best_program_id).parent_id == result.best_program_id
        exchanges = store.exchanges(revised.run_id)
        assert exchanges and "the gripper closes too early" in json.dumps(exchanges[0].messages)
    env = dict(os.environ, COLUMNS="200")
    tree = subprocess.run([sys.executable, "-m", "rewardlab", "lineage", revised.best_program_id[:10], "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert result.best_program_id[:12] in lines[0] and revised.best_program_id[:12] in tree.stdout
    assert "<- this one" in tree.stdout


def test_generate_cli_offline_and_bad_input(tmp_path: Path) -> None:
    env = dict(os.environ, COLUMNS="200")
    run = lambda *a: subprocess.run([sys.executable, "-m", "rewardlab", *a, "--out", str(tmp_path)],  # noqa: E731
                                    capture_output=True, text=True, env=env, timeout=300)
    ok = run("generate", "--env", "metaworld/reach-v3", "--samples", "1", "--rounds", "1", "--probe-steps", "0")
    assert ok.returncode == 0, ok.stderr
    assert "best reward:" in ok.stdout and "refine with" in ok.stdout
    bad = run("refine", "zzzzzzzz", "--feedback", "x")
    assert bad.returncode == 2 and "no reward program with id" in bad.stderr and "Traceback" not in bad.stderr
    no_key = run("generate", "--env", "metaworld/reach-v3", "--provider", "nope")
    assert no_key.returncode == 2 and "nope" in no_key.stderr and len(no_key.stderr.strip().splitlines()) == 1
    env_no_model = {k: v for k, v in env.items() if k != "REWARDLAB_MODEL"}
    no_model = subprocess.run([sys.executable, "-m", "rewardlab", "generate", "--env", "metaworld/reach-v3", "--provider",
                               "openai", "--out", str(tmp_path)], capture_output=True, text=True, env=env_no_model,
                              timeout=300)
    assert no_model.returncode == 2 and "no model given" in no_model.stderr
    with RunStore(tmp_path / DB_NAME) as store:  # the bad settings left no run behind, and no run stays 'running'
        assert [r.spec_name for r in store.list_runs()] == ["generate"] and store.list_runs()[0].status == "done"


def test_spec_with_a_generated_source_generates_once_and_trains(tmp_path: Path) -> None:
    from rich.console import Console

    from rewardlab.runs.runner import run_experiment

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: gen\ntasks: [metaworld/reach-v3]\nrewards:\n"
                    "  - {name: zero-shot, generate: {samples: 1, rounds: 1, probe_steps: 0}}\n"
                    "algorithms: [ppo]\nseeds: [0]\nbudget: {steps: 2000}\nevaluation: {episodes: 1}\nworkers: 1\n")
    out = tmp_path / "runs"
    run_dir = run_experiment(spec, out=out, console=Console(quiet=True)).run_dir
    generated = run_dir / "generated" / "zero-shot" / "metaworld_reach-v3.py"
    assert "offline baseline (no LLM)" in generated.read_text()
    with RunStore(out / DB_NAME) as store:
        (trial,) = store.trials(run_dir.name)
        assert trial.status == "done"
        assert store.generated_source(run_dir.name, "zero-shot", "metaworld/reach-v3").program_id == trial.program_id
        generations = [r for r in store.list_runs() if r.spec_name == "generate"]
    assert len(generations) == 1
    run_experiment(spec, out=out, resume=True, console=Console(quiet=True))
    with RunStore(out / DB_NAME) as store:
        assert len([r for r in store.list_runs() if r.spec_name == "generate"]) == 1  # reused on resume


def test_generated_source_takes_no_path(tmp_path: Path) -> None:
    from rewardlab.errors import UserError
    from rewardlab.runs.spec import load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: g\ntasks: [metaworld/reach-v3]\nrewards:\n  - {name: z, path: x.py, generate: {}}\n"
                    "algorithms: [sac]\nseeds: [0]\nbudget: {steps: 10}\n")
    with pytest.raises(UserError, match="takes no path"):
        load_spec(spec)


def test_memory_cli_seeds_and_reports(tmp_path: Path) -> None:
    env = dict(os.environ, COLUMNS="200")
    stats = subprocess.run([sys.executable, "-m", "rewardlab", "memory", "stats", "--out", str(tmp_path)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert stats.returncode == 0, stats.stderr
    bad = subprocess.run([sys.executable, "-m", "rewardlab", "memory", "seed", "--family", "bullet", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "no env cards of family 'bullet'" in bad.stderr
