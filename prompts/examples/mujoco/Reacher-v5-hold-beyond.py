"""Few-shot example for mujoco/Reacher-v5, written by hand (not LLM output).
Task: Hold the fingertip still 5 cm from the target, on the far side of it as seen from the arm base.
"""
import numpy as np


def compute_dense_reward(self, action):
    offset = self.fingertip_to_target  # (B, 2): fingertip minus target
    radius = np.linalg.norm(offset, axis=-1)
    # Stay on the 5 cm circle around the target: 1 on it, falling off over about 2 cm.
    ring = np.exp(-np.square(radius - 0.05) / 0.0004)
    # "Far side": the offset points the same way as the target seen from the base at (0, 0).
    away = self.target.position / np.maximum(np.linalg.norm(self.target.position, axis=-1, keepdims=True), 1e-6)
    side = np.sum(offset * away, axis=-1) / np.maximum(radius, 1e-6)  # cosine in [-1, 1]
    # The side only counts once the fingertip is on the circle.
    placed = ring * 0.5 * (1.0 + side)
    still = -0.01 * np.sum(np.square(self.arm.joint_velocities), axis=-1)
    effort = -0.1 * np.sum(np.square(action), axis=-1)
    total = ring + placed + still + effort
    return total, {"ring": ring, "placed": placed, "still": still, "effort": effort}
