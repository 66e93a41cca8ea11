"""Hand-written reference reward for maniskill/StackCube-v1 (not LLM output).

Staged like ManiSkill's own dense reward: reach (TCP to cube A), grasp, place (cube A to the spot 0.04 m
above cube B, paid while grasped or once there), then release and stillness once cube A is on cube B.
Components are the weighted terms and sum to the total, which lies in [0, 8].
"""
import numpy as np


def compute_dense_reward(self, action):
    a = self.cubeA.position
    b = self.cubeB.position
    reach = 1.0 - np.tanh(5.0 * np.linalg.norm(self.robot.ee_position - a, axis=-1))

    grasped = self.robot.is_grasping
    target = b + np.array([0.0, 0.0, 0.04])
    a_to_target = np.linalg.norm(target - a, axis=-1)
    # cube A on cube B: ManiSkill's test (x-y within 0.033 m, 0.04 +- 0.005 m above)
    on_b = np.logical_and(np.linalg.norm((a - b)[..., :2], axis=-1) <= 0.033,
                          np.abs((a - b)[..., 2] - 0.04) <= 0.005) * 1.0
    place = np.maximum(grasped, on_b) * (1.0 - np.tanh(5.0 * a_to_target))

    speed = np.linalg.norm(self.cubeA.linear_velocity, axis=-1) * 10.0 + np.linalg.norm(self.cubeA.angular_velocity, axis=-1)
    release = on_b * self.robot.gripper_openness
    still = on_b * (1.0 - np.tanh(speed))

    parts = {"reach": 2.0 * reach, "grasp": 1.0 * grasped, "place": 2.0 * place, "release": 1.5 * release,
             "still": 1.5 * still}
    total = parts["reach"] + parts["grasp"] + parts["place"] + parts["release"] + parts["still"]
    return total, parts
