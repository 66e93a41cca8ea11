"""Hand-written reference reward for metaworld/button-press-v3 (not LLM output).

Stages: reach (hand to the pressing pose in front of the button), press (button travel along +y
towards the goal depth), success (a ramp that is full when |button y - goal y| <= 0.02 m, the env's
test). Components are the weighted terms and sum to the total, which lies in [0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    hand = self.robot.ee_position
    button = self.obj1.position
    goal = self.goal_position

    # Pressing pose: the scripted expert pushes with the hand about 4 cm in front of (-y) and
    # 6.5 cm below the button's face centre.
    pose = button + np.array([0.0, -0.04, -0.065])
    reach = 1.0 - np.tanh(np.linalg.norm(hand - pose, axis=-1) / 0.15)

    # The button only moves along +y; its full travel is about 9 cm.
    gap = np.abs(goal[..., 1] - button[..., 1])
    press = np.clip(1.0 - gap / 0.1, 0.0, 1.0)
    success = np.clip((0.03 - gap) / 0.01, 0.0, 1.0)

    parts = {"reach": 2.0 * reach, "press": 6.0 * press, "success": 2.0 * success}
    return parts["reach"] + parts["press"] + parts["success"], parts
