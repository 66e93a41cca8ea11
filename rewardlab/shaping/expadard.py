"""ExpAdaRD: adaptive, learner-aware explicable reward design (Devidze, Kamalaruban & Singla, "Informativeness
of Reward Functions in Reinforcement Learning", AAMAS 2024), with its INVARIANCE baseline.

The teacher knows the model, π_T, the advantages ``A^{π_T}_{R̄}`` and the occupancy μ_T of an
ε-greedy (ε = 0.4) π_T, and — unlike EXPRD — the learner's current policy π_L. Every N_r = 5 episodes
it redesigns the learner's reward by one LP (research note §3, the code's h = 1 criterion):

    max_w  I(R|π_L) = Σ_{s,a} μ_T(s) μ_L(s) π_L(a|s)² [A_T(s,a) − Σ_b π_L(b|s) A_T(s,b)] [R(s,a) − Σ_b π_L(b|s) R(s,b)]
    s.t.   R = Φ w (structural: the same features for every design), invariance (π_T stays optimal with
           its margins), |R| ≤ R_max

with μ_L the learner's normalised discounted occupancy. The learner receives only the designed R.

Features Φ (state features × one weight per action): ROOM — nine overlapping 3×3 squares with corners
at x, y ∈ {0, 2, 4} and a goal indicator (40 weights); LINEK — a 5-leaf tree {no key: other, goal cell,
key cell; key: other, goal cell} (15 weights); any other task — one indicator per state (a labelled
deviation: no structural constraint). INVARIANCE is the same LP with a zero objective (any feasible R;
HiGHS returns a vertex of the polytope — the paper's baseline does not say which point).

Deviations: HiGHS instead of cvxpy; each run's design uses its own learner's π_L (runs are
vectorised); the learner pool is a fixed, seeded stand-in for the paper's 5 stored initial policies
(:func:`rewardlab.training.tabular.initial_policy_pool`, hyperparameter ``init_pool: 5``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.shaping.base import TableShaper, TabularOnlyShaper
from rewardlab.shaping.teachers import Teacher
from rewardlab.sims.tabular import TabularMDP

#: ExpAdaRD's settings (research note §3).
DEFAULTS: dict[str, Any] = {"update_every": 5, "r_max": 10.0, "teacher_epsilon": 0.4}


def state_features(env_id: str, mdp: TabularMDP) -> np.ndarray:
    """The structural features φ(s), ``(S, K)`` (zero on absorbing states); see the module docstring."""
    S = mdp.n_states
    if env_id == "room" and mdp.coords is not None:
        xy = mdp.coords
        feats = [((xy[:, 0] >= x0) & (xy[:, 0] <= x0 + 2) & (xy[:, 1] >= y0) & (xy[:, 1] <= y0 + 2))
                 for y0 in (0, 2, 4) for x0 in (0, 2, 4)]
        goal = np.zeros(S, dtype=bool)
        goal[np.flatnonzero(np.abs(mdp.R).max(1) >= np.abs(mdp.R).max())] = True
        F = np.stack([*feats, goal], axis=1).astype(float)
    elif env_id == "linek" and mdp.coords is not None:
        pos, key = mdp.coords[:, 0], mdp.coords[:, 1]
        last = np.nanmax(pos)
        # the key cell: where some action moves the agent into the key layer
        into_key = np.array([bool(key[s] == 0 and (mdp.T[s][:, key == 1] > 0.5).any()) for s in range(S)])
        F = np.stack([(key == 0) & (pos != last) & ~into_key, (key == 0) & (pos == last), into_key,
                      (key == 1) & (pos != last), (key == 1) & (pos == last)], axis=1).astype(float)
    else:
        F = np.eye(S)
    F[mdp.terminal] = 0.0
    return F


class AdaptiveDesignLP:
    """The LP of ExpAdaRD (and INVARIANCE) for one task: invariance and bounds fixed, objective per π_L.

    :param teacher: π_T and its values
    :param features: φ(s), ``(S, K)``
    :param r_max: bound on |R(s, a)|
    :param teacher_epsilon: ε of the ε-greedy π_T whose occupancy is μ_T
    """

    def __init__(self, teacher: Teacher, features: np.ndarray, r_max: float = 10.0, teacher_epsilon: float = 0.4):
        mdp = teacher.mdp
        S, A = mdp.n_states, mdp.n_actions
        self.teacher, self.S, self.A = teacher, S, A
        K = features.shape[1]
        # R = Φ w with w (K, A): Φ_full[(s,a), (k,a')] = φ_k(s) 1{a = a'}
        self.Phi = np.kron(features, np.eye(A))  # (S·A, K·A)
        not_target = np.ones((S, A), dtype=bool)
        not_target[np.arange(S), teacher.pi] = False
        rows = np.flatnonzero(not_target.reshape(-1))
        inv = -(teacher.advantage_operator[rows] @ self.Phi)
        self.A_ub = sparse.csr_matrix(np.vstack([inv, self.Phi, -self.Phi]))
        self.b_ub = np.concatenate([-teacher.invariance_bounds()[rows], np.full(2 * S * A, r_max)])
        self.n_w = K * A
        greedy = np.full((S, A), teacher_epsilon / A)
        greedy[np.arange(S), teacher.pi] += 1 - teacher_epsilon
        self.mu_T = mdp.occupancy(greedy)
        self.A_T = teacher.Q - teacher.V[:, None]  # A^{π_T}_{R̄}(s, a)
        self.solves = 0

    def informativeness_weights(self, pi_L: np.ndarray) -> np.ndarray:
        """``c`` with ``I(R|π_L) = Σ c[s,a] R(s,a)``, ``(S, A)``."""
        mu_L = self.teacher.mdp.occupancy(pi_L)
        adv = self.A_T - (pi_L * self.A_T).sum(1, keepdims=True)
        w = (self.mu_T * mu_L)[:, None] * pi_L ** 2 * adv
        # Σ_a w[s,a] (R(s,a) − Σ_b π(b|s) R(s,b)): the coefficient of R(s,b) is w[s,b] − π(b|s) Σ_a w[s,a]
        return w - pi_L * w.sum(1, keepdims=True)

    def solve(self, objective: np.ndarray | None) -> np.ndarray:
        """The designed ``R (S, A)``: max ``Σ objective·R`` over the polytope (None: any feasible R).

        :raises RuntimeError: HiGHS found no solution
        """
        c = np.zeros(self.n_w) if objective is None else -(self.Phi.T @ objective.reshape(-1))
        result = linprog(c, A_ub=self.A_ub, b_ub=self.b_ub, bounds=[(None, None)] * self.n_w, method="highs")
        self.solves += 1
        if result.status != 0:
            raise RuntimeError(f"ExpAdaRD's LP failed: {result.message}")
        return (self.Phi @ result.x).reshape(self.S, self.A)


class AdaptiveOnline:
    """ExpAdaRD during training: one designed table per run, redesigned every ``update_every`` episodes
    from that run's current policy. The trainer's base reward is zero (mode ``replace``)."""

    def __init__(self, lp: AdaptiveDesignLP, runs: int, update_every: int):
        self.lp = lp
        self.R = np.zeros((runs, lp.S, lp.A))
        self.update_every = update_every
        self.episodes = 0
        self._run = np.arange(runs)

    def begin(self, policy: np.ndarray) -> None:
        """The first design, from each run's initial policy ``(N, S, A)``."""
        self.redesign(policy)

    def redesign(self, policy: np.ndarray) -> None:
        for n in self._run:
            self.R[n] = self.lp.solve(self.lp.informativeness_weights(policy[n]))

    def step_reward(self, states: np.ndarray, actions: np.ndarray, next_states: np.ndarray,
                    alive: np.ndarray) -> np.ndarray:
        return np.where(alive, self.R[self._run, states, actions], 0.0)

    def end_episode(self, batch: Any, policy: np.ndarray) -> None:
        self.episodes += 1
        if self.episodes % self.update_every == 0:
            self.redesign(policy)


