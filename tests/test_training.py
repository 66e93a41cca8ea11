"""Training and evaluation: reproducible on CPU, all algorithms, artefacts written, bad rewards stopped."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from rewardlab.cards import load_card
from rewardlab.errors import RewardProgramError, UserError
from rewardlab.training import load_preset, train

UPRIGHT = '''
import numpy as np
def compute_dense_reward(self, action):
    up = 1.0 - np.abs(self.pole.angle)
    return up, {"upright": up}
'''


@pytest.fixture
def reward_file(tmp_path: Path) -> Path:
    path = tmp_path / "upright.py"
    path.write_text(UPRIGHT)
    return path


def test_same_seed_same_result_and_artefacts(tmp_path: Path, toy_card_path: Path, reward_file: Path) -> None:
    runs = [train(str(toy_card_path), str(reward_file), "ppo", 2048, seed=3, run_dir=tmp_path / f"r{i}",
                  eval_episodes=2, eval_every=1024) for i in range(2)]
    assert runs[0].curve == runs[1].curve
    assert runs[0].eval == runs[1].eval
    other = train(str(toy_card_path), str(reward_file), "ppo", 2048, seed=4, run_dir=tmp_path / "r2",
                  eval_episodes=2, eval_every=1024)
    assert other.eval.env_return != runs[0].eval.env_return

    run_dir = tmp_path / "r0"
    assert (run_dir / "model.zip").is_file() and (run_dir / "vecnormalize.pkl").is_file()
    assert list((run_dir / "checkpoints").glob("ppo_*_steps.zip"))
    assert list((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert (run_dir / "reward.py").read_text() == UPRIGHT
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["eval"]["program_return"] == runs[0].eval.program_return
    assert [p.step for p in runs[0].curve] == [0, 1024, 2048]
    assert len(runs[0].eval.env_return) == 2 and runs[0].eval.success[0] in (True, False)


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_off_policy_algorithms_train_and_evaluate(tmp_path: Path, toy_card_path: Path, algo: str) -> None:
    result = train(str(toy_card_path), "env", algo, 300, seed=0, run_dir=tmp_path, eval_episodes=1)
    assert result.steps == 300 and result.eval.program_return == [None]


def test_program_is_checked_in_the_sandbox_before_training(tmp_path: Path, toy_card_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\ndef compute_dense_reward(self, action):\n    return np.ones(3)\n")
    with pytest.raises(RewardProgramError, match=r"\[output\].*shape"):
        train(str(toy_card_path), str(bad), "ppo", 1024, seed=0, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "model.zip").exists()


def test_non_finite_reward_during_training_is_reported_not_zeroed(tmp_path: Path, toy_card_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    # finite on the sampled states' first rows only if unchecked; training must stop with a clear error
    sneaky.write_text("import numpy as np\ndef compute_dense_reward(self, action):\n"
                      "    return np.where(np.abs(self.pole.angle) > 0.05, np.inf, 1.0)\n")
    with pytest.raises(RewardProgramError, match="non-finite"):
        train(str(toy_card_path), str(sneaky), "ppo", 2048, seed=0, run_dir=tmp_path / "run", check=False)


def test_presets_come_from_the_agents_folder(toy_card_path: Path) -> None:
    from rewardlab.cards import load_card

    card = load_card("mujoco/InvertedPendulum-v5")
    ppo = load_preset(card, "ppo")
    assert ppo["n_envs"] == 4 and ppo["n_steps"] == 256  # the env override over the default
    assert load_preset(card, "ppo", {"n_steps": 64})["n_steps"] == 64
    assert load_preset(load_card("metaworld/reach-v3"), "sac")["policy_kwargs"]["net_arch"] == [256, 256, 256]
    with pytest.raises(UserError, match="unknown algorithm"):
        load_preset(card, "a2c")
    with pytest.raises(UserError, match="the mujoco presets have no dqn preset"):
        load_preset(card, "dqn")


def test_metaworld_trains_with_reference_reward(tmp_path: Path) -> None:
    result = train("metaworld/reach-v3", "reference", "sac", 300, seed=0, run_dir=tmp_path, eval_episodes=1)
    assert result.eval.success[0] in (True, False)
    assert result.eval.length == [500]
    assert result.eval.program_return[0] > 0


def test_final_evaluation_is_the_last_curve_point(tmp_path: Path, toy_card_path: Path, reward_file: Path) -> None:
    result = train(str(toy_card_path), str(reward_file), "ppo", 2048, seed=1, run_dir=tmp_path, eval_episodes=2,
                   eval_every=1024)
    last = result.curve[-1]
    assert last.step == result.steps == 2048
    assert last.return_env == pytest.approx(sum(result.eval.env_return) / 2)


# -- the reward path's cost is bounded at training time ---------------------------------------------------
SLOW = '''import numpy as np
def compute_dense_reward(self, action):
    extra = np.zeros_like(self.pole.angle)
    for _ in range(4000):  # legal, and far slower than the simulator's step
        extra = extra + 0.0 * np.abs(self.pole.angle)
    return 1.0 - np.abs(self.pole.angle) + extra
'''


def test_a_legal_but_slow_program_is_stopped_with_one_line(tmp_path: Path, toy_card_path: Path) -> None:
    with pytest.raises(RewardProgramError, match=r"\[cost\].*x the env's own step time") as info:
        train(str(toy_card_path), SLOW, "ppo", 4096, seed=0, run_dir=tmp_path / "run")
    assert "\n" not in str(info.value)


def test_the_reward_cost_is_measured_and_kept_with_the_result(tmp_path: Path, toy_card_path: Path,
                                                              reward_file: Path) -> None:
    result = train(str(toy_card_path), str(reward_file), "ppo", 1024, seed=0, run_dir=tmp_path, eval_episodes=1)
    cost = result.reward_cost
    assert cost["steps"] >= 256 and cost["us_per_step"] > 0 and 0 < cost["fraction"] < 25


# -- registries: trainers, policies and feature extractors, shapers -------------------------------------
def test_budgets_that_would_not_train_are_refused(toy_card_path: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"steps 512 is less than one PPO rollout .* give at least 1024"):
        train(str(toy_card_path), "env", "ppo", 512, seed=0, run_dir=tmp_path)
    with pytest.raises(UserError, match="SAC's warm-up"):
        train(str(toy_card_path), "env", "sac", 100, seed=0, run_dir=tmp_path)
    with pytest.raises(UserError, match="unknown trainer 'sb4'; did you mean 'sb3'"):
        train(str(toy_card_path), "env", "ppo", 1024, seed=0, run_dir=tmp_path, trainer="sb4")
    assert not list(tmp_path.iterdir())


def test_a_feature_extractor_named_in_the_preset_is_used(tmp_path: Path, toy_card_path: Path) -> None:
    import torch
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    from rewardlab.training.policies import register_extractor

    class Doubling(BaseFeaturesExtractor):
        def __init__(self, observation_space, features_dim: int = 8):  # type: ignore[no-untyped-def]
            super().__init__(observation_space, features_dim)
            self.linear = torch.nn.Linear(observation_space.shape[0], features_dim)

        def forward(self, obs):  # type: ignore[no-untyped-def]
            return torch.relu(self.linear(2 * obs))

    register_extractor("doubling", Doubling)
    result = train(str(toy_card_path), "env", "ppo", 1024, seed=0, run_dir=tmp_path, eval_episodes=1,
                   preset_overrides={"policy_kwargs": {"features_extractor_class": "doubling",
                                                       "features_extractor_kwargs": {"features_dim": 8}}})
    from stable_baselines3 import PPO

    model = PPO.load(result.model_path, device="cpu")
    assert type(model.policy.features_extractor).__name__ == "Doubling"
    with pytest.raises(UserError, match="unknown feature extractor 'dubling'; did you mean 'doubling'"):
        train(str(toy_card_path), "env", "ppo", 1024, seed=0, run_dir=tmp_path / "x",
              preset_overrides={"policy_kwargs": {"features_extractor_class": "dubling"}})


POTENTIAL = '''import numpy as np
def compute_dense_reward(self, action):
    return -10.0 * np.abs(self.pole.angle)
'''


def test_a_shaped_source_adds_pbrs_to_the_base_reward(tmp_path: Path, toy_card_path: Path) -> None:
    """F = gamma * Phi(s') - Phi(s) is added to the env's reward; its per-episode sum is a component and
    the unshaped reward is kept in the info."""
    from rewardlab.sources import parse_source

    (tmp_path / "phi.py").write_text(POTENTIAL)
    source = parse_source({"name": "pbrs", "base": "env", "shaper": {"name": "pbrs", "potential": str(tmp_path / "phi.py")}})
    assert source.kind == "shaped"
    from stable_baselines3.common.callbacks import BaseCallback

    class Episodes(BaseCallback):
        """A caller's own callback: it sees every training episode's statistics."""

        def __init__(self) -> None:
            super().__init__()
            self.stats: list[dict] = []

        def _on_step(self) -> bool:
            self.stats += [i["episode_stats"] for i in self.locals["infos"] if "episode_stats" in i]
            return True

    seen = Episodes()
    result = train(str(toy_card_path), source, "ppo", 1024, seed=0, run_dir=tmp_path / "run", eval_episodes=2,
                   callbacks=[seen])
    assert seen.stats and all(set(s["components"]) == {"pbrs"} for s in seen.stats)
    # shaping is a training aid: evaluation is under the base reward (here the env's own), unshaped
    assert result.eval.program_return == [None, None] and not result.curve[0].components


def test_pbrs_shaping_term_is_gamma_phi_next_minus_phi_and_zero_terminal_potential_only_on_termination() -> None:
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rewardlab.cards import load_card
    from rewardlab.program import RewardProgram
    from rewardlab.shaping.pbrs import PotentialShapingVecEnv
    from rewardlab.state import StateExtractor
    from rewardlab.wrappers import RewardVecEnv

    card = load_card("mujoco/InvertedPendulum-v5")
    extractor = StateExtractor(card)
    venv = RewardVecEnv(DummyVecEnv([lambda: gym.make("InvertedPendulum-v5", max_episode_steps=3)]), extractor)
    shaped = PotentialShapingVecEnv(venv, extractor, RewardProgram(POTENTIAL).bind(card), gamma=0.9)
    obs = shaped.reset()
    phi = lambda o: -10.0 * abs(float(o[0][1]))  # noqa: E731 - obs[1] is the pole angle
    previous = phi(obs)
    for _ in range(3):
        shaped.step_async(np.zeros((1, 1)))
        obs, reward, dones, infos = shaped.step_wait()
        terminal = infos[0]["terminal_observation"][None] if dones[0] else obs
        terminated = dones[0] and not infos[0].get("TimeLimit.truncated", False)
        expected = (0.0 if terminated else 0.9 * phi(terminal)) - previous
        assert reward[0] == pytest.approx(infos[0]["unshaped_reward"] + expected, abs=1e-5)
        previous = phi(obs)
    assert dones[0] and infos[0]["TimeLimit.truncated"]  # truncated: gamma * Phi(s') was kept


def test_a_shaper_that_needs_what_the_task_lacks_is_one_line(tmp_path: Path, toy_card_path: Path) -> None:
    from rewardlab.shaping.base import Shaper
    from rewardlab.shaping.registry import SHAPERS, register_shaper
    from rewardlab.sources import parse_source

    class NeedsModel(Shaper):
        requires = frozenset({"tabular_model"})

    register_shaper("needs-model", NeedsModel)
    try:
        source = parse_source({"name": "x", "shaper": {"name": "needs-model"}})
        with pytest.raises(UserError, match="shaper 'needs-model' needs a tabular model; test/toy-pendulum does not provide it"):
            train(str(toy_card_path), source, "ppo", 1024, seed=0, run_dir=tmp_path)
    finally:
        SHAPERS.unregister("needs-model")


# -- the sparse success reward ----------------------------------------------------------------------------
def test_sparse_trains_on_the_success_rule_exactly_as_the_same_threshold_program(tmp_path: Path) -> None:
    """Reacher's rule is ``target.distance < 0.02``: the sparse source and a program computing that
    indicator give the same rewards, so the same seed trains the same agent."""
    from rewardlab.sources import parse_source

    indicator = ("import numpy as np\ndef compute_dense_reward(self, action):\n"
                 "    hit = (self.target.distance < 0.02).astype(np.float64)\n    return hit, {'success': hit}\n")
    runs = [train("mujoco/Reacher-v5", source, "ppo", 2048, seed=0, run_dir=tmp_path / name, eval_episodes=2)
            for name, source in (("sparse", parse_source("sparse")), ("program", indicator))]
    assert runs[0].curve == runs[1].curve and runs[0].eval == runs[1].eval


def test_sparse_per_rule_kind() -> None:
    from rewardlab.cards import SuccessRule, load_card
    from rewardlab.state import StateExtractor
    from rewardlab.wrappers import EpisodeSuccess

    extractor = StateExtractor(load_card("metaworld/drawer-open-v3"))
    info_rule = EpisodeSuccess(SuccessRule.parse("info.success"), extractor, 3)
    hit = info_rule.now([{"success": 1.0}, {"success": 0.0}, {}], None, np.zeros(3, dtype=bool))
    assert hit.tolist() == [True, False, False]
    survived = EpisodeSuccess(SuccessRule.parse("survived"), extractor, 3)
    ends = [{"TimeLimit.truncated": True}, {"TimeLimit.truncated": False}, {}]
    assert survived.now(ends, None, np.array([True, True, False])).tolist() == [True, False, False]


def test_sparse_needs_a_success_rule(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sparse pays when the task succeeds, and mujoco/Hopper-v5 has no success rule"):
        train("mujoco/Hopper-v5", "sparse", "ppo", 2048, seed=0, run_dir=tmp_path)


def test_a_short_off_policy_budget_still_trains(tmp_path: Path, toy_card_path: Path) -> None:
    """A probe shorter than SAC's preset warm-up (learning_starts) used to collect random steps and
    never update; the warm-up is scaled to a fifth of the budget, so gradient steps happen."""
    from stable_baselines3 import SAC

    from rewardlab.cards import load_card

    steps = 600
    assert load_preset(load_card(toy_card_path), "sac")["learning_starts"] == 5000 > steps
    train(str(toy_card_path), "env", "sac", steps, seed=0, run_dir=tmp_path, eval_episodes=1)
    model = SAC.load(tmp_path / "model.zip")
    assert model.learning_starts == steps // 5 and model._n_updates > 0


def test_the_final_evaluation_sees_the_last_update(tmp_path: Path, toy_card_path: Path) -> None:
    """PPO reaches its last step while collecting its last rollout: an evaluation taken then saw the
    weights before the update that follows. With one rollout (1024 steps) that was the untrained
    policy, reported as the final result (a fresh user saw three rewards give identical returns)."""
    from stable_baselines3 import PPO

    from rewardlab.cards import load_card
    from rewardlab.state import StateExtractor
    from rewardlab.training.evaluation import eval_seed, evaluate
    from rewardlab.training.sb3 import make_vec_env

    result = train(str(toy_card_path), "env", "ppo", 1024, seed=0, run_dir=tmp_path, eval_episodes=2, eval_every=1024)
    assert [p.step for p in result.curve] == [0, 1024]
    card = load_card(toy_card_path)
    from stable_baselines3.common.vec_env import VecNormalize

    trained = PPO.load(tmp_path / "model.zip")
    venv = make_vec_env(card, StateExtractor(card, set()), None, 2, eval_seed(0), monitor=False)
    if (tmp_path / "vecnormalize.pkl").is_file():
        venv = VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), venv)
        venv.training, venv.norm_reward = False, False
    # the eval env is not reseeded between evaluations: the final one is its third (step 0, the one
    # taken before the last update, then this one); with the final weights it is reproduced exactly
    again = [evaluate(trained, venv, 2) for _ in range(3)][-1]
    assert again.env_return == result.eval.env_return
    assert result.curve[-1].return_env == pytest.approx(sum(result.eval.env_return) / 2)


@pytest.mark.parametrize(("card_id", "algo", "steps", "said"), [
    ("metaworld/reach-v3", "sac", 500, "SAC's warm-up (learning_starts) cut from the preset's 5,000 to 100 steps"),
    ("mujoco/InvertedPendulum-v5", "ppo", 3000, "the 3,000-step budget runs 3,072 steps"),
])
def test_a_budget_the_learner_changes_is_said(card_id: str, algo: str, steps: int, said: str) -> None:
    # found by a user: SAC's warm-up was cut and PPO ran 4,800 of a 4,096-step budget, silently
    from rewardlab.state import StateExtractor
    from rewardlab.training.sb3 import BudgetWarning, build_agent

    card = load_card(card_id)
    with pytest.warns(BudgetWarning, match=re.escape(said)):
        _, env = build_agent(card, StateExtractor(card, []), None, algo, 0, steps)
    env.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)  # a budget of whole rollouts and a full warm-up: nothing said
        _, env = build_agent(card, StateExtractor(card, []), None, algo, 0, 3072 if algo == "ppo" else 25_000)
    env.close()
