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
HiGHS returns a vertex of the polytope, ``point: centre`` takes its analytic centre instead — the paper's
code asks cvxpy/ECOS for ``Minimize(1)`` and so gets an interior point, see
experiments/results/thesis-expadard-paper/README.md).

Deviations: HiGHS instead of cvxpy; each run's design uses its own learner's π_L (runs are
vectorised). The learner pool: ``init_pool: aamas24`` starts the runs from the paper's own five LINEK policies
(:func:`rewardlab.training.tabular.paper_linek_pool`); ``init_pool: 5`` from a seeded stand-in for any task
(:func:`rewardlab.training.tabular.initial_policy_pool`, much further from uniform).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog
from stable_baselines3.common.vec_env import VecEnv

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.shaping.abstraction import ACTIONS, CardAbstraction, SampledModel, abstraction_program_source, estimate_card_mdp
from rewardlab.shaping.base import ActionMemoryVecEnv, Shaper, TableShaper, TabularOnlyShaper
from rewardlab.shaping.teachers import Teacher
from rewardlab.sims.tabular import TabularMDP
from rewardlab.state import StateExtractor
from rewardlab.wrappers import step_states

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

    def centre(self) -> np.ndarray:
        """The analytic centre of the polytope as ``R (S, A)``: ``argmax_w Σ_i log(b_i − (A w)_i)`` over its
        constraint rows (invariance rows for a ∉ π_T(s) and the ±R_max bounds, one row per (s, a), as in the
        paper's code). This is the point a primal-dual interior-point solver heads for when the objective is
        constant — the AAMAS'24 code finds INVARIANCE with cvxpy/ECOS and ``Minimize(1)`` — where HiGHS'
        simplex returns a vertex (:meth:`solve` with ``None``).

        A strictly feasible start is the Chebyshev centre (one HiGHS LP), then damped Newton steps on the
        log-barrier (Boyd & Vandenberghe, *Convex Optimization*, §8.5.3 and §9.5).

        :raises RuntimeError: the polytope has no interior (an implicit equality), so no analytic centre
        """
        A = self.A_ub.toarray()
        live = np.abs(A).sum(1) > 0  # rows such as 0 <= R_max on absorbing states do not move the centre
        A, b = A[live], self.b_ub[live]
        norms = np.linalg.norm(A, axis=1)
        # Chebyshev centre: max t s.t. A w + ‖a_i‖ t <= b, 0 <= t <= 1
        cheb = linprog(np.r_[np.zeros(self.n_w), -1.0], A_ub=np.c_[A, norms], b_ub=b,
                       bounds=[(None, None)] * self.n_w + [(0.0, 1.0)], method="highs")
        self.solves += 1
        if cheb.status != 0 or cheb.x[-1] <= 1e-9:
            raise RuntimeError("the invariance polytope has no interior: no analytic centre")
        w = cheb.x[:-1]
        for _ in range(200):
            slack = b - A @ w
            grad = A.T @ (1.0 / slack)
            hess = (A / slack[:, None] ** 2).T @ A
            step = -np.linalg.solve(hess, grad)
            decrement = float(-grad @ step)
            if decrement / 2 < 1e-12:
                break
            t, f0 = 1.0, -np.log(slack).sum()
            while True:  # backtracking: stay strictly inside and decrease the barrier
                s_new = b - A @ (w + t * step)
                if (s_new > 0).all() and -np.log(s_new).sum() <= f0 - 0.25 * t * decrement:
                    break
                t *= 0.5
            w = w + t * step
        return (self.Phi @ w).reshape(self.S, self.A)


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

    @classmethod
    def for_params(cls, params: dict[str, Any]) -> type[Shaper]:
        return CardAdaptiveRewardDesign if "abstraction" in params else cls

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        self.settings = _settings(self.name, params)

    def online(self, mdp: TabularMDP, runs: int, rng: np.random.Generator) -> AdaptiveOnline:
        lp = AdaptiveDesignLP(Teacher.solve(mdp), state_features(self.card.env_id, mdp),
                              float(self.settings["r_max"]), float(self.settings["teacher_epsilon"]))
        return AdaptiveOnline(lp, runs, int(self.settings["update_every"]))


#: Which feasible point INVARIANCE takes (``point``): the paper only asks for "any" feasible R.
INVARIANCE_POINTS = ("vertex", "centre")


class InvarianceBaseline(TableShaper):
    """INVARIANCE (registered ``invariance``): a feasible reward of ExpAdaRD's polytope, fixed, with no
    informativeness objective.

    :param params: ``point``: ``vertex`` (default; the vertex HiGHS returns for a zero objective — R_max-sized
        rewards) or ``centre`` (the polytope's analytic centre, :meth:`AdaptiveDesignLP.centre`, nearer to
        what the paper's interior-point solver returns; a labelled variant), and ``r_max``, ``teacher_epsilon``
        as for ExpAdaRD
    """

    name = "invariance"
    mode = "replace"

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        self.point = params.get("point", "vertex")
        if self.point not in INVARIANCE_POINTS:
            raise UserError(f"shaper 'invariance': point must be one of {', '.join(INVARIANCE_POINTS)}, "
                            f"got {self.point!r}")
        self.settings = _settings(self.name, {k: v for k, v in params.items() if k != "point"})

    def design(self, mdp: TabularMDP) -> np.ndarray:
        lp = AdaptiveDesignLP(Teacher.solve(mdp), state_features(self.card.env_id, mdp),
                              float(self.settings["r_max"]), float(self.settings["teacher_epsilon"]))
        return lp.centre() if self.point == "centre" else lp.solve(None)


