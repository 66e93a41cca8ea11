"""Hand-written reference reward for metaworld/door-unlock-v3 (not LLM output).

Stages: reach (hand to the pose on the -x side of the lock lever), turn (lock tip's x towards the
goal's x, linear over the ~0.11 m travel), success (a ramp that is full when |lock x - goal x| <= 0.02 m,
the env's test). Components are the weighted terms and sum to the total, which lies in [0, 10].
"""
import numpy as np


def compute_dense_reward(self, action):
    hand = self.robot.ee_position
    lock = self.obj1.position
    goal = self.goal_position

    # Pushing pose: 4 cm on the -x side of the lever tip, 2 cm in front of it and 4 cm below.
    pose = lock + np.array([-0.04, -0.02, -0.04])
    reach = 1.0 - np.tanh(np.linalg.norm(hand - pose, axis=-1) / 0.15)

    # Only x counts: the tip also rises as the lock turns, and the goal's z is not the tip's.
    gap = np.abs(goal[..., 0] - lock[..., 0])
    turn = np.clip(1.0 - gap / 0.12, 0.0, 1.0)
    success = np.clip((0.03 - gap) / 0.01, 0.0, 1.0)

    parts = {"reach": 2.0 * reach, "turn": 6.0 * turn, "success": 2.0 * success}
    return parts["reach"] + parts["turn"] + parts["success"], parts
