"""Hand-written reference reward for maniskill/PickCube-v1 (not LLM output).

Staged like ManiSkill's own dense reward: reach (TCP to the cube), grasp (the env's grasp test), place
(cube to goal, paid only while grasped), static (joint speeds, paid once the cube is at the goal).
Components are the weighted terms and sum to the total, which lies in [0, 6].
"""
import numpy as np


def compute_dense_reward(self, action):
    cube = self.cubeA.position
    tcp_to_cube = np.linalg.norm(self.robot.ee_position - cube, axis=-1)
    reach = 1.0 - np.tanh(5.0 * tcp_to_cube)

    grasped = self.robot.is_grasping
    cube_to_goal = np.linalg.norm(self.goal_position - cube, axis=-1)
    place = grasped * (1.0 - np.tanh(5.0 * cube_to_goal))

    # ManiSkill's success: within 0.025 m of the goal and the arm static; the fingers' speeds are excluded.
    placed = cube_to_goal <= 0.025
    arm_speed = np.linalg.norm(self.robot.qvel[..., :7], axis=-1)
    static = placed * (1.0 - np.tanh(5.0 * arm_speed))

    parts = {"reach": 1.0 * reach, "grasp": 1.0 * grasped, "place": 2.0 * place, "static": 2.0 * static}
    total = parts["reach"] + parts["grasp"] + parts["place"] + parts["static"]
    return total, parts