class CardAdaptiveRewardDesign(Shaper):
    """ExpAdaRD on a continuous task through an abstraction over its card fields
    (``{name: expadard, abstraction: {...}}``, :mod:`rewardlab.shaping.abstraction`), for an SB3 learner.

    The abstract MDP and the teacher are EXPRD's (estimated by sampling with the scripted expert). The
    learner's π_L on it is the class frequencies of the actions the learner took in each cell over the
    last ``update_every`` episodes (a cell it did not visit: uniform), its occupancy μ_L the abstract model's
    under that π_L; every ``update_every`` finished episodes the reward table ``R (Z, 3)`` is redesigned by
    ExpAdaRD's LP (one indicator feature per cell: no structural constraint). The first design uses a
    uniform π_L. Deviations: π_L comes from the behaviour actions (SAC's stochastic policy), not the
    learner's greedy policy, and the reward is looked up on the state after the step, as for EXPRD.

    :param params: ``abstraction`` (see :class:`~rewardlab.shaping.abstraction.CardAbstraction`), and
        ``update_every``, ``r_max``, ``teacher_epsilon`` (see :data:`DEFAULTS`)
    """

    name = "expadard"
    mode = "replace"
    requires = frozenset({"expert_policy"})

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        self.settings = _settings(self.name, {k: v for k, v in params.items() if k != "abstraction"})
        self.abstraction = CardAbstraction.parse(params["abstraction"], card, shaper=self.name)
        self.sampled: SampledModel | None = None
        self.env: AdaptiveAbstractRewardVecEnv | None = None

    def fields_used(self) -> set[str]:
        return self.abstraction.fields

    def wrap(self, venv: VecEnv, extractor: StateExtractor) -> VecEnv:
        self.sampled = estimate_card_mdp(self.card, self.abstraction, self.gamma)
        Z = self.sampled.mdp.n_states
        lp = AdaptiveDesignLP(Teacher.solve(self.sampled.mdp), np.eye(Z), float(self.settings["r_max"]),
                              float(self.settings["teacher_epsilon"]))
        self.env = AdaptiveAbstractRewardVecEnv(venv, extractor, self.abstraction, lp, int(self.settings["update_every"]))
        return self.env

    def write_artifacts(self, run_dir: Path) -> list[Path]:
        """The designs so far: ``designed_reward.md`` (each redesign's table) and ``designed_reward.py`` (the
        last design as a program: what the learner is rewarded with from the last redesign on, not all along)."""
        if self.env is None or self.sampled is None:
            return []
        mdp, history = self.sampled.mdp, self.env.history
        R = history[-1][1]
        title = (f"ExpAdaRD (Devidze et al., AAMAS'24) on {self.card.id} over an abstraction of its card fields: the "
                 f"last of {len(history)} designs (the learner's reward changes while it trains)")
        program = run_dir / "designed_reward.py"
        program.write_text(abstraction_program_source(self.abstraction, R, list(range(mdp.n_states)), title))
        lines = [f"# {title}", "", f"Abstraction: {self.abstraction.model_dump_json()}", ""]
        for episodes, table in history[-5:]:
            lines += [f"Design after {episodes} episodes:", "",
                      "| cell | " + " | ".join(ACTIONS) + " |", "|---" * (len(ACTIONS) + 1) + "|",
                      *(f"| {mdp.name_of(z)} | " + " | ".join(f"{table[z, a]:+.2f}" for a in range(len(ACTIONS))) + " |"
                        for z in range(mdp.n_states)), ""]
        summary = run_dir / "designed_reward.md"
        summary.write_text("\n".join(lines))
        return [program, summary]


class AdaptiveAbstractRewardVecEnv(ActionMemoryVecEnv):
    """The learner's reward is ``R[φ(s'), class(a)]`` of the current design; counts the learner's action classes
    per cell and redesigns every ``update_every`` finished episodes (:class:`CardAdaptiveRewardDesign`).

    :param venv: the training env
    :param extractor: extracts the abstraction's fields
    :param abstraction: φ and the action classes
    :param lp: ExpAdaRD's LP on the abstract MDP
    :param update_every: N_r, episodes between designs
    """

    def __init__(self, venv: VecEnv, extractor: StateExtractor, abstraction: CardAbstraction, lp: AdaptiveDesignLP,
                 update_every: int):
        super().__init__(venv)
        self.extractor, self.abstraction, self.lp, self.update_every = extractor, abstraction, lp, update_every
        self.counts = np.zeros((lp.S, lp.A))
        self.episodes = 0
        self.R = lp.solve(lp.informativeness_weights(np.full((lp.S, lp.A), 1.0 / lp.A)))
        self.history: list[tuple[int, np.ndarray]] = [(0, self.R)]

    def learner_policy(self) -> np.ndarray:
        """π_L ``(Z, 3)`` from the counted classes; uniform in cells with no count."""
        n = self.counts.sum(1, keepdims=True)
        return np.where(n > 0, self.counts / np.maximum(n, 1), 1.0 / self.lp.A)

    def step_wait(self) -> Any:
        obs, reward, dones, infos = self.venv.step_wait()
        flat, state_obs = step_states(self.extractor, obs, dones, infos)
        view = self.extractor.view(flat, state_obs)
        cells, kinds = self.abstraction.cells(view), self.abstraction.action_classes(view, self.actions)
        np.add.at(self.counts, (cells, kinds), 1.0)
        designed = self.R[cells, kinds]
        for i, info in enumerate(infos):
            info["unshaped_reward"] = float(reward[i])
        finished = int(np.count_nonzero(dones))
        if finished:
            before = self.episodes
            self.episodes += finished
            if self.episodes // self.update_every > before // self.update_every:
                self.R = self.lp.solve(self.lp.informativeness_weights(self.learner_policy()))
                self.history.append((self.episodes, self.R))
                self.counts[:] = 0.0
        return obs, designed.astype(np.float32), dones, infos
