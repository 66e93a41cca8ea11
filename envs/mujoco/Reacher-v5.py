"""Hand-written reference reward for mujoco/Reacher-v5 (not LLM output).

Reproduces the env's own v5 reward exactly, with its default weights, in named components:
  dist = -reward_dist_weight 1.0 * |fingertip - target|
  ctrl = -reward_control_weight 1.0 * sum(action**2)
The env takes the norm of the 3-d difference of the two bodies; both lie in the plane z = 0.01,
so the 2-d fingertip_to_target of the card gives the same number.
"""

import numpy as np


def compute_dense_reward(self, action):
    reward_dist_weight = 1.0
    reward_control_weight = 1.0

    # Stage 1: bring the fingertip to the target.
    distance = np.linalg.norm(self.fingertip_to_target, axis=-1)
    dist = -reward_dist_weight * distance
    # Stage 2: pay for actuator effort.
    ctrl = -reward_control_weight * np.sum(np.square(action), axis=-1)

    total = dist + ctrl
    return total, {"dist": dist, "ctrl": ctrl}
