import numpy as np


def compute_dense_reward(self, action):
    """EXPRD (Devidze et al., NeurIPS'21) on gridworld/linek-continuous, B=5

    Zero except in 35 rewarded states; per state, one value per action (left, right, pick).
    """
    state = self.agent.state
    reward = np.zeros_like(state, dtype=np.float64)
    # x=0.105 .. x=0.145: left -10, right -10, pick +9.58
    reward = np.where((state >= 10) & (state <= 14), np.where(action == 0, -10, np.where(action == 1, -10, 9.58252200703)), reward)
    # x=0.155 .. x=0.195: left -10, right -10, pick +10
    reward = np.where((state >= 15) & (state <= 19), np.where(action == 0, -10, np.where(action == 1, -10, 10)), reward)
    # x=0.305 .. x=0.345: left +1.31, right -10, pick -10
    reward = np.where((state >= 30) & (state <= 34), np.where(action == 0, 1.30777945894, np.where(action == 1, -10, -10)), reward)
    # x=0.455 .. x=0.495: left +0.767, right -10, pick -10
    reward = np.where((state >= 45) & (state <= 49), np.where(action == 0, 0.767369270963, np.where(action == 1, -10, -10)), reward)
    # x=0.005 key .. x=0.045 key: left -10, right -10, pick -10
    reward = np.where((state >= 100) & (state <= 104), np.where(action == 0, -10, np.where(action == 1, -10, -10)), reward)
    # x=0.905 key .. x=0.995 key: left -10, right +10, pick -10
    reward = np.where((state >= 190) & (state <= 199), np.where(action == 0, -10, np.where(action == 1, 10, -10)), reward)
    return reward, {"designed": reward}
