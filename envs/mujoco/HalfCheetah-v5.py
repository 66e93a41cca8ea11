"""Hand-written reference reward for mujoco/HalfCheetah-v5 (not LLM output).

Reproduces the env's own v5 reward with its default weights, in named components:
  forward = forward_reward_weight 1.0 * forward velocity
  ctrl    = -ctrl_cost_weight 0.1 * sum(action**2)                      (exact)
Where it differs: the env measures the forward velocity as the torso's x displacement over the
control step divided by dt (0.05 s, 5 physics substeps); the card's torso.x_velocity is the
instantaneous velocity at the end of the step (qvel[0]), because the state after a step does not
hold the position before it. Per step the two differ by the velocity change within the step
(correlation about 0.93 under uniformly random actions, higher for smooth gaits); summed over an
episode both are about (x_end - x_start) / dt, so the objective is the same.
"""

import numpy as np


def compute_dense_reward(self, action):
    forward_reward_weight = 1.0
    ctrl_cost_weight = 0.1

    # Stage 1: run forward.
    forward = forward_reward_weight * self.torso.x_velocity
    # Stage 2: pay for actuator effort.
    ctrl = -ctrl_cost_weight * np.sum(np.square(action), axis=-1)

    total = forward + ctrl
    return total, {"forward": forward, "ctrl": ctrl}