def _settings(name: str, params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise UserError(f"shaper {name!r} takes {', '.join(sorted(DEFAULTS))}, not {', '.join(sorted(unknown))}")
    settings = {**DEFAULTS, **params}
    if not isinstance(settings["update_every"], int) or settings["update_every"] < 1:
        raise UserError(f"shaper {name!r}: update_every must be a whole number >= 1, got {settings['update_every']!r}")
    if float(settings["r_max"]) <= 0:
        raise UserError(f"shaper {name!r}: r_max must be positive, got {settings['r_max']}")
    if not 0.0 <= float(settings["teacher_epsilon"]) <= 1.0:
        raise UserError(f"shaper {name!r}: teacher_epsilon must be in [0, 1], got {settings['teacher_epsilon']}")
    return settings


class AdaptiveRewardDesign(TabularOnlyShaper):
    """ExpAdaRD as a shaper (registered ``expadard``); tabular tasks, learners with a tabular policy.

    :param params: ``update_every`` (N_r), ``r_max``, ``teacher_epsilon`` (see :data:`DEFAULTS`)
    """

    name = "expadard"
    mode = "replace"
    requires = frozenset({"tabular_model"})

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        self.settings = _settings(self.name, params)

    def online(self, mdp: TabularMDP, runs: int, rng: np.random.Generator) -> AdaptiveOnline:
        lp = AdaptiveDesignLP(Teacher.solve(mdp), state_features(self.card.env_id, mdp),
                              float(self.settings["r_max"]), float(self.settings["teacher_epsilon"]))
        return AdaptiveOnline(lp, runs, int(self.settings["update_every"]))


class InvarianceBaseline(TableShaper):
    """INVARIANCE (registered ``invariance``): a feasible reward of ExpAdaRD's polytope, fixed, with no
    informativeness objective."""

    name = "invariance"
    mode = "replace"

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        self.settings = _settings(self.name, params)

    def design(self, mdp: TabularMDP) -> np.ndarray:
        lp = AdaptiveDesignLP(Teacher.solve(mdp), state_features(self.card.env_id, mdp),
                              float(self.settings["r_max"]), float(self.settings["teacher_epsilon"]))
        return lp.solve(None)
