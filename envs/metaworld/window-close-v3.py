"""Hand-written reference reward for metaworld/window-close-v3 (not LLM output).

Stages: reach (hand to the pushing pose on the +x side of the handle), slide (handle's x towards
the goal's x, linear over the ~0.2 m gap), success (a ramp that is full when |handle x - goal x|
<= 0.05 m, the env's test). Components are the weighted terms and sum to the total, in [0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    hand = self.robot.ee_position
    handle = self.obj1.position
    goal = self.goal_position

    # Pushing pose: the scripted expert pushes with the hand about 3 cm in front of (-y) and 8.5 cm
    # below the handle site, on its +x side.
    pose = handle + np.array([0.02, -0.03, -0.085])
    reach = 1.0 - np.tanh(np.linalg.norm(hand - pose, axis=-1) / 0.15)

    # Only x counts: goal_position's y and z are the window frame's, not the handle's.
    gap = np.abs(goal[..., 0] - handle[..., 0])
    slide = np.clip(1.0 - gap / 0.22, 0.0, 1.0)
    success = np.clip((0.06 - gap) / 0.01, 0.0, 1.0)

    parts = {"reach": 2.0 * reach, "slide": 6.0 * slide, "success": 2.0 * success}
    return parts["reach"] + parts["slide"] + parts["success"], parts
