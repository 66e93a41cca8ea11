"""Measure what the ManiSkill3 cards state: the tasks' constants (sizes, thresholds, offsets) read
from the live envs, and the scripted experts' success and reference returns against random actions.

Run ``python -m rewardlab.sims.maniskill_facts [--seeds N] [--out FILE]``; it prints JSON (and writes it
to FILE). The card tips quote these numbers; ``tests/test_maniskill.py`` checks the constants against
the live env and that each reference reward ranks its expert above random actions.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rewardlab.cards import EnvCard, load_card
from rewardlab.program import load_program
from rewardlab.sims.base import make_env
from rewardlab.sims.maniskill_experts import EXPERTS
from rewardlab.state import StateExtractor

#: The shipped ManiSkill3 cards (assets inside the wheel; no download at run time).
TASKS = ("PickCube-v1", "StackCube-v1", "PushCube-v1", "PullCube-v1", "PlaceSphere-v1", "LiftPegUpright-v1")


def _num(x: Any) -> float:
    return float(np.ravel(np.asarray(x.cpu() if hasattr(x, "cpu") else x, dtype=float))[0])


def task_constants(env_id: str) -> dict[str, float]:
    """The constants each card's tips quote, read from a freshly reset env (seed 0)."""
    card = load_card(f"maniskill/{env_id}")
    env = make_env(card, seed=0)
    u: Any = env.unwrapped
    out: dict[str, float] = {"robot_base_x": _num(u.agent.robot.pose.p[:, 0]),
                             "finger_joint_max": _num(u.agent.robot.get_qlimits()[:, -1, 1]),
                             "max_episode_steps": float(card.episode_steps)}
    if hasattr(u, "cube_half_size"):
        out["cube_half_size"] = _num(u.cube_half_size)
    for name in ("goal_thresh", "goal_radius", "radius", "peg_half_length", "peg_half_width"):
        if hasattr(u, name):
            out[name] = _num(getattr(u, name))
    if hasattr(u, "block_half_size"):
        out["bin_block_half_size"] = _num(u.block_half_size)
    if env_id in ("PushCube-v1", "PullCube-v1"):
        out["goal_offset_x"] = _num(u.goal_region.pose.p[:, 0] - u.obj.pose.p[:, 0])
    if env_id == "PickCube-v1":
        out["max_goal_height"] = _num(u.max_goal_height)
    env.close()
    return out


@dataclass
class Rollouts:
    """Reference-reward returns of the scripted expert and of uniformly random actions.

    ManiSkill ends an episode at success; a return counts the success step's reward for each step left
    to the episode length (the goal state as absorbing), so ending early by succeeding is not scored as
    losing the rest of the episode.

    :param expert_returns: one return per seed (sum of the reference reward over the episode)
    :param random_returns: likewise for random actions
    :param expert_success: the env's success at any step, per seed
    """

    task: str
    expert_returns: list[float]
    random_returns: list[float]
    expert_success: list[bool]
    env_expert_returns: list[float]
    env_random_returns: list[float]


def _episode(card: EnvCard, policy: str, seed: int, program: Any, extractor: StateExtractor) -> tuple[float, float, bool]:
    env = make_env(card, seed=seed)
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    total = env_total = 0.0
    success = False
    for t in range(card.episode_steps):
        if policy == "expert":
            action = EXPERTS[card.env_id](u)
        else:
            action = rng.uniform(-1.0, 1.0, size=card.action.shape)
        obs, env_reward, terminated, truncated, info = env.step(action.astype(np.float32))
        flat = extractor.batch(np.asarray(obs)[None], extractor.sim_vector(env)[None])
        reward, _ = program(extractor.view(flat), action[None])
        total += float(np.asarray(reward)[0])
        env_total += float(env_reward)
        success = success or bool(info["success"])
        if terminated:  # ended by success: the goal state is absorbing, its reward paid to the horizon
            total += float(np.asarray(reward)[0]) * (card.episode_steps - t - 1)
            env_total += float(env_reward) * (card.episode_steps - t - 1)
        if terminated or truncated:
            break
    env.close()
    return total, env_total, success


def rollouts(env_id: str, seeds: int = 3) -> Rollouts:
    """Run the expert and random actions for ``seeds`` seeds, scoring each with the card's reference
    reward (through the state extractor, as training does) and with the env's own normalised reward."""
    card = load_card(f"maniskill/{env_id}")
    path = card.reference_reward_path()
    assert path is not None, f"{card.id} has no reference reward"
    program = load_program(path)
    extractor = StateExtractor.for_program(card, program.source)
    reward = program.bind(card)
    result = Rollouts(env_id, [], [], [], [], [])
    for seed in range(seeds):
        ret, env_ret, ok = _episode(card, "expert", seed, reward, extractor)
        result.expert_returns.append(ret)
        result.env_expert_returns.append(env_ret)
        result.expert_success.append(ok)
        ret, env_ret, _ = _episode(card, "random", seed, reward, extractor)
        result.random_returns.append(ret)
        result.env_random_returns.append(env_ret)
    return result


def main(argv: list[str] | None = None) -> None:
    from rewardlab.runtime import limit_threads

    limit_threads()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="episodes per policy and task")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    facts = {task: {"constants": task_constants(task), "rollouts": asdict(rollouts(task, args.seeds))} for task in TASKS}
    text = json.dumps(facts, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
