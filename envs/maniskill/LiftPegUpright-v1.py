"""Hand-written reference reward for maniskill/LiftPegUpright-v1 (not LLM output).

Staged like ManiSkill's own dense reward: reach (TCP to the peg's centre; full while grasped), grasp,
upright (how vertical the peg's long axis is), height (peg centre towards 0.12 m, half its length,
where it stands on an end), and a bonus when both hold as ManiSkill's success test requires.
Components are the weighted terms and sum to the total, which lies in [0, 6].
"""
import numpy as np


def compute_dense_reward(self, action):
    peg = self.peg.position
    grasped = self.robot.is_grasping
    reach = np.maximum(1.0 - np.tanh(5.0 * np.linalg.norm(self.robot.ee_position - peg, axis=-1)), grasped)

    # z component of the peg's long axis (its local x) from the (w, x, y, z) quaternion
    q = self.peg.quaternion
    axis_z = 2.0 * (q[..., 1] * q[..., 3] - q[..., 0] * q[..., 2])
    upright = np.abs(axis_z)
    height = 1.0 - np.tanh(5.0 * np.abs(peg[..., 2] - 0.12))
    stands = np.logical_and(upright > np.cos(0.08), np.abs(peg[..., 2] - 0.12) < 0.005) * 1.0

    parts = {"reach": 0.5 * reach, "grasp": 0.5 * grasped, "upright": 2.0 * upright, "height": 1.0 * height,
             "stands": 2.0 * stands}
    total = parts["reach"] + parts["grasp"] + parts["upright"] + parts["height"] + parts["stands"]
    return total, parts
