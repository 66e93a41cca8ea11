"""Few-shot example for mujoco/Walker2d-v5, written by hand (not LLM output).
Task: Make the two-legged walker walk forward (+x) at a steady 1.5 m/s with the torso upright, without falling over or bouncing.
"""
import numpy as np


def compute_dense_reward(self, action):
    # Track the target speed instead of maximising it: full reward within about 0.5 m/s of 1.5 m/s.
    speed_error = self.torso.x_velocity - 1.5
    speed = np.exp(-np.square(speed_error) / 0.25)
    # Upright torso: 1 when level, falling off over about 0.3 rad.
    upright = np.exp(-np.square(self.torso.angle) / 0.1)
    # Bouncing shows as vertical torso velocity; a small penalty keeps the gait smooth.
    bounce = -0.1 * np.square(self.torso.z_velocity)
    # Staying within the healthy range is the precondition for everything else (the episode ends outside it).
    alive = np.where((self.torso.height > 0.8) & (self.torso.height < 2.0), 0.5, 0.0)
    effort = -1e-3 * np.sum(np.square(action), axis=-1)
    total = 2.0 * speed + 0.5 * upright + bounce + alive + effort
    return total, {"speed": 2.0 * speed, "upright": 0.5 * upright, "bounce": bounce, "alive": alive,
                   "effort": effort}
