"""Hand-written reference reward for mujoco/Ant-v5 (not LLM output).

Reproduces the env's own v5 reward with its default weights, in named components:
  forward = forward_reward_weight 1.0 * forward (x) velocity of the torso
  healthy = healthy_reward 1.0 while 0.2 <= torso height <= 1.0, else 0               (exact)
  ctrl    = -ctrl_cost_weight 0.5 * sum(action**2)                                     (exact)
  contact = -contact_cost_weight 5e-4 * sum(contact_forces**2)                         (exact)
The contact forces in the card are the observation's cfrc_ext, already clipped to [-1, 1] as the
env's cost clips them; the world body (row 0 of cfrc_ext), which the observation leaves out, is
always zero. The env also calls a non-finite state unhealthy; here a NaN height fails the range
test, and any other NaN makes the total NaN anyway.
Where it differs: the env measures the forward velocity as the torso's x displacement over the
control step divided by dt (0.05 s, 5 physics substeps); the card's torso.velocity is the
instantaneous velocity at the end of the step (qvel[0:3]), because the state after a step does
not hold the position before it (correlation about 0.96 per step under random actions; episode sums agree).
"""

import numpy as np


def compute_dense_reward(self, action):
    forward_reward_weight = 1.0
    ctrl_cost_weight = 0.5
    contact_cost_weight = 5e-4
    healthy_reward = 1.0

    # Stage 1: stay healthy (torso neither on the ground nor flying).
    height = self.torso.height
    is_healthy = (height >= 0.2) & (height <= 1.0)
    healthy = np.where(is_healthy, healthy_reward, 0.0)

    # Stage 2: walk forward (+x).
    forward = forward_reward_weight * self.torso.velocity[..., 0]

    # Stage 3: pay for actuator effort and hard contacts.
    ctrl = -ctrl_cost_weight * np.sum(np.square(action), axis=-1)
    contact_sq = np.sum(np.square(self.contact_forces), axis=-1)  # (B, 13)
    contact = -contact_cost_weight * np.sum(contact_sq, axis=-1)

    total = forward + healthy + ctrl + contact
    return total, {"forward": forward, "healthy": healthy, "ctrl": ctrl, "contact": contact}
