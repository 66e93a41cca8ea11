"""Hand-written reference reward for metaworld/sweep-into-v3 (not LLM output).

Stages: reach (hand to the puck, fingertips around it), sweep (puck's x-y distance to the hole),
success (a ramp that is full when the puck is within 0.05 m of the hole in x-y, the env's test).
Components are the weighted terms and sum to the total, which lies in [0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    hand = self.robot.ee_position
    puck = self.obj1.position
    hole = self.goal_position

    # Sweeping pose: the hand about 2.5 cm above the puck centre puts the fingers around it.
    pose = puck + np.array([-0.01, 0.0, 0.025])
    reach = 1.0 - np.tanh(np.linalg.norm(hand - pose, axis=-1) / 0.15)

    dist = np.linalg.norm(puck[..., :2] - hole[..., :2], axis=-1)  # z is not used: the puck drops in
    sweep = 1.0 - np.tanh(dist / 0.1)
    success = np.clip((0.06 - dist) / 0.01, 0.0, 1.0)

    parts = {"reach": 2.0 * reach, "sweep": 6.0 * sweep, "success": 2.0 * success}
    return parts["reach"] + parts["sweep"] + parts["success"], parts
