import numpy as np


def compute_dense_reward(self, action):
    """EXPRD (Devidze et al., NeurIPS'21) on gridworld/room, B=3

    Zero except in 4 rewarded states; per state, one value per action (up, left, down, right).
    """
    state = self.agent.cell
    reward = np.zeros_like(state, dtype=np.float64)
    # (0,0): up -5.21, left -10, down -10, right -10
    reward = np.where(state == 0, np.where(action == 0, -5.21050919684, np.where(action == 1, -10, np.where(action == 2, -10, -10))), reward)
    # (2,1): up -10, left -10, down -10, right +0.00117
    reward = np.where(state == 9, np.where(action == 0, -10, np.where(action == 1, -10, np.where(action == 2, -10, 0.00116641735229))), reward)
    # (1,2): up +0.00139, left -10, down -10, right -10
    reward = np.where(state == 15, np.where(action == 0, 0.00138607244383, np.where(action == 1, -10, np.where(action == 2, -10, -10))), reward)
    # (6,6): up -10, left -10, down -10, right +10
    reward = np.where(state == 48, np.where(action == 0, -10, np.where(action == 1, -10, np.where(action == 2, -10, 10))), reward)
    return reward, {"designed": reward}
