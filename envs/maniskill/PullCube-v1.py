"""Hand-written reference reward for maniskill/PullCube-v1 (not LLM output).

Staged like ManiSkill's own dense reward: reach (TCP to the pulling spot at the cube's far, +x side),
pull (cube to the goal in x-y, paid once the TCP is at that spot or the cube is in the region).
Components are the weighted terms and sum to the total, which lies in [0, 3].
"""
import numpy as np


def compute_dense_reward(self, action):
    cube = self.obj.position
    pull_spot = cube + np.array([0.03, 0.0, 0.0])
    tcp_to_spot = np.linalg.norm(pull_spot - self.robot.ee_position, axis=-1)
    reach = 1.0 - np.tanh(5.0 * tcp_to_spot)

    at_spot = np.clip((0.04 - tcp_to_spot) / 0.01, 0.0, 1.0)
    cube_to_goal = np.linalg.norm((cube - self.goal_position)[..., :2], axis=-1)
    pull = np.maximum(at_spot, cube_to_goal < 0.1) * (1.0 - np.tanh(5.0 * cube_to_goal))

    parts = {"reach": 1.0 * reach, "pull": 2.0 * pull}
    total = parts["reach"] + parts["pull"]
    return total, parts
