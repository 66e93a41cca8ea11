"""Scripted experts for the ManiSkill3 cards, hand-written for rewardlab (not ManiSkill's).

ManiSkill ships motion-planning solutions for these tasks (``mani_skill.examples.motionplanning``),
but they need ``mplib``, whose planner (0.1.1, the version ManiSkill 3.0.1 resolves to) crashes with a
segmentation fault when it is created on our machines (measured). These experts are closed-loop
state machines in the cards' own action space (``pd_ee_delta_pose``: ``[dx, dy, dz, droll, dpitch,
dyaw, gripper]`` in [-1, 1], 1 = 0.1 m or 0.1 rad of target motion, gripper +1 open / -1 closed):
reach above the object, descend, close, carry, release. They read the true state from the unwrapped
env (one env, CPU physics), so they serve the reward-ranking tests and the facts script, not training.
Each task's success rate over seeds is measured by ``python -m rewardlab.sims.maniskill_facts``
(``envs/maniskill/facts.json``); the LiftPegUpright script is partial (it never succeeds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: metres of end-effector motion per unit of the position action (ManiSkill's Panda pd_ee_delta_pose)
POS_SCALE = 0.1
OPEN, CLOSED = 1.0, -1.0
#: a loose grip the peg can turn in (ManiSkill's solution closes to -0.6)
LOOSE = -0.6


def _p(actor: Any) -> np.ndarray:
    return actor.pose.p[0].cpu().numpy().astype(float)


def _move(tcp: np.ndarray, target: np.ndarray, gripper: float, gain: float = 1.0) -> np.ndarray:
    """An action moving the tool centre point toward ``target`` (world = robot-root frame axes)."""
    delta = np.clip(gain * (target - tcp) / POS_SCALE, -1.0, 1.0)
    return np.concatenate([delta, np.zeros(3), [gripper]])


def _pick_and_carry(env: Any, obj: Any, carry_to: np.ndarray, release_within: float | None = None,
                    grip_z: float = 0.0) -> np.ndarray:
    """Grasp ``obj`` from above, then carry it to ``carry_to`` (object centre); open the gripper once
    the object is within ``release_within`` of it (None: never)."""
    tcp, o = _p(env.agent.tcp), _p(obj)
    grasped = bool(env.agent.is_grasping(obj)[0])
    if grasped:
        if release_within is not None and np.linalg.norm(o - carry_to) < release_within:
            return _move(tcp, tcp, OPEN)
        return _move(tcp, tcp + (carry_to - o), CLOSED)
    grip = o + np.array([0.0, 0.0, grip_z])
    xy_off = np.linalg.norm(tcp[:2] - grip[:2])
    if xy_off > 0.01:  # above the object first, gripper open
        return _move(tcp, np.array([grip[0], grip[1], max(grip[2] + 0.06, tcp[2])]) if xy_off > 0.03
                     else np.array([grip[0], grip[1], grip[2] + 0.04]), OPEN)
    if tcp[2] - grip[2] > 0.01:
        return _move(tcp, grip, OPEN)
    return _move(tcp, grip, CLOSED)


def pick_cube(env: Any) -> np.ndarray:
    return _pick_and_carry(env, env.cube, _p(env.goal_site))


def stack_cube(env: Any) -> np.ndarray:
    half = float(env.cube_half_size[2])
    target = _p(env.cubeB) + np.array([0.0, 0.0, 2 * half + 0.002])
    if not bool(env.agent.is_grasping(env.cubeA)[0]) and np.linalg.norm(_p(env.cubeA) - target) < 0.02:
        tcp = _p(env.agent.tcp)  # released on cubeB: back off upwards
        return _move(tcp, tcp + np.array([0.0, 0.0, 0.05]), OPEN)
    return _pick_and_carry(env, env.cubeA, target, release_within=0.006)


def place_sphere(env: Any) -> np.ndarray:
    target = _p(env.bin) + np.array([0.0, 0.0, float(env.radius) + float(env.block_half_size[0])])
    if not bool(env.agent.is_grasping(env.obj)[0]) and np.linalg.norm(_p(env.obj)[:2] - target[:2]) < 0.01:
        tcp = _p(env.agent.tcp)
        return _move(tcp, tcp + np.array([0.0, 0.0, 0.05]), OPEN)
    tcp, o = _p(env.agent.tcp), _p(env.obj)
    if (bool(env.agent.is_grasping(env.obj)[0]) and np.linalg.norm(o[:2] - target[:2]) < 0.004
            and abs(o[2] - target[2]) < 0.006):
        return _move(tcp, tcp, OPEN)
    return _pick_and_carry(env, env.obj, target)


def _push(env: Any, direction: float) -> np.ndarray:
    """Push the cube along x (+1: away from the robot, -1: towards it) from its far side."""
    half = float(env.cube_half_size) if np.ndim(env.cube_half_size) == 0 else float(np.ravel(env.cube_half_size)[0])
    tcp, o, goal = _p(env.agent.tcp), _p(env.obj), _p(env.goal_region)
    contact = o + np.array([-direction * (half + 0.012), 0.0, 0.0])
    behind = (tcp[0] - contact[0]) * direction < 0.005
    if np.linalg.norm(tcp[:2] - contact[:2]) > 0.015 and not (behind and abs(tcp[1] - o[1]) < 0.015):
        hover = np.array([contact[0], contact[1], o[2] + 0.06])
        if tcp[2] < o[2] + 0.04 and np.linalg.norm(tcp[:2] - contact[:2]) > 0.015:
            return _move(tcp, np.array([tcp[0], tcp[1], o[2] + 0.07]), CLOSED)
        return _move(tcp, hover, CLOSED)
    if tcp[2] - o[2] > 0.01:
        return _move(tcp, np.array([contact[0], contact[1], o[2]]), CLOSED)
    push_to = np.array([goal[0] - direction * (half + 0.012), goal[1], o[2]])
    return _move(tcp, push_to, CLOSED)


def push_cube(env: Any) -> np.ndarray:
    return _push(env, 1.0)


def pull_cube(env: Any) -> np.ndarray:
    return _push(env, -1.0)


def _peg_axis(q: np.ndarray) -> np.ndarray:
    """The peg's long axis (its local x) in world coordinates, from a (w, x, y, z) quaternion."""
    w, x, y, z = q
    return np.array([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)])


