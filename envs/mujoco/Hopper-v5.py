"""Hand-written reference reward for mujoco/Hopper-v5 (not LLM output).

Reproduces the env's own v5 reward with its default weights, in named components:
  forward = forward_reward_weight 1.0 * forward velocity
  healthy = healthy_reward 1.0 while healthy, else 0 (v5 pays it only while healthy)   (exact)
  ctrl    = -ctrl_cost_weight 1e-3 * sum(action**2)                                  (exact)
Healthy is the env's is_healthy on the state after the step: 0.7 < torso height, -0.2 < torso
angle < 0.2, and every entry of qpos[2:] (torso angle and joint angles) and of the unclipped qvel
inside (-100, 100). The step that ends an episode (unhealthy) gets no healthy bonus, as in the env.
Where it differs: the env measures the forward velocity as the torso's x displacement over the
control step divided by dt (0.008 s, 4 physics substeps); the card's torso.x_velocity is the
instantaneous, unclipped qvel[0] at the end of the step, because the state after a step does not
hold the position before it (correlation about 0.995 per step under random actions; episode sums agree).
"""

import numpy as np


def compute_dense_reward(self, action):
    forward_reward_weight = 1.0
    ctrl_cost_weight = 1e-3
    healthy_reward = 1.0

    # Stage 1: stay healthy (upright, high enough, nothing exploding).
    height = self.torso.height
    angle = self.torso.angle
    healthy_z = height > 0.7
    healthy_angle = (angle > -0.2) & (angle < 0.2)
    healthy_state = (
        np.all(np.abs(self.leg.joint_angles) < 100.0, axis=-1)
        & np.all(np.abs(self.qvel) < 100.0, axis=-1)
        & (np.abs(angle) < 100.0)
    )
    is_healthy = healthy_z & healthy_angle & healthy_state
    healthy = np.where(is_healthy, healthy_reward, 0.0)

    # Stage 2: hop forward.
    forward = forward_reward_weight * self.torso.x_velocity
    # Stage 3: pay for actuator effort.
    ctrl = -ctrl_cost_weight * np.sum(np.square(action), axis=-1)

    total = forward + healthy + ctrl
    return total, {"forward": forward, "healthy": healthy, "ctrl": ctrl}
