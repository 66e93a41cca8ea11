# offline baseline (no LLM): adapted from the hand-written reference reward of maniskill/PushCube-v1
# target: maniskill/PullCube-v1 (instruction similarity 0.271); the weights and
# thresholds are the source task's, not tuned for the target.
"""Offline baseline (no LLM) for maniskill/PullCube-v1: the reward written by hand for maniskill/PushCube-v1, adapted.

Notes of the maniskill/PushCube-v1 reward:
Staged like ManiSkill's own dense reward: reach (TCP to the pushing spot behind the cube, at its -x
side), push (cube to the goal in x-y, paid once the TCP is behind the cube), stay on the table.
Components are the weighted terms and sum to the total, which lies in [0, 4].
"""
import numpy as np


def compute_dense_reward(self, action):
    cube = self.obj.position
    push_spot = cube - np.array([0.025, 0.0, 0.0])
    tcp_to_spot = np.linalg.norm(push_spot - self.robot.ee_position, axis=-1)
    reach = 1.0 - np.tanh(5.0 * tcp_to_spot)

    # behind the cube: within 3 cm of the pushing spot (ManiSkill uses 1 cm; pushing moves the spot)
    behind = np.clip((0.04 - tcp_to_spot) / 0.01, 0.0, 1.0)
    cube_to_goal = np.linalg.norm((cube - self.goal_position)[..., :2], axis=-1)
    push = np.maximum(behind, cube_to_goal < 0.1) * (1.0 - np.tanh(5.0 * cube_to_goal))
    on_table = 1.0 - np.tanh(5.0 * np.abs(cube[..., 2] - 0.02))

    parts = {"reach": 1.0 * reach, "push": 2.0 * push, "on_table": 1.0 * push * on_table}
    total = parts["reach"] + parts["push"] + parts["on_table"]
    return total, parts
