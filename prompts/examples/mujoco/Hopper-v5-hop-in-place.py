"""Few-shot example for mujoco/Hopper-v5, written by hand (not LLM output).
Task: Hop in place: jump as high as possible while staying over the starting point.
"""
import numpy as np


def compute_dense_reward(self, action):
    # Height above the standing height (1.25 m), paid only upwards and bounded.
    jump = np.clip(self.torso.height - 1.25, 0.0, 0.5) * 4.0
    # Upward speed gives a gradient before the torso rises; falling speed is not paid.
    rise = 0.2 * np.clip(self.torso.z_velocity, 0.0, 3.0)
    # Stay over the start: penalise both distance and horizontal speed.
    stay = -np.abs(self.torso.x_position) - 0.1 * np.abs(self.torso.x_velocity)
    # The episode ends when |angle| >= 0.2 or the torso drops below 0.7 m: keep a margin.
    upright = 0.5 * (1.0 - np.clip(np.abs(self.torso.angle) / 0.2, 0.0, 1.0))
    effort = -1e-3 * np.sum(np.square(action), axis=-1)
    total = jump + rise + stay + upright + effort
    return total, {"jump": jump, "rise": rise, "stay": stay, "upright": upright, "effort": effort}
