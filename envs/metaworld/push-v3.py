"""Hand-written reference reward for metaworld/push-v3 (not LLM output).

Stages: reach (fingertip centre to the puck), push (puck distance to the goal on the table),
success (a ramp that is full when the puck is within 0.05 m of the goal, the env's test).
Components are the weighted terms and sum to the total, which lies in [0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    # Fingertip centre: 4.5 cm below the hand body.
    tip = self.robot.ee_position - np.array([0.0, 0.0, 0.045])
    puck = self.obj1.position
    goal = self.goal_position

    reach = 1.0 - np.tanh(np.linalg.norm(tip - puck, axis=-1) / 0.15)
    dist = np.linalg.norm(puck - goal, axis=-1)
    push = 1.0 - np.tanh(dist / 0.15)
    success = np.clip((0.06 - dist) / 0.01, 0.0, 1.0)

    parts = {"reach": 2.0 * reach, "push": 6.0 * push, "success": 2.0 * success}
    return parts["reach"] + parts["push"] + parts["success"], parts
