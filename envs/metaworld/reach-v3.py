"""Hand-written reference reward for metaworld/reach-v3 (not LLM output).

Stages: approach (coarse, long-range distance of the fingertip centre to the goal), precision (a
sharp term near the goal), success (a ramp that is full within 0.05 m, the env's test). The puck
(obj1) is a distractor and is not used. Components are the weighted terms and sum to the total, in
[0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    # Fingertip centre: 4.5 cm below the hand body (the env's success test measures from it).
    tip = self.robot.ee_position - np.array([0.0, 0.0, 0.045])
    dist = np.linalg.norm(tip - self.goal_position, axis=-1)

    approach = 1.0 - np.tanh(dist / 0.25)
    precision = 1.0 - np.tanh(dist / 0.03)
    success = np.clip((0.06 - dist) / 0.01, 0.0, 1.0)

    parts = {"approach": 4.0 * approach, "precision": 4.0 * precision, "success": 2.0 * success}
    return parts["approach"] + parts["precision"] + parts["success"], parts
