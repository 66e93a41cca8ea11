# offline baseline (no LLM): adapted from the hand-written reference reward of metaworld/handle-press-v3
# target: metaworld/button-press-v3 (instruction similarity 0.418); the weights and
# thresholds are the source task's, not tuned for the target.
"""Offline baseline (no LLM) for metaworld/button-press-v3: the reward written by hand for metaworld/handle-press-v3, adapted.

Notes of the metaworld/handle-press-v3 reward:
Stages: reach (hand onto the top of the handle end, x-y weighted so it comes from above), press
(handle end's height towards the goal height, linear over the ~0.1 m travel; pressing past the goal
loses reward), success (a ramp that is full when |handle z - goal z| <= 0.02 m, the env's test).
Components are the weighted terms and sum to the total, which lies in [0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    hand = self.robot.ee_position
    handle = self.obj1.position
    goal = self.goal_position

    # Pressing pose: the scripted expert presses with the hand just in front of (-y) the handle
    # end, at about its height.
    pose = handle + np.array([0.0, -0.025, 0.01])
    err = (hand - pose) * np.array([2.0, 2.0, 1.0])
    reach = 1.0 - np.tanh(np.linalg.norm(err, axis=-1) / 0.2)

    gap = np.abs(handle[..., 2] - goal[..., 2])
    press = np.clip(1.0 - gap / 0.1, 0.0, 1.0)
    success = np.clip((0.03 - gap) / 0.01, 0.0, 1.0)

    parts = {"reach": 2.0 * reach, "press": 6.0 * press, "success": 2.0 * success}
    return parts["reach"] + parts["press"] + parts["success"], parts
