import numpy as np


def compute_dense_reward(self, action):
    """EXPRD (Devidze et al., NeurIPS'21) on gridworld/linek, B=|S|

    Zero except in 20 rewarded states; per state, one value per action (left, right, pick).
    """
    state = self.agent.state
    reward = np.zeros_like(state, dtype=np.float64)
    # 0: left -10, right -10, pick -10
    reward = np.where(state == 0, np.where(action == 0, -10, np.where(action == 1, -10, -10)), reward)
    # 1: left -10, right -10, pick +10
    reward = np.where(state == 1, np.where(action == 0, -10, np.where(action == 1, -10, 10)), reward)
    # 2 .. 8: left +10, right -10, pick -10
    reward = np.where((state >= 2) & (state <= 8), np.where(action == 0, 10, np.where(action == 1, -10, -10)), reward)
    # 9: left -10, right -10, pick -10
    reward = np.where(state == 9, np.where(action == 0, -10, np.where(action == 1, -10, -10)), reward)
    # 0 key .. 9 key: left -10, right +10, pick -10
    reward = np.where((state >= 10) & (state <= 19), np.where(action == 0, -10, np.where(action == 1, 10, -10)), reward)
    return reward, {"designed": reward}
