"""Few-shot example for mujoco/HalfCheetah-v5, written by hand (not LLM output).
Task: Make the cheetah do back flips: rotate the torso backwards, over and over, while staying in place.
"""
import numpy as np


def compute_dense_reward(self, action):
    # A back flip lifts the head and rotates the torso backwards: a negative pitch rate.
    spin = np.clip(-self.torso.angular_velocity, -5.0, 10.0) / 10.0
    # Height gives room to turn over; pay for it only while it is above the start height.
    lift = np.clip(self.torso.z_position, 0.0, 0.5)
    # Flipping should not turn into running: penalise forward or backward speed.
    drift = -0.1 * np.abs(self.torso.x_velocity)
    effort = -0.05 * np.sum(np.square(action), axis=-1)
    total = spin + lift + drift + effort
    return total, {"spin": spin, "lift": lift, "drift": drift, "effort": effort}
