import numpy as np


def compute_dense_reward(self, action):
    """ExpAdaRD (Devidze et al., AAMAS'24) on metaworld/reach-v3 over an abstraction of its card fields: the last of 11 designs (the learner's reward changes while it trains)

    Abstract state: the cell of |goal_position - (robot.ee_position + np.array([0.0, 0.0, -0.045]))|
    among edges [0.05, 0.08, 0.12, 0.18, 0.25, 0.35] m; abstract action: the cosine of action[:k] with that offset
    (toward >= 0.5, away <= -0.5, other between). Zero outside
    7 rewarded cells. Designed by rewardlab's EXPRD shaper, not hand-written.
    """
    offset = self.goal_position - (self.robot.ee_position + np.array([0.0, 0.0, -0.045]))
    dist = np.linalg.norm(offset, axis=-1)
    cell = (dist[..., None] >= np.array([0.05, 0.08, 0.12, 0.18, 0.25, 0.35])).sum(-1)
    move = action[..., :offset.shape[-1]]
    cos = (move * offset).sum(-1) / (np.linalg.norm(move, axis=-1) * dist + 1e-9)
    kind = np.where(cos >= 0.5, 0, np.where(cos <= -0.5, 2, 1))
    reward = np.zeros_like(dist)
    # d∈[0.000,0.050): toward +10, other -10, away -10
    reward = np.where(cell == 0, np.where(kind == 0, 10, np.where(kind == 1, -10, -10)), reward)
    # d∈[0.050,0.080): toward +10, other -10, away -10
    reward = np.where(cell == 1, np.where(kind == 0, 10, np.where(kind == 1, -10, -10)), reward)
    # d∈[0.080,0.120): toward +10, other -10, away -10
    reward = np.where(cell == 2, np.where(kind == 0, 10, np.where(kind == 1, -10, -10)), reward)
    # d∈[0.120,0.180): toward +10, other -10, away -10
    reward = np.where(cell == 3, np.where(kind == 0, 10, np.where(kind == 1, -10, -10)), reward)
    # d∈[0.180,0.250): toward +10, other -10, away -10
    reward = np.where(cell == 4, np.where(kind == 0, 10, np.where(kind == 1, -10, -10)), reward)
    # d∈[0.250,0.350): toward +10, other -10, away -10
    reward = np.where(cell == 5, np.where(kind == 0, 10, np.where(kind == 1, -10, -10)), reward)
    # d≥0.350: toward +10, other +9.61, away +9.61
    reward = np.where(cell == 6, np.where(kind == 0, 10, np.where(kind == 1, 9.60762113681, 9.60762113681)), reward)
    return reward, {"designed": reward}
