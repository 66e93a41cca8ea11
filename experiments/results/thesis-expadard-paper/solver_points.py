"""Which point of the LP each method's solver returns on LINEK, and how fast tabular REINFORCE learns from it.

The AAMAS'24 code solves INVARIANCE (``Minimize(1)``), EXPRD (B = |S|, under the same 5-leaf features) and
ExpAdaRD with cvxpy/ECOS, an interior-point solver; rewardlab solves them with HiGHS (a vertex). This script
sets up those problems as the paper's code states them (constraints per (s, a), margins δ_s without the 1e-5
slack, EXPRD's truncated sums k = 0..h−1) on rewardlab's LINEK model, solves them with ECOS, and compares the
designs' size and the learning they give: 10 runs of REINFORCE (η 0.01, the paper's schedule), exact
horizon-discounted value of the learner's policy every 100 episodes.

Not a rewardlab dependency: ``.venv/bin/pip install cvxpy ecos`` first. Run from the repository root:

    .venv/bin/python experiments/results/thesis-expadard-paper/solver_points.py [episodes] [runs] [only]

``only``: train only on the designs whose label contains it (e.g. ``ECOS``, or ``scaled`` for the control
below).

The control: each ECOS design and the analytic centre is also multiplied by c = 10 / max|R| ≥ 1 (same shape,
ExpAdaRD's size); the script checks that the scaled point still satisfies the invariance constraints and
the box before training on it.
"""

from __future__ import annotations

import sys
import time

import cvxpy as cp
import numpy as np

from rewardlab.shaping.expadard import AdaptiveDesignLP, AdaptiveOnline, state_features
from rewardlab.shaping.exprd import design_exprd
from rewardlab.shaping.teachers import MARGIN_SLACK, Teacher
from rewardlab.sims.gridworld import linek
from rewardlab.training.tabular import TabularTrainer, reinforce

HORIZONS = (1, 4, 8, 16, 32)


def ecos(problem: cp.Problem, tol: float) -> None:
    problem.solve(solver=cp.ECOS, max_iters=10000, feastol=tol, abstol=tol, reltol=tol)


