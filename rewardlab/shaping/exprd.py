"""EXPRD: explicable reward design (Devidze, Radanovic, Kamalaruban & Singla, NeurIPS 2021).

A teacher that knows the task's model designs a *sparse* reward: nonzero in at most ``B`` states
besides the goal, that keeps the target policy π_T optimal (invariance), and that is as
*informative* as possible for a learner that plans only a few steps ahead (research note §2):

    I_H(R) = −(1/|H|)(1/|S|) Σ_{h∈H} Σ_s max_{a∉opt(s)} [ δ_s − (Q^{π_T}_{R,h}(s,π_T(s)) − Q^{π_T}_{R,h}(s,a)) ]_+

with ``H = {1, 4, 8, 16, 32}``. For a fixed set Z of rewarded states the problem
``max I_H(R) s.t. invariance, |R| ≤ R_max, R(s,·) = 0 for s ∉ Z`` is a linear program (the hinge
terms become slack variables ξ); it is solved with scipy's HiGHS. The outer problem chooses Z by
greedy forward selection from Z₀ = the goal states: B rounds, each adding the state whose inner
optimum is largest.

Deviations from the paper's code: HiGHS instead of cvxpy/ECOS (same LP); C₂ = 0 and no coverage
regulariser (λ = 0, the paper's main setting); ties between candidate states go to the lowest index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog
from stable_baselines3.common.vec_env import VecEnv

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.program import CompiledReward
from rewardlab.shaping.abstraction import ACTIONS, CardAbstraction, SampledModel, abstraction_program_source, estimate_card_mdp
from rewardlab.shaping.base import ActionMemoryVecEnv, Shaper, TableShaper
from rewardlab.shaping.teachers import Teacher
from rewardlab.sims.tabular import TabularMDP
from rewardlab.state import StateExtractor
from rewardlab.wrappers import step_states

#: EXPRD's horizons H (research note §2).
HORIZONS = (1, 4, 8, 16, 32)
#: EXPRD's reward bound R_max.
R_MAX = 10.0


def informativeness(teacher: Teacher, R: np.ndarray, horizons: tuple[int, ...] = HORIZONS) -> float:
    """``I_H(R)`` (see the module docstring) of a reward table ``R (S, A)``; 0 is the best value."""
    S, A = teacher.mdp.n_states, teacher.mdp.n_actions
    ops = teacher.truncated_advantage_operators(horizons)
    total = 0.0
    for h in horizons:
        gaps = (ops[h] @ R.reshape(-1)).reshape(S, A)
        shortfall = np.where(teacher.opt, -np.inf, teacher.delta[:, None] - gaps).max(1)
        total += np.maximum(shortfall, 0.0).sum()
    return -total / (len(horizons) * S)


@dataclass
class DesignLog:
    """What a design cost and chose: LP solves, seconds, the rewarded states in order, I_H per round."""

    solves: int = 0
    seconds: float = 0.0
    chosen: list[int] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)


class InformativenessLP:
    """EXPRD's inner problem for a teacher, built once and solved for many active sets Z.

    :param teacher: π_T and its values
    :param horizons: H
    :param r_max: bound on |R(s, a)|
    """

    def __init__(self, teacher: Teacher, horizons: tuple[int, ...] = HORIZONS, r_max: float = R_MAX):
        self.teacher = teacher
        self.horizons = horizons
        self.r_max = r_max
        mdp = teacher.mdp
        S, A = mdp.n_states, mdp.n_actions
        self.S, self.A = S, A
        # invariance: rows (s, a) with a ≠ π_T(s) (the row of π_T(s) is identically 0 ≥ 0)
        not_target = np.ones((S, A), dtype=bool)
        not_target[np.arange(S), teacher.pi] = False
        rows = np.flatnonzero(not_target.reshape(-1))
        self.inv_M = teacher.advantage_operator[rows]
        self.inv_b = teacher.invariance_bounds()[rows]
        # informativeness hinges: for each h and (s, a∉opt(s)): ξ_{h,s} ≥ δ_s − gap_h(s, a)
        hinge_rows = np.flatnonzero((~teacher.opt).reshape(-1))
        ops = teacher.truncated_advantage_operators(horizons)
        self.hinge_M = np.concatenate([ops[h][hinge_rows] for h in horizons])
        self.hinge_state = np.concatenate([hinge_rows // A + k * S for k in range(len(horizons))])
        self.hinge_delta = np.tile(teacher.delta[hinge_rows // A], len(horizons))
        self.n_slack = len(horizons) * S

    def solve(self, active: list[int]) -> tuple[float, np.ndarray]:
        """``max I_H(R)`` with R nonzero only in the ``active`` states.

        :return: ``(I_H of the optimum, R (S, A))``
        :raises RuntimeError: HiGHS found no solution (the goal-only reward R̄ is always feasible, so
            this means a broken model)
        """
        cols = np.array([s * self.A + a for s in active for a in range(self.A)])
        nR = len(cols)
        # variables x = [R_Z (nR), ξ (n_slack)]; minimise (1/|H||S|) Σ ξ
        c = np.concatenate([np.zeros(nR), np.full(self.n_slack, 1.0 / self.n_slack)])
        inv = sparse.hstack([sparse.csr_matrix(-self.inv_M[:, cols]),
                             sparse.csr_matrix((len(self.inv_b), self.n_slack))])
        slack = sparse.csr_matrix((-np.ones(len(self.hinge_state)), (np.arange(len(self.hinge_state)), self.hinge_state)),
                                  shape=(len(self.hinge_state), self.n_slack))
        hinge = sparse.hstack([sparse.csr_matrix(-self.hinge_M[:, cols]), slack])
        A_ub = sparse.vstack([inv, hinge]).tocsc()
        b_ub = np.concatenate([-self.inv_b, -self.hinge_delta])
        bounds = [(-self.r_max, self.r_max)] * nR + [(0.0, None)] * self.n_slack
        result = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
        if result.status != 0:
            raise RuntimeError(f"EXPRD's LP for Z={active} failed: {result.message}")
        R = np.zeros(self.S * self.A)
        R[cols] = result.x[:nR]
        return -float(result.fun), R.reshape(self.S, self.A)


def design_exprd(mdp: TabularMDP, budget: int, horizons: tuple[int, ...] = HORIZONS, r_max: float = R_MAX,
                 candidates: list[int] | None = None) -> tuple[np.ndarray, DesignLog]:
    """EXPRD's outer problem: greedy forward selection of ``budget`` rewarded states from Z₀ = goal.

    :param mdp: the task
    :param budget: B, states rewarded besides the goal states
    :param candidates: states that may be chosen (default: every non-absorbing state)
    :return: ``(R (S, A), log)``; ``log.chosen`` lists Z in the order chosen (the goal states first)
    """
    teacher = Teacher.solve(mdp)
    lp = InformativenessLP(teacher, horizons, r_max)
    log = DesignLog()
    start = time.perf_counter()
    goals = [int(s) for s in np.flatnonzero(np.abs(mdp.R).sum(1) > 0)]
    active = list(goals)
    value, R = lp.solve(active)
    log.solves += 1
    log.objective.append(value)
    pool = [s for s in (candidates if candidates is not None else range(mdp.n_states))
            if not mdp.terminal[s] and s not in active]
    if budget >= len(pool):  # every state may be rewarded: no selection to make, one LP
        active += pool
        value, R = lp.solve(active)
        log.solves += 1
        log.objective.append(value)
        pool = []
    for _ in range(min(budget, len(pool))):
        best: tuple[float, int, np.ndarray] | None = None
        for s in pool:
            v, R_s = lp.solve(active + [s])
            log.solves += 1
            if best is None or v > best[0] + 1e-9:
                best = (v, s, R_s)
        assert best is not None
        value, chosen, R = best
        active.append(chosen)
        pool.remove(chosen)
        log.objective.append(value)
    log.chosen = active
    log.seconds = time.perf_counter() - start
    return R, log


def reward_table_markdown(mdp: TabularMDP, R: np.ndarray, states: list[int]) -> str:
    """The designed reward as a Markdown table: one row per rewarded state, one column per action."""
    head = "| state | " + " | ".join(mdp.action_names or map(str, range(mdp.n_actions))) + " |"
    rule = "|---" * (mdp.n_actions + 1) + "|"
    rows = [f"| {mdp.name_of(s)} | " + " | ".join(f"{R[s, a]:+.2f}" for a in range(mdp.n_actions)) + " |"
            for s in states]
    return "\n".join([head, rule, *rows])


def reward_program_source(card: EnvCard, mdp: TabularMDP, R: np.ndarray, states: list[int], title: str) -> str:
    """The designed reward as a reward program (checked in the sandbox like any other): zero except in
    the rewarded states, where each action has its designed value.

    :raises UserError: the card has no field read from the whole (Discrete) observation
    """
    field_name = next((name for name, spec in card.fields().items() if spec.source.strip() == "obs"), None)
    if field_name is None:
        raise UserError(f"{card.id}: a designed table needs a card field whose source is the whole observation")
    actions = ", ".join(mdp.action_names or map(str, range(mdp.n_actions)))
    lines = [
        "import numpy as np",
        "",
        "",
        "def compute_dense_reward(self, action):",
        f'    """{title}',
        "",
        f"    Zero except in {len(states)} rewarded states; per state, one value per action ({actions}).",
        '    """',
        f"    state = self.{field_name}",
        "    reward = np.zeros_like(state, dtype=np.float64)",
    ]
    # consecutive states with the same per-action values share one condition (a lifted abstract state)
    groups: list[list[int]] = []
    for s in sorted(states):
        if groups and s == groups[-1][-1] + 1 and np.array_equal(R[s], R[groups[-1][0]]):
            groups[-1].append(s)
        else:
            groups.append([s])
    for group in groups:
        s = group[0]
        # a chain of where on the action: actions may arrive as floats (the sandbox trial samples them so)
        value = f"{R[s, mdp.n_actions - 1]:.12g}"
        for a in range(mdp.n_actions - 2, -1, -1):
            value = f"np.where(action == {a}, {R[s, a]:.12g}, {value})"
        label = mdp.name_of(s) if len(group) == 1 else f"{mdp.name_of(group[0])} .. {mdp.name_of(group[-1])}"
        lines.append(f"    # {label}: " + ", ".join(
            f"{name} {R[s, a]:+.3g}" for a, name in enumerate(mdp.action_names or map(str, range(mdp.n_actions)))))
        where = f"state == {s}" if len(group) == 1 else f"(state >= {group[0]}) & (state <= {group[-1]})"
        lines.append(f"    reward = np.where({where}, {value}, reward)")
    lines.append('    return reward, {"designed": reward}')
    return "\n".join(lines) + "\n"


