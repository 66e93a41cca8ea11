"""Exact tabular models: a finite MDP ``(S, A, T, R̄, γ, ρ₀)`` with value iteration, policy evaluation,
Q-values in state–action space and discounted occupancy, all vectorised numpy.

This is what the reward-design thesis' teachers need from a task (Devidze 2025, §1 of
``research/reward_design_algorithms.md``): the optimal values and policy, the operators
``P^π[(s,a),(s',a')] = T(s'|s,a)·1{a'=π(s')}`` and ``I^π`` that pick ``Q(s, π(s))``, and the exact
discounted return of any policy from the start distribution (the papers' learning-curve metric).

Conventions: states ``0..S-1``, actions ``0..A-1``; ``T[s, a, s']`` sums to 1 over ``s'``; rewards
``R[s, a]`` (the expected reward of taking ``a`` in ``s``); absorbing states loop on themselves with
reward 0 in every action, so the infinite-horizon values are the episodic ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Actions whose Q-value is within this of the best one count as optimal (ties in symmetric layouts).
OPT_TOL = 1e-4


@dataclass(frozen=True)
class TabularMDP:
    """A finite MDP with its exact model.

    :param T: transition probabilities, ``(S, A, S)``, rows summing to 1
    :param R: the task reward R̄, ``(S, A)``
    :param gamma: discount factor in ``[0, 1)``
    :param start: start distribution ρ₀, ``(S,)``
    :param horizon: the episode's step limit (episodes of the env built on it are truncated there)
    :param terminal: absorbing states, ``(S,)`` bool (entering one ends the episode)
    :param state_names: a name per state (``(3, 5)``, ``x=0.45 key``) for tables and plots
    :param action_names: a name per action (``up``, ``left``, ...)
    :param coords: ``(x, y)`` grid coordinates per state for drawing (NaN for off-grid states), or None
    """

    T: np.ndarray
    R: np.ndarray
    gamma: float
    start: np.ndarray
    horizon: int
    terminal: np.ndarray
    state_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()
    coords: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        S, A, S2 = self.T.shape
        if S != S2 or self.R.shape != (S, A) or self.start.shape != (S,) or self.terminal.shape != (S,):
            raise ValueError(f"inconsistent shapes: T {self.T.shape}, R {self.R.shape}, start {self.start.shape}, "
                             f"terminal {self.terminal.shape}")
        if not np.allclose(self.T.sum(-1), 1.0, atol=1e-9):
            raise ValueError("every T[s, a, :] must sum to 1")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")

    @property
    def n_states(self) -> int:
        return int(self.T.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.T.shape[1])

    def name_of(self, s: int) -> str:
        return self.state_names[s] if self.state_names else str(s)

    # -- planning ----------------------------------------------------------------------------------
    def value_iteration(self, R: np.ndarray | None = None, tol: float = 1e-10,
                        max_iter: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
        """Optimal values for reward ``R`` (default R̄) by value iteration.

        :return: ``(V (S,), Q (S, A))``
        """
        R = self.R if R is None else R
        V = np.zeros(self.n_states)
        for _ in range(max_iter):
            Q = R + self.gamma * self.T @ V
            V_new = Q.max(1)
            if np.max(np.abs(V_new - V)) < tol:
                V = V_new
                break
            V = V_new
        return V, R + self.gamma * self.T @ V

    def optimal_policy(self, R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """π_T and opt(s) for reward ``R``: ``(pi (S,) int — the first best action, opt (S, A) bool)``."""
        _, Q = self.value_iteration(R)
        opt = Q >= Q.max(1, keepdims=True) - OPT_TOL
        return Q.argmax(1), opt

    # -- evaluation --------------------------------------------------------------------------------
    def policy_matrix(self, pi: np.ndarray) -> np.ndarray:
        """A deterministic ``(S,)`` or stochastic ``(S, A)`` policy as ``(S, A)`` probabilities."""
        pi = np.asarray(pi)
        if pi.ndim == 2:
            return pi.astype(float)
        out = np.zeros((self.n_states, self.n_actions))
        out[np.arange(self.n_states), pi.astype(int)] = 1.0
        return out

    def evaluate(self, pi: np.ndarray, R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``V^π (S,)`` and ``Q^π (S, A)`` of a policy under ``R`` (default R̄) by a linear solve."""
        R = self.R if R is None else R
        P = self.policy_matrix(pi)
        T_pi = np.einsum("sa,sat->st", P, self.T)
        r_pi = (P * R).sum(1)
        V = np.linalg.solve(np.eye(self.n_states) - self.gamma * T_pi, r_pi)
        return V, R + self.gamma * self.T @ V

    def greedy_values(self, actions: np.ndarray, R: np.ndarray | None = None) -> np.ndarray:
        """Exact discounted return from ρ₀ of many deterministic policies at once — the papers' metric.

        :param actions: ``(N, S)`` int, one deterministic policy per row (``N`` runs)
        :return: ``(N,)`` ``ρ₀ · V^π``
        """
        R = self.R if R is None else R
        actions = np.asarray(actions, dtype=np.int64)
        idx = np.arange(self.n_states)
        T_pi = self.T[idx[None, :], actions]  # (N, S, S)
        r_pi = R[idx[None, :], actions]  # (N, S)
        V = np.linalg.solve(np.eye(self.n_states)[None] - self.gamma * T_pi, r_pi[..., None])[..., 0]
        return V @ self.start

    def optimal_start_value(self) -> float:
        """``ρ₀ · V*`` under R̄."""
        return float(self.start @ self.value_iteration()[0])

    def occupancy(self, pi: np.ndarray, start: np.ndarray | None = None, normalise: bool = True) -> np.ndarray:
        """Discounted state occupancy ``μ^π = (1−γ)·ρ₀ᵀ (I − γ T_π)^{-1}`` (normalised to sum 1), ``(S,)``."""
        P = self.policy_matrix(pi)
        T_pi = np.einsum("sa,sat->st", P, self.T)
        rho = self.start if start is None else start
        mu = np.linalg.solve((np.eye(self.n_states) - self.gamma * T_pi).T, rho)
        return mu / mu.sum() if normalise else mu * (1 - self.gamma)

    # -- state–action operators (EXPRD, ExpAdaRD) -----------------------------------------------------
    def P_pi(self, pi: np.ndarray) -> np.ndarray:
        """``P^π[(s,a),(s',a')] = T(s'|s,a)·π(a'|s')``, ``(S·A, S·A)``, row index ``s·A + a``."""
        P = self.policy_matrix(pi)
        S, A = self.n_states, self.n_actions
        return (self.T.reshape(S * A, S)[:, :, None] * P[None, :, :]).reshape(S * A, S * A)

    def I_pi(self, pi: np.ndarray) -> np.ndarray:
        """``I^π``: ``(I^π Q)[(s,a)] = Σ_b π(b|s) Q(s,b)``, ``(S·A, S·A)``."""
        P = self.policy_matrix(pi)
        S, A = self.n_states, self.n_actions
        out = np.zeros((S * A, S * A))
        for s in range(S):
            out[s * A:(s + 1) * A, s * A:(s + 1) * A] = P[s][None, :]
        return out

    def horizon_returns(self, policies: np.ndarray, R: np.ndarray | None = None, discount: float | None = None,
                        horizon: int | None = None) -> np.ndarray:
        """Exact expected return over the episode's horizon of many stochastic policies at once, by
        backward induction ``V_t = r_π + γ T_π V_{t+1}``.

        :param policies: ``(N, S, A)`` action probabilities, one policy per run
        :param discount: the return's discount (default γ; 1 gives the undiscounted return)
        :param horizon: steps (default :attr:`horizon`)
        :return: ``(N,)`` ``ρ₀ · V_0``
        """
        R = self.R if R is None else R
        g = self.gamma if discount is None else discount
        policies = np.asarray(policies, dtype=float)
        T_pi = np.einsum("nsa,sat->nst", policies, self.T)
        r_pi = (policies * R[None]).sum(-1)
        V = np.zeros(r_pi.shape)
        for _ in range(horizon or self.horizon):
            V = r_pi + g * np.einsum("nst,nt->ns", T_pi, V)
        return V @ self.start