def main(episodes: int, runs: int, only: str = "") -> None:
    mdp = linek()
    teacher = Teacher.solve(mdp)
    lp = AdaptiveDesignLP(teacher, state_features("linek", mdp))
    S, A = mdp.n_states, mdp.n_actions
    Phi, Aop = lp.Phi, teacher.advantage_operator
    b = teacher.invariance_bounds() * MARGIN_SLACK  # the AAMAS'24 code keeps δ_s as it is

    def polytope(tree: bool) -> tuple[cp.Variable, cp.Expression, list[cp.Constraint]]:
        w = cp.Variable(Phi.shape[1] if tree else S * A)
        R = Phi @ w if tree else w
        return w, R, [Aop @ R >= b, R >= -10, R <= 10]

    designs: dict[str, np.ndarray] = {"INVARIANCE, HiGHS vertex (rewardlab default)": lp.solve(None),
                                      "INVARIANCE, analytic centre (point: centre)": lp.centre()}
    _, R, cons = polytope(tree=True)
    ecos(cp.Problem(cp.Minimize(1), cons), 1e-6)  # the paper's INVARIANCE
    designs["INVARIANCE, ECOS Minimize(1) (paper's code)"] = paper = np.asarray(R.value).reshape(S, A)
    print("ECOS's INVARIANCE point is none of the well-defined points of the polytope: max |R − R_ECOS| for")
    print(f"  the analytic centre {np.abs(designs['INVARIANCE, analytic centre (point: centre)'] - paper).max():.2f}")
    for label, norm in (("min ‖R‖₂", lambda R, w: cp.sum_squares(R)), ("min ‖w‖₂", lambda R, w: cp.sum_squares(w)),
                        ("min ‖R‖₁", lambda R, w: cp.norm1(R)), ("min ‖R‖∞", lambda R, w: cp.norm_inf(R))):
        w, R, cons = polytope(tree=True)
        cp.Problem(cp.Minimize(norm(R, w)), cons).solve(solver=cp.CLARABEL)
        print(f"  {label} {np.abs(np.asarray(R.value).reshape(S, A) - paper).max():.2f}")
    designs["EXPRD B=|S|, HiGHS greedy, per (s,a) (rewardlab)"] = design_exprd(mdp, 10**9)[0]
    SA = S * A
    P, D = mdp.P_pi(teacher.pi), mdp.I_pi(teacher.pi) - np.eye(SA)
    truncated = []
    for h in HORIZONS:  # Σ_{k=0}^{h-1} γ^k P^k, as the AAMAS'24 code's get_A_local_h
        acc, power = np.eye(SA), np.eye(SA)
        for k in range(1, h):
            power = power @ P
            acc = acc + mdp.gamma ** k * power
        truncated.append(D @ acc)
    delta = b.reshape(S, A).max(1)
    for tree in (True, False):
        _, R, cons = polytope(tree)
        terms = []
        for op in truncated:
            x = op @ R
            for s in range(S):
                rows = [s * A + a for a in range(A) if not teacher.opt[s, a]]
                if rows:
                    terms.append(cp.max(cp.hstack([delta[s] - x[r] for r in rows])))
        ecos(cp.Problem(cp.Maximize(-cp.sum(cp.pos(cp.hstack(terms))) / (len(HORIZONS) * S)), cons), 1e-10)
        label = "tree features (paper's code)" if tree else "per (s,a)"
        designs[f"EXPRD B=|S|, ECOS, {label}"] = np.asarray(R.value).reshape(S, A)

    # The direct control for "scale, not shape": the same designs multiplied by c = 10 / max|R| ≥ 1. c·R stays in
    # the polytope (Aop(cR) = c·Aop R ≥ c·b ≥ b as b ≥ 0; |cR| ≤ 10), checked below, not assumed.
    assert b.min() >= 0, "a negative margin: scaling by c ≥ 1 need not keep the constraints"
    for name in [n for n in designs if "ECOS" in n or "centre" in n]:
        R = designs[name]
        c = 10.0 / np.abs(R).max()
        scaled = c * R
        slack = float((Aop @ scaled.reshape(-1) - b).min())
        feasible = slack >= -1e-6 and np.abs(scaled).max() <= 10 + 1e-9 and c >= 1
        print(f"scaled to max|R| = 10: {name}: c = {c:.2f}, min(Aop R − b) = {slack:.2e}, "
              f"{'feasible' if feasible else 'INFEASIBLE'}")
        if not feasible:
            raise SystemExit(f"{name} scaled by {c:.2f} leaves the polytope")
        designs[f"{name}, scaled to 10"] = scaled

    print("ExpAdaRD's LP, ECOS vs HiGHS, for three learner policies:")
    rng = np.random.default_rng(0)
    for k in range(3):
        pi = np.full((S, A), 1 / A) if k == 0 else rng.dirichlet(np.ones(A), size=S)
        c = lp.informativeness_weights(pi).reshape(-1)
        _, R, cons = polytope(tree=True)
        ecos(cp.Problem(cp.Maximize(c @ R), cons), 1e-6)
        high = lp.solve(c.reshape(S, A)).reshape(-1)
        print(f"  policy {k}: max|R| ECOS {np.abs(R.value).max():.2f}, HiGHS {np.abs(high).max():.2f}; "
              f"I(R|π_L) ECOS {c @ R.value:.5f}, HiGHS {c @ high:.5f}")

    optimum = TabularTrainer.optimum(mdp, "horizon_discounted")
    marks = [e for e in (1000, 2000, 5000, 10000, 20000, 50000) if e <= episodes]
    print(f"\nREINFORCE, {runs} runs x {episodes} episodes (optimum {optimum:.2f}, target {0.9 * optimum:.2f}):")
    print(f"  {'design':64s} max|R| mean|R|  " + "  ".join(f"@{m:>5}" for m in marks) + "  reached  median first")
    rows = [(name, R, None) for name, R in designs.items()]
    rows.append(("ExpAdaRD, HiGHS (rewardlab)", np.zeros((S, A)), AdaptiveOnline(lp, runs, 5)))
    for name, R, online in [row for row in rows if only in row[0]]:
        start = time.perf_counter()
        curves = reinforce(mdp, R, runs, episodes, np.random.default_rng(0), eval_every=100,
                           metric="horizon_discounted", online=online)
        hit = [int(curves.episodes[np.argmax(v >= 0.9 * optimum)]) for v in curves.values if (v >= 0.9 * optimum).any()]
        at = [curves.values[:, list(curves.episodes).index(m)].mean() for m in marks]
        size = np.abs(R if online is None else online.R).max()  # ExpAdaRD: its last designs
        spread = np.abs(R if online is None else online.R).mean()  # how much of the table is large, not only its max
        print(f"  {name:64s} {size:6.2f} {spread:7.2f}  " + "  ".join(f"{v:6.2f}" for v in at)
              + f"  {len(hit):>3}/{runs}  {int(np.median(hit)) if hit else '-':>6}  ({time.perf_counter() - start:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000, int(sys.argv[2]) if len(sys.argv) > 2 else 10,
         sys.argv[3] if len(sys.argv) > 3 else "")