def lift_peg_upright(env: Any) -> np.ndarray:
    """A partial solution: grasp the lying peg loosely 0.1 m from its centre (as ManiSkill's
    motion-planning solution does) and lift it, so that it swings in the fingers to about 55 degrees
    from the table, then hold it there. Standing it on the table needs the hand turned about the peg's
    grip, which this script does not manage (pitching the hand stalls near 45 degrees)."""
    tcp, peg = _p(env.agent.tcp), _p(env.peg)
    if bool(env.agent.is_grasping(env.peg)[0]):
        return _move(tcp, np.array([tcp[0], tcp[1], 0.3]), LOOSE)
    grip = peg + np.array([0.10, 0.0, 0.0])
    if np.linalg.norm(tcp[:2] - grip[:2]) > 0.01:
        return _move(tcp, np.array([grip[0], grip[1], grip[2] + 0.05]), OPEN)
    if tcp[2] - grip[2] > 0.008:
        return _move(tcp, grip, OPEN)
    return _move(tcp, grip, CLOSED)


#: Task env id -> scripted expert ``(unwrapped env) -> action (7,)``.
EXPERTS: dict[str, Callable[[Any], np.ndarray]] = {
    "PickCube-v1": pick_cube, "StackCube-v1": stack_cube, "PlaceSphere-v1": place_sphere,
    "PushCube-v1": push_cube, "PullCube-v1": pull_cube, "LiftPegUpright-v1": lift_peg_upright,
}
