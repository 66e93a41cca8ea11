"""Hand-written reference reward for metaworld/door-close-v3 (not LLM output).

Stages: reach (hand to the pushing pose on the door leaf, just inside the handle), close (handle
distance to its closed position, linear over the ~0.56 m swing), success (a ramp that is full when
the handle is within 0.08 m of the goal, the env's test). Components are the weighted terms and sum
to the total, which lies in [0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    hand = self.robot.ee_position
    handle = self.obj1.position
    goal = self.goal_position

    # Pushing pose: the scripted expert pushes the leaf about 6 cm on the -x side of the handle,
    # 10 cm towards the hinge (+y) and 5 cm above it.
    pose = handle + np.array([-0.06, 0.1, 0.05])
    reach = 1.0 - np.tanh(np.linalg.norm(hand - pose, axis=-1) / 0.15)

    dist = np.linalg.norm(handle - goal, axis=-1)
    close = np.clip(1.0 - dist / 0.6, 0.0, 1.0)
    success = np.clip((0.09 - dist) / 0.01, 0.0, 1.0)

    parts = {"reach": 2.0 * reach, "close": 6.0 * close, "success": 2.0 * success}
    return parts["reach"] + parts["close"] + parts["success"], parts
