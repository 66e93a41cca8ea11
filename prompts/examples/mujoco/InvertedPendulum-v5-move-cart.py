"""Few-shot example for mujoco/InvertedPendulum-v5, written by hand (not LLM output).
Task: Balance the pole while moving the cart to x = 0.5 m and holding it there.
"""
import numpy as np


def compute_dense_reward(self, action):
    # Balancing comes first: full reward upright, none at the 0.2 rad limit where the episode ends.
    balance = 1.0 - np.clip(np.abs(self.pole.angle) / 0.2, 0.0, 1.0)
    # Then the position, paid only in proportion to the balance so it never costs the pole.
    place = balance * np.exp(-np.square(self.cart.position - 0.5) / 0.05)
    # Holding still at the target: penalise cart speed near it.
    still = -0.05 * np.square(self.cart.velocity)
    total = balance + place + still
    return total, {"balance": balance, "place": place, "still": still}