def plot_reward_grid(mdp: TabularMDP, R: np.ndarray, states: list[int], path: Path, title: str) -> Path:
    """Draw a designed reward on the grid: each cell split into one triangle per action (up, left,
    down, right) coloured by its value, rewarded cells outlined. Needs ``mdp.coords``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon, Rectangle

    assert mdp.coords is not None
    grid = ~np.isnan(mdp.coords[:, 0])
    xs, ys = mdp.coords[grid, 0], mdp.coords[grid, 1]
    lim = float(np.abs(R).max()) or 1.0
    cmap = plt.get_cmap("RdYlGn")
    fig, ax = plt.subplots(figsize=(0.9 * (xs.max() + 2), 0.9 * (ys.max() + 2)))
    # triangles towards each action's direction (ROOM's order: up, left, down, right)
    corners = {0: [(-.5, .5), (.5, .5)], 1: [(-.5, -.5), (-.5, .5)], 2: [(-.5, -.5), (.5, -.5)], 3: [(.5, -.5), (.5, .5)]}
    for s in np.flatnonzero(grid):
        x, y = mdp.coords[s]
        for a in range(min(mdp.n_actions, 4)):
            pts = [(x, y)] + [(x + dx, y + dy) for dx, dy in corners[a]]
            ax.add_patch(Polygon(pts, facecolor=cmap(0.5 + 0.5 * R[s, a] / lim), edgecolor="0.8", lw=0.5))
            if s in states and mdp.n_actions == 4:
                dx, dy = {0: (0, .3), 1: (-.3, 0), 2: (0, -.3), 3: (.3, 0)}[a]
                ax.text(x + dx, y + dy, f"{R[s, a]:.1f}", ha="center", va="center", fontsize=6)
        if s in states:
            ax.add_patch(Rectangle((x - .5, y - .5), 1, 1, fill=False, edgecolor="black", lw=2))
    # walls: a move right/up to a neighbouring cell that mostly fails (read off the model)
    where = {(float(cx), float(cy)): int(i) for i, (cx, cy) in enumerate(mdp.coords) if grid[i]}
    for (x, y), cell in where.items():
        for a, (dx, dy) in ((3, (1.0, 0.0)), (0, (0.0, 1.0))):
            t = where.get((x + dx, y + dy))
            if t is not None and mdp.T[cell, a, t] < 0.5:
                seg = ([x + .5, x + .5], [y - .5, y + .5]) if dx else ([x - .5, x + .5], [y + .5, y + .5])
                ax.plot(*seg, color="black", lw=3)
    ax.set_xlim(xs.min() - .5, xs.max() + .5)
    ax.set_ylim(ys.min() - .5, ys.max() + .5)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


class ExplicableRewardDesign(TableShaper):
    """EXPRD as a shaper (registered ``exprd``): the designed sparse reward replaces the env's.

    :param params: ``budget`` (B, states rewarded besides the goal, or ``all``; required), ``horizons`` (H, default
        1, 4, 8, 16, 32), ``r_max`` (default 10)
    """

    name = "exprd"
    mode = "replace"

    @classmethod
    def for_params(cls, params: dict[str, Any]) -> type[Shaper]:
        abstraction = params.get("abstraction")
        if abstraction is not None and not isinstance(abstraction, bool):  # over card fields (issue 8, part 7)
            return CardExplicableRewardDesign
        return AbstractExplicableRewardDesign if abstraction is True else cls

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        unknown = set(params) - {"budget", "horizons", "r_max", "abstraction"}
        if unknown:
            raise UserError(f"shaper 'exprd' takes budget, horizons, r_max and abstraction, not "
                            f"{', '.join(sorted(unknown))}")
        if not isinstance(params.get("abstraction", False), bool | dict):
            raise UserError(f"shaper 'exprd': abstraction must be true (the task's own), false or a mapping over "
                            f"card fields (target, source, edges), got {params['abstraction']!r}")
        if "budget" not in params:
            raise UserError("shaper 'exprd' needs a budget B (states rewarded besides the goal): "
                            "{name: exprd, budget: 5} or --budget 5")
        budget = params["budget"]
        if budget == "all":  # EXPRD (B = |S|): every state may be rewarded
            budget = 10**9
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            raise UserError(f"shaper 'exprd': budget must be a whole number >= 0 or 'all', got {budget!r}")
        self.budget = budget
        horizons = params.get("horizons", HORIZONS)
        if not horizons or not all(isinstance(h, int) and h >= 1 for h in horizons):
            raise UserError(f"shaper 'exprd': horizons must be whole numbers >= 1, got {horizons!r}")
        self.horizons = tuple(sorted(set(horizons)))
        self.r_max = float(params.get("r_max", R_MAX))
        if self.r_max <= 0:
            raise UserError(f"shaper 'exprd': r_max must be positive, got {self.r_max}")
        self.log: DesignLog | None = None
        self._mdp: TabularMDP | None = None
        self._abstract: tuple[np.ndarray, TabularMDP, np.ndarray] | None = None  # φ, abstract MDP, its design

    def design(self, mdp: TabularMDP) -> np.ndarray:
        R, self.log = design_exprd(mdp, self.budget, self.horizons, self.r_max)
        self._mdp = mdp
        return R

    def write_artifacts(self, run_dir: Path) -> list[Path]:
        if self._table is None or self.log is None or self._mdp is None:
            return []
        mdp, R, log = self._mdp, self._table, self.log
        table_mdp, table_R, table_states = mdp, R, log.chosen
        ground_states = log.chosen
        if self._abstract is not None:  # the table in abstract states; the program on ground states
            phi, table_mdp, table_R = self._abstract
            ground_states = [int(s) for s in np.flatnonzero(np.isin(phi, log.chosen))]
        shown = "|S|" if self.budget >= table_mdp.n_states else str(self.budget)
        title = f"EXPRD (Devidze et al., NeurIPS'21) on {self.card.id}, B={shown}"
        teacher = Teacher.solve(table_mdp)
        ground = Teacher.solve(mdp)
        program = run_dir / "designed_reward.py"
        program.write_text(reward_program_source(self.card, mdp, R, ground_states, title))
        summary = run_dir / "designed_reward.md"
        summary.write_text("\n".join([
            f"# {title}", "",
            f"Rewarded states, in the order chosen: {', '.join(table_mdp.name_of(s) for s in table_states)}", "",
            reward_table_markdown(table_mdp, table_R, table_states), "",
            f"I_H{' (abstract MDP)' if self._abstract is not None else ''}: designed "
            f"{informativeness(teacher, table_R, self.horizons):.4f}, "
            f"original {informativeness(teacher, table_mdp.R, self.horizons):.4f}; "
            f"invariance holds: {teacher.satisfies_invariance(table_R)}"
            + (f" (abstract), {ground.satisfies_invariance(R)} (ground, lifted)" if self._abstract is not None else ""),
            "",
            f"{log.solves} LP solves (scipy HiGHS) in {log.seconds:.2f} s", "",
        ]))
        paths = [program, summary]
        if mdp.coords is not None and mdp.n_actions == 4:
            paths.append(plot_reward_grid(mdp, R, log.chosen, run_dir / "designed_reward.png", title))
        return paths


class AbstractExplicableRewardDesign(ExplicableRewardDesign):
    """EXPRD on a task's abstraction (``{name: exprd, budget: 3, abstraction: true}``): the reward is
    designed on the abstract MDP estimated by sampling and lifted, ``R(s, a) = R_abs(φ(s), a)`` (EXPRD's
    LINEK recipe). Invariance holds in the abstract MDP; the artifacts say whether it holds on the ground."""

    requires = frozenset({"abstraction"})

    def design(self, mdp: TabularMDP) -> np.ndarray:
        from rewardlab.sims.base import get_simulator

        adapter = get_simulator(self.card.simulator)
        phi, abstract = adapter.abstraction(self.card)  # type: ignore[attr-defined]
        R_abs, self.log = design_exprd(abstract, self.budget, self.horizons, self.r_max)
        self._mdp = mdp
        self._abstract = (phi, abstract, R_abs)
        return R_abs[phi]


class CardExplicableRewardDesign(ExplicableRewardDesign):
    """EXPRD on a continuous task through an abstraction over its card fields
    (``{name: exprd, budget: 3, abstraction: {target: goal_position, source: robot.ee_position, edges: [...]}}``;
    :mod:`rewardlab.shaping.abstraction`): the abstract MDP is estimated by sampling the simulator with the
    scripted expert, the teacher is value iteration on it, EXPRD designs ``R (Z, 3)`` over abstract states and
    action classes, and the result is a reward program (``designed_reward.py``) that passes the sandbox
    trial and replaces the env's reward in training (SAC, PPO, TD3 as any program).

    The design is deterministic given the abstraction's ``seed``: every trial designs the same program.
    """

    requires = frozenset({"expert_policy"})

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        self.abstraction = CardAbstraction.parse(params["abstraction"], card)
        self.sampled: SampledModel | None = None
        self.designed: np.ndarray | None = None
        self.source: str | None = None

    def fields_used(self) -> set[str]:
        return self.abstraction.fields

    def tabular_reward(self, mdp: TabularMDP) -> np.ndarray:
        raise UserError(f"shaper 'exprd' with an abstraction over card fields designs a reward program for an SB3 "
                        f"learner; {self.card.id} has no tabular learner")

    def design_program(self) -> str:
        """Estimate the abstract MDP, design EXPRD's reward on it, and return it as a reward program's source
        (once per shaper).

        :raises UserError: the designed program fails the sandbox trial (a bug here, reported as one line)
        """
        if self.source is not None:
            return self.source
        from rewardlab.checks import check_program
        from rewardlab.program import RewardProgram

        self.sampled = estimate_card_mdp(self.card, self.abstraction, self.gamma)
        self.designed, self.log = design_exprd(self.sampled.mdp, self.budget, self.horizons, self.r_max)
        shown = "|S|" if self.budget >= self.sampled.mdp.n_states else str(self.budget)
        title = f"EXPRD (Devidze et al., NeurIPS'21) on {self.card.id} over an abstraction of its card fields, B={shown}"
        source = abstraction_program_source(self.abstraction, self.designed, self.log.chosen, title)
        check_program(RewardProgram(source, origin="shaper:exprd"), self.card, seed=self.abstraction.seed
                      ).raise_if_failed()
        self.source = source
        return source

    def wrap(self, venv: VecEnv, extractor: StateExtractor) -> VecEnv:
        from rewardlab.program import RewardProgram

        program = RewardProgram(self.design_program(), origin="shaper:exprd")
        return ProgramRewardVecEnv(venv, extractor, program.bind(self.card))

    def write_artifacts(self, run_dir: Path) -> list[Path]:
        if self.source is None or self.sampled is None or self.designed is None or self.log is None:
            return []
        mdp, sampled, R, log = self.sampled.mdp, self.sampled, self.designed, self.log
        teacher = Teacher.solve(mdp)
        program = run_dir / "designed_reward.py"
        program.write_text(self.source)
        head = "| cell | samples | success rate | π_T | scripted expert | " + " | ".join(ACTIONS) + " |"
        rows = [head, "|---" * (5 + len(ACTIONS)) + "|"]
        for z in range(mdp.n_states):
            expert = ACTIONS[sampled.expert_class[z]] if sampled.expert_class[z] >= 0 else "-"
            rate = "-" if np.isnan(sampled.success_rate[z]) else f"{sampled.success_rate[z]:.2f}"
            rows.append(f"| {mdp.name_of(z)} | {int(sampled.counts[z].sum())} | {rate} | {ACTIONS[teacher.pi[z]]} | "
                        f"{expert} | " + " | ".join(f"{R[z, a]:+.2f}" for a in range(len(ACTIONS))) + " |")
        agree = [z for z in range(mdp.n_states) if sampled.expert_class[z] >= 0]
        same = sum(int(teacher.pi[z] == sampled.expert_class[z]) for z in agree)
        summary = run_dir / "designed_reward.md"
        summary.write_text("\n".join([
            f"# EXPRD on {self.card.id} over an abstraction of its card fields, B={self.budget}", "",
            f"Abstraction: {self.abstraction.model_dump_json()}", "",
            f"Abstract MDP estimated from {int(sampled.counts.sum())} sampled transitions "
            f"({self.abstraction.episodes} episodes x {self.abstraction.steps} steps, seed {self.abstraction.seed}) "
            f"in {sampled.seconds:.1f} s. " + " ".join(sampled.notes), "",
            f"Rewarded cells, in the order chosen: {', '.join(mdp.name_of(z) for z in log.chosen)}", "",
            *rows, "",
            f"π_T (value iteration on the estimated MDP) agrees with the scripted expert's most frequent class in "
            f"{same} of {len(agree)} cells the expert visited.", "",
            f"I_H (abstract MDP): designed {informativeness(teacher, R, self.horizons):.4f}, original "
            f"{informativeness(teacher, mdp.R, self.horizons):.4f}; invariance holds: {teacher.satisfies_invariance(R)}",
            "",
            f"{log.solves} LP solves (scipy HiGHS) in {log.seconds:.2f} s", "",
        ]))
        return [program, summary]


class ProgramRewardVecEnv(ActionMemoryVecEnv):
    """Replaces a VecEnv's reward with a reward program's, evaluated on the state each step reached (the
    terminal one before an auto-reset) and the action taken; ``info["unshaped_reward"]`` keeps the reward
    before, and each episode's ``episode_stats`` gains the component ``designed`` (its sum).

    :param venv: the training env (sub-envs in ``StateCapture`` when the program reads simulator fields)
    :param extractor: extracts the fields the program reads
    :param reward: the bound program
    """

    def __init__(self, venv: VecEnv, extractor: StateExtractor, reward: CompiledReward):
        super().__init__(venv)
        self.extractor = extractor
        self.reward = reward
        self._sum = np.zeros(self.num_envs)

    def reset(self) -> Any:
        self._sum[:] = 0.0
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, reward, dones, infos = self.venv.step_wait()
        flat, state_obs = step_states(self.extractor, obs, dones, infos)
        designed = np.asarray(self.reward(self.extractor.view(flat, state_obs), self.actions)[0], dtype=np.float64)
        self._sum += designed
        for i, info in enumerate(infos):
            info["unshaped_reward"] = float(reward[i])
        for i in map(int, np.flatnonzero(dones)):
            stats = infos[i].get("episode_stats")
            if stats is not None:
                stats["components"] = {**stats.get("components", {}), "designed": float(self._sum[i])}
            self._sum[i] = 0.0
        return obs, designed.astype(np.float32), dones, infos


class HandcraftedLandmarks(TableShaper):
    """CRAFT, EXPRD's hand-crafted baseline (registered ``craft``): at each landmark state +1 for the
    target actions (opt(s)) and −1 for the others, and ``goal`` for every action at the goal states
    (the official ``get_reward_landmark``: R(goal, ·) = 10).

    :param params: ``landmarks`` (state indices; default on ROOM: the four cells before the gaps,
        (2,1), (1,2), (5,2), (2,5)), ``value`` (default 1), ``goal`` (default 10)
    """

    name = "craft"
    mode = "replace"
    ROOM_GATES = (9, 15, 19, 37)

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        unknown = set(params) - {"landmarks", "value", "goal"}
        if unknown:
            raise UserError(f"shaper 'craft' takes landmarks, value and goal, not {', '.join(sorted(unknown))}")
        landmarks = params.get("landmarks", self.ROOM_GATES if card.env_id == "room" else None)
        if not landmarks or not all(isinstance(s, int) and s >= 0 for s in landmarks):
            raise UserError(f"shaper 'craft' needs landmarks: a list of state indices (there is no default for "
                            f"{card.id}), got {landmarks!r}")
        self.landmarks = [int(s) for s in landmarks]
        self.value = float(params.get("value", 1.0))
        self.goal = float(params.get("goal", 10.0))

    def design(self, mdp: TabularMDP) -> np.ndarray:
        if max(self.landmarks) >= mdp.n_states:
            raise UserError(f"shaper 'craft': landmark {max(self.landmarks)} is not a state of {self.card.id} "
                            f"({mdp.n_states} states)")
        teacher = Teacher.solve(mdp)
        R = np.zeros_like(mdp.R)
        for s in self.landmarks:
            R[s] = np.where(teacher.opt[s], self.value, -self.value)
        goals = np.flatnonzero(np.abs(mdp.R).max(1) >= np.abs(mdp.R).max())
        R[goals] = self.goal
        return R
