# offline baseline (no LLM): adapted from the hand-written reference reward of metaworld/drawer-open-v3
# target: metaworld/drawer-close-v3 (instruction similarity 0.570); the weights and
# thresholds are the source task's, not tuned for the target.
"""Offline baseline (no LLM) for metaworld/drawer-close-v3: the reward written by hand for metaworld/drawer-open-v3, adapted.

Notes of the metaworld/drawer-open-v3 reward:
Stages: reach (hand to the hooking pose at the handle, x-y weighted so the hand comes down from
above), pull (handle distance to the open position, linear over the 0.2 m travel), success (a ramp
that is full when the handle is within 0.03 m of the goal, the env's test). Components are the
weighted terms and sum to the total, which lies in [0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    hand = self.robot.ee_position
    handle = self.obj1.position
    goal = self.goal_position

    # Hooking pose: the scripted expert pulls with the hand 2 cm in front of (-y) and 2 cm below
    # the handle. x-y errors weigh three times z errors, so hovering above the handle first pays.
    pose = handle + np.array([0.0, -0.02, -0.02])
    err = (hand - pose) * np.array([3.0, 3.0, 1.0])
    reach = 1.0 - np.tanh(np.linalg.norm(err, axis=-1) / 0.3)

    dist = np.linalg.norm(handle - goal, axis=-1)
    pull = np.clip(1.0 - dist / 0.2, 0.0, 1.0)
    success = np.clip((0.04 - dist) / 0.01, 0.0, 1.0)

    parts = {"reach": 2.0 * reach, "pull": 6.0 * pull, "success": 2.0 * success}
    return parts["reach"] + parts["pull"] + parts["success"], parts
