"""Teachers: what the reward-design thesis' shapers know about a tabular task (research note §1).

A teacher solves the task's exact model by value iteration: the target policy π_T (optimal for R̄),
the optimal-action sets opt(s), ``Q^{π_T}_{R̄}``, the margins δ_s, and the state–action operators
``P^{π_T}`` and ``I^{π_T}`` with which EXPRD's informativeness and invariance constraints are linear in R.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rewardlab.sims.tabular import TabularMDP

#: EXPRD's code divides the margins by this, so that R̄ itself satisfies the invariance constraints
#: strictly (research note §1).
MARGIN_SLACK = 1 + 1e-5


@dataclass(frozen=True)
class Teacher:
    """π_T and its values on a tabular task.

    :param mdp: the task's model
    :param pi: π_T, ``(S,)`` — the first optimal action in each state
    :param opt: opt(s), ``(S, A)`` bool
    :param Q: ``Q^{π_T}_{R̄}``, ``(S, A)``
    :param V: ``V^{π_T}_{R̄} = V*``, ``(S,)``
    """

    mdp: TabularMDP
    pi: np.ndarray
    opt: np.ndarray
    Q: np.ndarray
    V: np.ndarray

    @classmethod
    def solve(cls, mdp: TabularMDP) -> Teacher:
        """Value iteration on ``mdp`` under R̄."""
        V, Q = mdp.value_iteration()
        pi, opt = mdp.optimal_policy()
        return cls(mdp, pi, opt, Q, V)

    @cached_property
    def delta(self) -> np.ndarray:
        """Margins ``δ_s = min_{a∉opt(s)} [Q(s, π_T(s)) − Q(s, a)] / (1 + 1e-5)``, ``(S,)`` (0 where every
        action is optimal)."""
        gap = self.Q[np.arange(self.mdp.n_states), self.pi][:, None] - self.Q
        gap = np.where(self.opt, np.inf, gap).min(1)
        return np.where(np.isfinite(gap), gap, 0.0) / MARGIN_SLACK

    @cached_property
    def advantage_operator(self) -> np.ndarray:
        """``(I^{π_T} − I)(I − γ P^{π_T})^{-1}``, ``(S·A, S·A)``: applied to a flat reward it gives
        ``Q^{π_T}_R(s, π_T(s)) − Q^{π_T}_R(s, a)`` for every (s, a)."""
        SA = self.mdp.n_states * self.mdp.n_actions
        P = self.mdp.P_pi(self.pi)
        return (self.mdp.I_pi(self.pi) - np.eye(SA)) @ np.linalg.inv(np.eye(SA) - self.mdp.gamma * P)

    def truncated_advantage_operators(self, horizons: Sequence[int]) -> dict[int, np.ndarray]:
        """``(I^{π_T} − I) Σ_{k=0}^{h} γ^k (P^{π_T})^k`` per horizon h (EXPRD's NeurIPS'21 code sums
        k = 0..h), each ``(S·A, S·A)``."""
        SA = self.mdp.n_states * self.mdp.n_actions
        P = self.mdp.P_pi(self.pi)
        D = self.mdp.I_pi(self.pi) - np.eye(SA)
        out: dict[int, np.ndarray] = {}
        acc, power = np.eye(SA), np.eye(SA)
        for k in range(1, max(horizons) + 1):
            power = self.mdp.gamma * power @ P
            acc = acc + power
            if k in horizons:
                out[k] = D @ acc
        if 0 in horizons:
            out[0] = D
        return out

    def invariance_bounds(self) -> np.ndarray:
        """``b`` of the invariance polytope ``(I^{π_T} − I)(I − γP^{π_T})^{-1} R ≥ b``: δ_s for a∉opt(s),
        0 otherwise; flat ``(S·A,)``."""
        b = np.where(self.opt, 0.0, self.delta[:, None])
        return b.reshape(-1)

    def satisfies_invariance(self, R: np.ndarray, atol: float = 1e-6) -> bool:
        """Whether reward ``R (S, A)`` keeps π_T optimal with the original margins."""
        return bool(np.all(self.advantage_operator @ R.reshape(-1) >= self.invariance_bounds() - atol))


def potential_shaping_term(mdp: TabularMDP, potential: np.ndarray) -> np.ndarray:
    """``F(s, a) = γ Σ_{s'} T(s'|s,a) Φ(s') − Φ(s)``, ``(S, A)``, with Φ = 0 on absorbing states (an
    episode that terminates has no future potential; Ng et al., 1999).

    Deviation (shared with EXPRD's code): the expectation over s' replaces the sampled ``γΦ(s') − Φ(s)``,
    so the table is a reward on (s, a); the optimal policies are unchanged either way.
    """
    phi = np.where(mdp.terminal, 0.0, potential)
    return mdp.gamma * mdp.T @ phi - phi[:, None]
