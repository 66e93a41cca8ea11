"""Few-shot example for mujoco/Ant-v5, written by hand (not LLM output).
Task: Walk sideways in the +y direction at 0.5 m/s, keeping the torso level and not drifting in x.
"""
import numpy as np


def compute_dense_reward(self, action):
    vx = self.torso.velocity[..., 0]
    vy = self.torso.velocity[..., 1]
    # Track 0.5 m/s in +y; drift in x is an error too.
    track = np.exp(-(np.square(vy - 0.5) + np.square(vx)) / 0.1)
    # The torso's up axis has z component 1 - 2 (qx^2 + qy^2) for a quaternion (w, x, y, z): 1 when level.
    q = self.torso.quaternion
    level = 1.0 - 2.0 * (np.square(q[..., 1]) + np.square(q[..., 2]))
    # The episode ends when the torso leaves [0.2, 1.0] m: pay a little for every step inside.
    alive = np.where((self.torso.height >= 0.2) & (self.torso.height <= 1.0), 0.5, 0.0)
    effort = -0.05 * np.sum(np.square(action), axis=-1)
    total = 2.0 * track + 0.5 * level + alive + effort
    return total, {"track": 2.0 * track, "level": 0.5 * level, "alive": alive, "effort": effort}
