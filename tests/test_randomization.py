"""Domain randomisation (rewardlab/randomization.py) and robustness (rewardlab/robustness.py): the ranges
model, the wrapper's effect on the MuJoCo model, observations and action timing, training on it, the
robustness grid, RAPP's feasible ranges, and ranges proposed by the offline baseline and by an
OpenAI-compatible server over real HTTP (tests/llm_server.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rewardlab.cards import load_card
from rewardlab.errors import UserError
from rewardlab.export import ExportedPolicy, export_policy, load_export, locate_trial, play
from rewardlab.randomization import (
    DomainRandomization,
    RandomizationRanges,
    parse_ranges,
    randomized,
    randomized_vec_env,
)
from rewardlab.robustness import (
    OFFLINE_HEADER,
    FeasibleRange,
    FeasibleRanges,
    check_reply,
    feasible_ranges,
    parse_axis,
    propose_ranges,
    robustness_grid,
    write_grid,
)
from rewardlab.sims.base import make_env
from rewardlab.store import DB_NAME, RunStore
from rewardlab.training import train

TASK = "mujoco/InvertedPendulum-v5"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ExportedPolicy:
    run_dir = tmp_path_factory.mktemp("dr") / "mujoco_InvertedPendulum-v5-env-ppo-0"
    train(TASK, "env", "ppo", 2048, 0, run_dir, eval_episodes=1, eval_every=2048)
    return load_export(export_policy(locate_trial(run_dir), parity_observations=100, evaluation_episodes=2).directory)


def _env() -> object:
    return make_env(load_card(TASK), seed=0)


def test_ranges_load_from_yaml_and_bad_fields_are_named() -> None:
    ranges = parse_ranges("friction: [0.8, 1.2]\naction_latency: [0, 2]\nmass: 1.5\n")
    assert ranges.friction is not None and ranges.friction.as_list() == [0.8, 1.2]
    assert ranges.mass is not None and ranges.mass.as_list() == [1.5, 1.5]
    assert [name for name, _ in ranges.items()] == ["friction", "mass", "action_latency"]
    assert parse_ranges(ranges.to_yaml()) == ranges
    for text, needle in [("frition: [0.8, 1.2]", "field 'frition'"), ("mass: [1.2, 0.8]", "field 'mass'"),
                         ("damping: [-1, 2]", "field 'damping'"), ("action_latency: [0, 1.5]", "field 'action_latency'"),
                         ("obs_noise: [0, 1, 2]", "field 'obs_noise'"), ("[1, 2]", "expected a mapping"),
                         ("mass: [1, ", "not valid YAML")]:
        with pytest.raises(UserError, match="ranges") as err:
            parse_ranges(text)
        assert needle in str(err.value) and "\n" not in str(err.value)


def test_the_wrapper_scales_the_model_and_restores_nominal_at_each_reset() -> None:
    env = _env()
    model = env.unwrapped.model  # type: ignore[attr-defined]
    mass, gain = model.body_mass.copy(), model.actuator_gainprm[:, 0].copy()
    wrapped = DomainRandomization(env, RandomizationRanges.model_validate({"mass": [2.0, 2.0], "actuator_gain": [0.5, 3.0]}),
                                  seed=1)
    _, info = wrapped.reset(seed=0)
    np.testing.assert_allclose(model.body_mass, 2.0 * mass)
    drawn = info["randomization"]["actuator_gain"]
    assert 0.5 <= drawn <= 3.0
    np.testing.assert_allclose(model.actuator_gainprm[:, 0], drawn * gain)
    _, info = wrapped.reset(seed=0)  # a new draw, applied to the nominal values (not compounded)
    assert info["randomization"]["actuator_gain"] != drawn
    np.testing.assert_allclose(model.body_mass, 2.0 * mass)
    np.testing.assert_allclose(model.actuator_gainprm[:, 0], info["randomization"]["actuator_gain"] * gain)


def test_heavier_physics_changes_the_trajectory() -> None:
    def roll(ranges: RandomizationRanges | None) -> np.ndarray:
        env = _env()
        if ranges is not None:
            env = DomainRandomization(env, ranges, seed=0)  # type: ignore[arg-type]
        env.reset(seed=3)  # type: ignore[attr-defined]
        for _ in range(10):
            obs, *_ = env.step(np.array([1.0]))  # type: ignore[attr-defined]
        return np.asarray(obs)

    nominal = roll(None)
    np.testing.assert_allclose(roll(RandomizationRanges()), nominal)  # nothing set: the env as built
    assert not np.allclose(roll(RandomizationRanges.model_validate({"mass": [3.0, 3.0]})), nominal)


def test_latency_delays_actions_and_noise_perturbs_observations() -> None:
    actions = [np.array([2.0]), np.array([-1.0]), np.array([0.5])]
    plain = _env()
    plain.reset(seed=5)  # type: ignore[attr-defined]
    expected = [plain.step(a)[0] for a in (np.zeros(1), np.zeros(1), actions[0])]  # type: ignore[attr-defined]
    delayed = DomainRandomization(_env(), RandomizationRanges.model_validate({"action_latency": [2, 2]}), seed=0)  # type: ignore[arg-type]
    delayed.reset(seed=5)
    got = [delayed.step(a)[0] for a in actions]
    np.testing.assert_allclose(got, expected)

    noisy = DomainRandomization(_env(), RandomizationRanges.model_validate({"obs_noise": [0.1, 0.1]}), seed=0)  # type: ignore[arg-type]
    clean = _env()
    obs_noisy, _ = noisy.reset(seed=5)
    obs_clean, _ = clean.reset(seed=5)  # type: ignore[attr-defined]
    assert 0 < np.abs(obs_noisy - obs_clean).max() < 1.0


def test_robustness_grid_cells_agree_with_play_and_write_a_heat_map(exported: ExportedPolicy, tmp_path: Path) -> None:
    x = parse_axis("mass=0.5,1,3")
    y = parse_axis("actuator_gain=0.25:1:2")
    assert y == ("actuator_gain", [0.25, 1.0])
    grid = robustness_grid(exported, x, y, episodes=2)
    assert len(grid.mean_return) == 2 and len(grid.mean_return[0]) == 3
    assert grid.mean_return[1][1] == grid.nominal_return == play(exported, 2).mean_return()  # mass 1, gain 1
    heavy = play(exported, 2, wrap=randomized(RandomizationRanges.model_validate({"mass": 3.0, "actuator_gain": 0.25})))
    assert grid.mean_return[0][2] == heavy.mean_return()
    json_path, png = write_grid(grid, tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json_path.is_file()
    for bad, needle in [("weight=1:2:3", "PARAMETER"), ("mass=1:2:0", "COUNT"), ("mass=-1,1", "positive")]:
        with pytest.raises(UserError, match=needle):
            parse_axis(bad)
    with pytest.raises(UserError, match="two different parameters"):
        robustness_grid(exported, x, x)


def test_feasible_ranges_stop_where_the_policy_fails(exported: ExportedPolicy) -> None:
    found = feasible_ranges(exported, episodes=1, parameters=["actuator_gain", "action_latency"])
    gain = found.ranges["actuator_gain"]
    assert gain.low <= 1.0 <= gain.high
    threshold = 0.5 * found.nominal_return  # the tiny policy never succeeds: the return criterion applies
    assert "mean return" in found.criterion
    if gain.failed_below is not None:  # the first failing value does fail, the edge before it works
        fixed = play(exported, 1, wrap=randomized(RandomizationRanges.model_validate({"actuator_gain": gain.failed_below})))
        assert fixed.mean_return() < threshold
    edge = play(exported, 1, wrap=randomized(RandomizationRanges.model_validate({"actuator_gain": gain.low})))
    assert edge.mean_return() >= threshold
    assert found.ranges["action_latency"].low == 0
    with pytest.raises(UserError, match="unknown parameter 'gravity'"):
        feasible_ranges(exported, 1, ["gravity"])


FEASIBLE = FeasibleRanges(card=TASK, policy="p", criterion="c", episodes=1, seeds=[0], nominal_return=100.0,
                          nominal_success=None, ranges={
                              "mass": FeasibleRange(low=0.5, high=2.0, failed_below=0.4, failed_above=3.0, tried={}),
                              "action_latency": FeasibleRange(low=0, high=3, failed_below=None, failed_above=4, tried={})})


def test_replies_are_checked_against_the_feasible_ranges() -> None:
    ok = check_reply("Reasons below.\n```yaml\nmass: [0.8, 1.5]  # payloads\naction_latency: [0, 1]\n```", FEASIBLE)
    assert ok.mass is not None and ok.mass.as_list() == [0.8, 1.5]
    for reply, needle in [("```yaml\nmass: [0.3, 1.5]\n```", "field 'mass' [0.3, 1.5] leaves the feasible range [0.5, 2]"),
                          ("```yaml\nmass: [1.2, 1.5]\n```", "excludes the nominal value 1"),
                          ("```yaml\nfriction: [0.9, 1.1]\n```", "field 'friction' was not measured"),
                          ("I cannot help with that.", "expected a mapping"),
                          ("```yaml\n{}\n```", "sets no parameter")]:
        with pytest.raises(UserError) as err:
            check_reply(reply, FEASIBLE)
        assert needle in str(err.value), str(err.value)


def test_offline_proposal_is_labelled_checked_and_stored(exported: ExportedPolicy, tmp_path: Path) -> None:
    proposal = propose_ranges(exported, FEASIBLE, tmp_path, provider="offline")
    assert proposal.ranges.mass is not None and proposal.ranges.mass.as_list() == [0.75, 1.5]
    assert (proposal.directory / "reply.md").read_text().count(OFFLINE_HEADER) == 1
    assert "[0.5, 2]" in (proposal.directory / "prompt.md").read_text()
    assert parse_ranges((proposal.directory / "ranges.yaml").read_text()) == proposal.ranges
    with RunStore(tmp_path / DB_NAME) as store:
        run = store.get_run(proposal.run_id)
        assert run is not None and run.status == "done" and run.spec_name == "randomize"
        (exchange,) = store.exchanges(proposal.run_id)
        assert exchange.provider == "offline" and exchange.purpose == "domain randomisation"
    # its folder is a run's, not a trial's: export says so rather than "no trial directory"
    for ref in (proposal.directory, f"{proposal.run_id}/ranges"):
        with pytest.raises(UserError, match=f"{proposal.run_id}.* is a randomize run|is a randomize run"):
            locate_trial(ref, tmp_path)


def test_openai_proposal_over_http_is_stored_and_a_bad_reply_is_one_line(exported: ExportedPolicy, llm_server: object,
                                                                         tmp_path: Path) -> None:
    server = llm_server
    good = "Payload varies.\n```yaml\nmass: [0.9, 1.4]  # a payload of up to 40%\naction_latency: [0, 1]  # radio\n```"
    server.script(("code", good), ("code", "```yaml\nmass: [0.2, 1.4]\n```"))  # type: ignore[attr-defined]
    proposal = propose_ranges(exported, FEASIBLE, tmp_path, provider="openai", model="scripted-model",
                              base_url=server.base_url, api_key="test")  # type: ignore[attr-defined]
    assert proposal.ranges.action_latency is not None and proposal.ranges.action_latency.as_list() == [0, 1]
    sent = server.requests[0]["messages"][-1]["content"]  # type: ignore[attr-defined]
    assert "mass: works in [0.5, 2], fails at 0.4, fails at 3" in sent
    with pytest.raises(UserError) as err:
        propose_ranges(exported, FEASIBLE, tmp_path, provider="openai", model="scripted-model",
                       base_url=server.base_url, api_key="test")  # type: ignore[attr-defined]
    message = str(err.value)
    assert "field 'mass' [0.2, 1.4] leaves the feasible range" in message and "\n" not in message
    with RunStore(tmp_path / DB_NAME) as store:
        runs = {r.status: r for r in store.list_runs("randomize")}
        assert set(runs) == {"done", "failed"} and "leaves the feasible range" in (runs["failed"].reason or "")
        assert store.exchanges(runs["failed"].id)[0].texts == ["```yaml\nmass: [0.2, 1.4]\n```"]
    with pytest.raises(UserError, match="unknown provider"):
        propose_ranges(exported, FEASIBLE, tmp_path, provider="claude")


def test_a_vec_env_of_randomised_envs_draws_per_env_and_per_episode() -> None:
    ranges = RandomizationRanges.model_validate({"mass": [0.5, 2.0]})
    venv = randomized_vec_env(load_card(TASK), ranges, n_envs=2, seed=7)
    venv.reset()
    first = [env.current["mass"] for env in venv.envs]
    masses = [env.unwrapped.model.body_mass[1:].copy() for env in venv.envs]
    assert first[0] != first[1] and not np.allclose(masses[0], masses[1])
    venv.reset()
    assert [env.current["mass"] for env in venv.envs] != first  # a new draw per episode
    again = randomized_vec_env(load_card(TASK), ranges, n_envs=2, seed=7)
    again.reset()
    assert [env.current["mass"] for env in again.envs] == first  # seeded
    with pytest.raises(UserError, match="n_envs"):
        randomized_vec_env(load_card(TASK), ranges, n_envs=0, seed=0)


def rewardlab_cli(*args: str, cwd: Path) -> object:
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "rewardlab", *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200"), timeout=300)


def test_bad_cli_input_is_one_line(exported: ExportedPolicy, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mass: [2, 1]\n")
    folder = str(exported.directory)
    cases = [
        (("play", folder, "--ranges", str(bad)), "field 'mass'"),
        (("play", folder, "--ranges", "/dev/null"), "empty ranges file /dev/null"),  # not "no ranges file"
        (("play", folder, "--ranges", str(tmp_path)), "is a folder, not a ranges file"),
        (("play", folder, "--ranges", str(tmp_path / "missing.yaml")), "no ranges file"),
        (("train", "--env", TASK, "--reward", "env", "--steps", "1024", "--randomize", str(bad), "--out", str(tmp_path)),
         "field 'mass'"),
        (("play", folder, "--episodes", "0"), "--episodes must be at least 1"),
        (("robustness", folder, "--grid", "mass=1:2:3"), "exactly twice"),
        (("robustness", folder, "--grid", "mass=1:2:3", "--grid", "weight=1,2"), "PARAMETER"),
        (("randomize", "feasible", folder, "--param", "gravity"), "unknown parameter 'gravity'"),
        (("randomize", "propose", folder, "--feasible", str(bad)), "not a feasible-ranges file"),
    ]
    for args, needle in cases:
        proc = rewardlab_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)  # type: ignore[attr-defined]
        lines = [line for line in proc.stderr.splitlines() if line.strip()]  # type: ignore[attr-defined]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr, (args, proc.stderr)  # type: ignore[attr-defined]


def test_feasible_save_prints_the_path_the_user_can_open(exported: ExportedPolicy, tmp_path: Path) -> None:
    """``--save`` outside the working directory is printed absolute (it printed ``../nu_feasible.json``)."""
    (tmp_path / "work").mkdir()
    target = tmp_path / "nu_feasible.json"
    proc = rewardlab_cli("randomize", "feasible", str(exported.directory), "--param", "mass", "--episodes", "1",
                         "--save", str(target), cwd=tmp_path / "work")
    assert proc.returncode == 0, proc.stderr  # type: ignore[attr-defined]
    assert f"written {target.resolve()}" in proc.stdout and "../" not in proc.stdout  # type: ignore[attr-defined]
    assert target.is_file()


def test_the_sb3_trainer_trains_on_randomised_physics(tmp_path: Path) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rewardlab.state import StateExtractor
    from rewardlab.training.sb3 import build_agent

    card = load_card(TASK)
    overrides = {"randomization": {"mass": [0.5, 2.0], "action_latency": [0, 1]}}
    model, env = build_agent(card, StateExtractor(card, []), None, "ppo", 3, 1024, overrides)
    inner = env
    while not isinstance(inner, DummyVecEnv):
        inner = inner.venv
    env.reset()
    drawn = [sub.current for sub in inner.envs]  # each sub-env is a DomainRandomization, drawn at reset
    assert len(drawn) == 4 and len({d["mass"] for d in drawn}) == 4 and all(0.5 <= d["mass"] <= 2.0 for d in drawn)
    env.close()
    result = train(TASK, "env", "ppo", 1024, 0, tmp_path / "run", eval_episodes=1, preset_overrides=overrides)
    assert result.steps >= 1024 and (tmp_path / "run" / "model.zip").is_file()
    with pytest.raises(UserError, match="randomization: field 'mass'"):
        train(TASK, "env", "ppo", 1024, 0, tmp_path / "bad", preset_overrides={"randomization": {"mass": [2, 1]}})
