import numpy as np


def compute_dense_reward(self, action):
    """EXPRD (Devidze et al., NeurIPS'21) on gridworld/room, B=5

    Zero except in 6 rewarded states; per state, one value per action (up, left, down, right).
    """
    state = self.agent.cell
    reward = np.zeros_like(state, dtype=np.float64)
    # (0,0): up -5.21, left -10, down -10, right -10
    reward = np.where(state == 0, np.where(action == 0, -5.21050954697, np.where(action == 1, -10, np.where(action == 2, -10, -10))), reward)
    # (2,1): up -10, left -10, down -10, right +0.00116
    reward = np.where(state == 9, np.where(action == 0, -10, np.where(action == 1, -10, np.where(action == 2, -10, 0.00116312164487))), reward)
    # (1,2): up +0.00139, left -10, down -10, right -10
    reward = np.where(state == 15, np.where(action == 0, 0.00138614775, np.where(action == 1, -10, np.where(action == 2, -10, -10))), reward)
    # (5,2): up +1.1e-06, left -10, down -10, right -10
    reward = np.where(state == 19, np.where(action == 0, 1.09881993012e-06, np.where(action == 1, -10, np.where(action == 2, -10, -10))), reward)
    # (2,5): up -10, left -10, down -10, right +1.1e-06
    reward = np.where(state == 37, np.where(action == 0, -10, np.where(action == 1, -10, np.where(action == 2, -10, 1.09698327471e-06))), reward)
    # (6,6): up -10, left -10, down -10, right +10
    reward = np.where(state == 48, np.where(action == 0, -10, np.where(action == 1, -10, np.where(action == 2, -10, 10))), reward)
    return reward, {"designed": reward}
