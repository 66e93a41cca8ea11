"""Hand-written reference reward for metaworld/pick-place-v3 (not LLM output).

Stages: reach (fingertip centre to the puck), grasp (gripper closed while the fingertips are at the
puck), lift (puck raised off the table), place (puck distance to the goal, paid only while lifted),
success (a ramp that is full when the puck is within 0.07 m of the goal, the env's test).
Components are the weighted terms and sum to the total, which lies in [0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    # Fingertip centre: 4.5 cm below the hand body.
    tip = self.robot.ee_position - np.array([0.0, 0.0, 0.045])
    puck = self.obj1.position
    goal = self.goal_position

    tip_to_puck = np.linalg.norm(tip - puck, axis=-1)
    reach = 1.0 - np.tanh(tip_to_puck / 0.15)

    # Openness is about 0.45 when closed on the puck and 1 when open.
    closed = np.clip((0.8 - self.robot.gripper_openness) / 0.3, 0.0, 1.0)
    at_puck = 1.0 - np.tanh(tip_to_puck / 0.02)
    grasp = closed * at_puck

    # The puck rests with its centre at z ~ 0.02; 3 cm higher counts as fully lifted.
    lift = np.clip((puck[..., 2] - 0.025) / 0.03, 0.0, 1.0)

    dist = np.linalg.norm(puck - goal, axis=-1)
    place = lift * (1.0 - np.tanh(dist / 0.15))
    success = np.clip((0.08 - dist) / 0.01, 0.0, 1.0)

    parts = {"reach": 1.0 * reach, "grasp": 1.0 * grasp, "lift": 2.0 * lift, "place": 4.0 * place,
             "success": 2.0 * success}
    total = parts["reach"] + parts["grasp"] + parts["lift"] + parts["place"] + parts["success"]
    return total, parts
