"""Hand-written reference reward for mujoco/Walker2d-v5 (not LLM output).

Reproduces the env's own v5 reward with its default weights, in named components:
  forward = forward_reward_weight 1.0 * forward velocity
  healthy = healthy_reward 1.0 while healthy, else 0 (v5 pays it only while healthy)   (exact)
  ctrl    = -ctrl_cost_weight 1e-3 * sum(action**2)                                  (exact)
Healthy is the env's is_healthy on the state after the step: 0.8 < torso height < 2.0 and
-1 < torso angle < 1. The step that ends an episode (unhealthy) gets no healthy bonus, as in the env.
Where it differs: the env measures the forward velocity as the torso's x displacement over the
control step divided by dt (0.008 s, 4 physics substeps); the card's torso.x_velocity is the
instantaneous, unclipped qvel[0] at the end of the step, because the state after a step does not
hold the position before it (correlation about 0.97 per step under random actions; episode sums agree).
"""

import numpy as np


def compute_dense_reward(self, action):
    forward_reward_weight = 1.0
    ctrl_cost_weight = 1e-3
    healthy_reward = 1.0

    # Stage 1: stay healthy (torso high enough, not too high, not tilted over).
    height = self.torso.height
    angle = self.torso.angle
    is_healthy = (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
    healthy = np.where(is_healthy, healthy_reward, 0.0)

    # Stage 2: walk forward.
    forward = forward_reward_weight * self.torso.x_velocity
    # Stage 3: pay for actuator effort.
    ctrl = -ctrl_cost_weight * np.sum(np.square(action), axis=-1)

    total = forward + healthy + ctrl
    return total, {"forward": forward, "healthy": healthy, "ctrl": ctrl}
