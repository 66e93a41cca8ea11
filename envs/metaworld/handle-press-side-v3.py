"""Hand-written reference reward for metaworld/handle-press-side-v3 (not LLM output).

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

    # Pressing pose: the scripted expert presses with the hand right on top of the handle end.
    pose = handle + np.array([0.01, 0.0, 0.03])
    err = (hand - pose) * np.array([2.0, 2.0, 1.0])
    reach = 1.0 - np.tanh(np.linalg.norm(err, axis=-1) / 0.2)

    gap = np.abs(handle[..., 2] - goal[..., 2])
    press = np.clip(1.0 - gap / 0.1, 0.0, 1.0)
    success = np.clip((0.03 - gap) / 0.01, 0.0, 1.0)

    parts = {"reach": 2.0 * reach, "press": 6.0 * press, "success": 2.0 * success}
    return parts["reach"] + parts["press"] + parts["success"], parts
