"""Hand-written reference reward for metaworld/drawer-close-v3 (not LLM output).

Stages: reach (hand to the pushing pose in front of the drawer), push (drawer travel along +y,
linear over the 0.15 m it starts open), success (a ramp that is full when obj1 is within 0.065 m of
the goal, the env's test). Components are the weighted terms and sum to the total, in [0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    hand = self.robot.ee_position
    front = self.obj1.position  # 5 cm above the handle
    goal = self.goal_position  # the handle's closed position

    # Pushing pose: about 2.5 cm in front of (-y) and 2 cm below obj1, i.e. at the handle.
    pose = front + np.array([0.0, -0.025, -0.02])
    reach = 1.0 - np.tanh(np.linalg.norm(hand - pose, axis=-1) / 0.15)

    gap = np.abs(goal[..., 1] - front[..., 1])
    push = np.clip(1.0 - gap / 0.15, 0.0, 1.0)
    dist = np.linalg.norm(front - goal, axis=-1)  # the env's measure (includes the 5 cm z offset)
    success = np.clip((0.075 - dist) / 0.01, 0.0, 1.0)

    parts = {"reach": 2.0 * reach, "push": 6.0 * push, "success": 2.0 * success}
    return parts["reach"] + parts["push"] + parts["success"], parts
