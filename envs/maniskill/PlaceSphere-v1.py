"""Hand-written reference reward for maniskill/PlaceSphere-v1 (not LLM output).

Staged like ManiSkill's own dense reward: reach (TCP to the ball), grasp, place (ball to the spot
0.0225 m above the bin's centre, paid while grasped or once in the bin), then release and stillness once
the ball is in the bin. Components are the weighted terms and sum to the total, which lies in [0, 8].
"""
import numpy as np


def compute_dense_reward(self, action):
    ball = self.obj.position
    reach = 1.0 - np.tanh(5.0 * np.linalg.norm(self.robot.ee_position - ball, axis=-1))

    grasped = self.robot.is_grasping
    target = self.bin.position + np.array([0.0, 0.0, 0.0225])
    ball_to_target = np.linalg.norm(target - ball, axis=-1)
    # in the bin: ManiSkill's test (x-y within 0.005 m, 0.0225 +- 0.005 m above the bin's centre)
    in_bin = np.logical_and(np.linalg.norm((ball - target)[..., :2], axis=-1) <= 0.005,
                            np.abs((ball - target)[..., 2]) <= 0.005) * 1.0
    place = np.maximum(grasped, in_bin) * (1.0 - np.tanh(20.0 * ball_to_target))

    speed = np.linalg.norm(self.obj.linear_velocity, axis=-1) * 10.0 + np.linalg.norm(self.obj.angular_velocity, axis=-1)
    release = in_bin * self.robot.gripper_openness
    still = in_bin * (1.0 - np.tanh(speed))

    parts = {"reach": 2.0 * reach, "grasp": 1.0 * grasped, "place": 2.0 * place, "release": 1.5 * release,
             "still": 1.5 * still}
    total = parts["reach"] + parts["grasp"] + parts["place"] + parts["release"] + parts["still"]
    return total, parts
