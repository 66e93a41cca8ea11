"""ManiSkill3 on the CPU: the physics-only workaround, every card against its live env, the numbers
its tips quote, the hand-written references ranking the scripted experts above random actions, one
program agreeing on numpy and torch states, and SB3 training through ManiSkill's CPU gym wrapper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mani_skill")
torch = pytest.importorskip("torch")

from rewardlab.cards import load_card  # noqa: E402
from rewardlab.errors import UserError  # noqa: E402
from rewardlab.program import load_program  # noqa: E402
from rewardlab.sims import maniskill as ms  # noqa: E402
from rewardlab.sims.base import make_env, verify_card  # noqa: E402
from rewardlab.sims.maniskill_facts import TASKS, rollouts, task_constants  # noqa: E402
from rewardlab.state import StateExtractor  # noqa: E402

CARD_IDS = [f"maniskill/{t}" for t in TASKS]


def test_workaround_is_applied_only_without_a_render_device() -> None:
    import sapien

    applied = ms.physics_only_workaround()
    if not applied:  # a machine with a render device: the real class is left in place and works
        assert sapien.render.RenderMaterial is not ms._InertRenderMaterial
        sapien.render.RenderMaterial()
        return
    assert sapien.render.RenderMaterial is ms._InertRenderMaterial
    with pytest.raises(RuntimeError, match="render"):  # the real class still fails here: the condition holds
        ms._real_material[0]()


def test_six_cards_ship() -> None:
    from rewardlab.cards import card_index

    assert {i for i in card_index() if i.startswith("maniskill/")} == set(CARD_IDS)
    assert len(CARD_IDS) == 6


@pytest.mark.parametrize("card_id", CARD_IDS)
def test_card_matches_its_live_env(card_id: str) -> None:
    card = load_card(card_id)
    verify_card(card, use_cache=False)
    assert card.reference_reward_path() is not None
    assert load_program(card.reference_reward_path()).is_reference


def test_wrong_accessor_is_named(tmp_path: Path) -> None:
    text = load_card("maniskill/PickCube-v1").path.read_text().replace("env.cube.pose.p", "env.cubeZ.pose.p")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=r"cubeA.position: source 'env.cubeZ.pose.p' failed"):
        verify_card(load_card(path), use_cache=False)


def test_several_envs_on_the_cpu_are_refused_with_one_line() -> None:
    with pytest.raises(UserError, match="need a CUDA device"):
        ms.make_raw_env(load_card("maniskill/PickCube-v1"), num_envs=4)


# The constants each card's tips quote, as the live env has them (tests fail when ManiSkill changes one).
QUOTED = {
    "PickCube-v1": {"cube_half_size": 0.02, "goal_thresh": 0.025, "max_goal_height": 0.3},
    "StackCube-v1": {"cube_half_size": 0.02},
    "PushCube-v1": {"cube_half_size": 0.02, "goal_radius": 0.1, "goal_offset_x": 0.2},
    "PullCube-v1": {"cube_half_size": 0.02, "goal_radius": 0.1, "goal_offset_x": -0.2},
    "PlaceSphere-v1": {"radius": 0.02, "bin_block_half_size": 0.0025},
    "LiftPegUpright-v1": {"peg_half_length": 0.12, "peg_half_width": 0.025},
}


@pytest.mark.parametrize("task", TASKS)
def test_numbers_in_the_card_are_the_env_constants(task: str) -> None:
    measured = task_constants(task)
    assert measured["robot_base_x"] == pytest.approx(-0.615)
    assert measured["finger_joint_max"] == pytest.approx(0.04)  # gripper_openness divides by 2 x 0.04
    for key, value in QUOTED[task].items():
        assert measured[key] == pytest.approx(value, abs=1e-6), key
    text = load_card(f"maniskill/{task}").path.read_text()
    assert "-0.615" in text


@pytest.mark.parametrize("task", TASKS)
def test_reference_ranks_the_scripted_expert_above_random(task: str) -> None:
    got = rollouts(task, seeds=2)
    assert min(got.expert_returns) > max(got.random_returns), got
    if task != "LiftPegUpright-v1":  # its script is partial: it lifts the peg but does not stand it up
        assert any(got.expert_success), got


def _states(card_id: str, steps: int = 8) -> tuple[object, list]:
    """(env, [(torch obs (1, D)) after each random step]) on the raw batched env."""
    env = ms.make_raw_env(load_card(card_id))
    env.reset(seed=3)
    env.action_space.seed(3)
    out = []
    for _ in range(steps):
        obs, *_ = env.step(env.action_space.sample())
        out.append(obs)
    return env, out


@pytest.mark.parametrize("card_id", CARD_IDS)
def test_one_program_agrees_on_numpy_and_torch_states(card_id: str) -> None:
    card = load_card(card_id)
    program = load_program(card.reference_reward_path())
    extractor = StateExtractor(card)
    reader = ms.TorchStateReader(extractor, dtype=torch.float64)
    numpy_reward, torch_reward = program.bind(card), program.bind(card, backend="torch")
    env = ms.make_raw_env(card)
    env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(8):
        action = env.action_space.sample()
        obs, *_ = env.step(action)
        flat_t = reader.read(env, obs)  # on the env's device, no numpy in between
        flat_n = extractor.batch(obs.cpu().numpy(), extractor.sim_vector(env)[None])
        np.testing.assert_allclose(flat_t.cpu().numpy(), flat_n, atol=1e-6)
        total_n, parts_n = numpy_reward(extractor.view(flat_n), np.asarray(action))
        total_t, parts_t = torch_reward(extractor.view(flat_t), torch.as_tensor(action, dtype=torch.float64))
        assert isinstance(total_t, torch.Tensor)
        np.testing.assert_allclose(total_t.cpu().numpy(), total_n, atol=1e-6)
        for name in parts_n:
            np.testing.assert_allclose(parts_t[name].cpu().numpy(), parts_n[name], atol=1e-6)
    env.close()


def test_rendering_is_refused_with_one_line_without_a_render_device() -> None:
    with pytest.raises(UserError, match="needs a render device"):
        make_env(load_card("maniskill/PickCube-v1"), render_mode="rgb_array")


@pytest.mark.slow
def test_reference_program_trains_with_sb3_through_the_cpu_gym_wrapper(tmp_path: Path) -> None:
    from rewardlab.training import train

    card = load_card("maniskill/PushCube-v1")
    result = train(card, "reference", "ppo", steps=1600, seed=0, run_dir=tmp_path, eval_episodes=2,
                   preset_overrides={"n_envs": 2, "n_steps": 400, "batch_size": 200, "n_epochs": 2})
    assert result.steps == 1600
    assert result.reward_sha256 == load_program(card.reference_reward_path()).sha256
    assert len(result.curve) >= 2 and len(result.eval.env_return) == 2
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["trainer"] == "sb3" and (tmp_path / "model.zip").is_file()


def test_the_grasp_memo_answers_as_the_contact_query_does() -> None:
    # the memo (rewardlab.sims.maniskill.GraspMemo) must never hand out a stale answer: compare it with
    # ManiSkill's own query at every step of a scripted pick, grasping and not
    from rewardlab.sims.base import make_env
    from rewardlab.sims.maniskill_experts import pick_cube

    env = make_env(load_card("maniskill/PickCube-v1"), seed=0)
    base = env.unwrapped
    answers = []
    for _ in range(30):
        env.step(pick_cube(base))
        memo = bool(base.agent.is_grasping(base.cube))
        assert memo == bool(type(base.agent).is_grasping(base.agent, base.cube))
        answers.append(memo)
    env.reset(seed=1)
    assert bool(base.agent.is_grasping(base.cube)) == bool(type(base.agent).is_grasping(base.agent, base.cube))
    assert any(answers) and not all(answers), answers  # it saw both answers
    env.close()
