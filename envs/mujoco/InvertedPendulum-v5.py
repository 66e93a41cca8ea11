"""Hand-written reference reward for mujoco/InvertedPendulum-v5 (not LLM output).

Reproduces the env's own v5 reward exactly: 1 for every step after which the pole still stands
(|pole angle| <= 0.2 rad and the observation finite), 0 for the step that ends the episode.
One component, "alive".
"""

import numpy as np


def compute_dense_reward(self, action):
    angle = self.pole.angle
    # A NaN or inf anywhere in the observation also ends the episode (the sum is then non-finite).
    finite = np.isfinite(angle + self.pole.angular_velocity + self.cart.position + self.cart.velocity)
    upright = np.abs(angle) <= 0.2
    alive = np.where(upright & finite, 1.0, 0.0)
    return alive, {"alive": alive}
