import numpy as np


def compute_dense_reward(self, action):
    """EXPRD (Devidze et al., NeurIPS'21) on gridworld/linek-continuous, B=3

    Zero except in 25 rewarded states; per state, one value per action (left, right, pick).
    """
    state = self.agent.state
    reward = np.zeros_like(state, dtype=np.float64)
    # x=0.105 .. x=0.195: left -10, right -10, pick +10
    reward = np.where((state >= 10) & (state <= 19), np.where(action == 0, -10, np.where(action == 1, -10, 10)), reward)
    # x=0.005 key .. x=0.045 key: left -10, right -10, pick -10
    reward = np.where((state >= 100) & (state <= 104), np.where(action == 0, -10, np.where(action == 1, -10, -10)), reward)
    # x=0.905 key .. x=0.995 key: left -10, right +10, pick -10
    reward = np.where((state >= 190) & (state <= 199), np.where(action == 0, -10, np.where(action == 1, 10, -10)), reward)
    return reward, {"designed": reward}
