"""ExpAdaRD and INVARIANCE: designs stay in the invariance polytope under the structural features, the
informativeness objective is the paper's first-order term, and redesigns follow the learner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rewardlab.shaping.expadard import AdaptiveDesignLP, AdaptiveOnline, state_features
from rewardlab.shaping.teachers import Teacher
from rewardlab.sims.gridworld import linek, room
from rewardlab.sources import parse_source
from rewardlab.training import train


@pytest.fixture(scope="module")
def linek_lp() -> AdaptiveDesignLP:
    mdp = linek()
    return AdaptiveDesignLP(Teacher.solve(mdp), state_features("linek", mdp))


def test_room_and_linek_features_have_the_papers_sizes() -> None:
    r = room(slip=0.05, slip_kind="random_action", horizon=30)
    assert state_features("room", r).shape == (50, 10)  # 9 squares + goal: 40 weights with 4 actions
    F = state_features("linek", linek())
    assert F.shape == (21, 5)  # 5 leaves: 15 weights with 3 actions
    np.testing.assert_array_equal(F[:20].sum(1), 1)  # a tree: every live state in exactly one leaf
    assert F[1, 2] == 1 and F[19, 4] == 1 and F[9, 1] == 1 and not F[20].any()


def test_designs_satisfy_invariance_and_the_structure(linek_lp: AdaptiveDesignLP) -> None:
    teacher, F = linek_lp.teacher, state_features("linek", linek())
    uniform = np.full((21, 3), 1 / 3)
    for R in (linek_lp.solve(None), linek_lp.solve(linek_lp.informativeness_weights(uniform))):
        assert teacher.satisfies_invariance(R)
        assert np.abs(R).max() <= 10 + 1e-6
        # structural: states in the same leaf share their per-action rewards
        for leaf in range(F.shape[1]):
            rows = R[F[:, leaf] == 1]
            np.testing.assert_allclose(rows, rows[:1].repeat(len(rows), 0), atol=1e-9)


def test_the_objective_is_the_first_order_gain_of_the_learner(linek_lp: AdaptiveDesignLP) -> None:
    """I(R|π_L) written out term by term equals the linear form the LP maximises."""
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(3), size=21)
    R = rng.normal(size=(21, 3))
    mdp = linek_lp.teacher.mdp
    mu_L = mdp.occupancy(pi)
    A = linek_lp.A_T
    direct = sum(linek_lp.mu_T[s] * mu_L[s] * pi[s, a] ** 2 * (A[s, a] - pi[s] @ A[s]) * (R[s, a] - pi[s] @ R[s])
                 for s in range(21) for a in range(3))
    assert float((linek_lp.informativeness_weights(pi) * R).sum()) == pytest.approx(direct)


def test_the_adaptive_teacher_redesigns_from_each_runs_policy(linek_lp: AdaptiveDesignLP) -> None:
    online = AdaptiveOnline(linek_lp, runs=2, update_every=2)
    online.begin(np.full((2, 21, 3), 1 / 3))
    first = online.R.copy()
    assert online.step_reward(np.array([19, 19]), np.array([1, 1]), np.array([20, 20]), np.array([True, False]))[1] == 0
    rng = np.random.default_rng(1)
    policies = rng.dirichlet(np.ones(3), size=(2, 21))
    online.end_episode(None, policies)
    np.testing.assert_array_equal(online.R, first)  # N_r = 2: not yet
    online.end_episode(None, policies)
    for n in range(2):
        expected = linek_lp.solve(linek_lp.informativeness_weights(policies[n]))
        np.testing.assert_allclose(online.R[n], expected, atol=1e-9)


@pytest.mark.parametrize("name", ["expadard", "invariance"])
def test_the_tabular_trainer_runs_adaptive_designs(tmp_path: Path, name: str) -> None:
    source = parse_source({"name": name, "shaper": {"name": name}})
    result = train("gridworld/linek", source, "reinforce", 20, seed=0, run_dir=tmp_path, trainer="tabular",
                   preset_overrides={"runs": 2, "eval_every": 10})
    assert result.eval.episodes == 2


def test_the_learner_pool_starts_runs_from_fixed_distinct_policies(tmp_path: Path) -> None:
    from rewardlab.training.tabular import initial_policy_pool

    pool = initial_policy_pool(5, 21, 3)
    np.testing.assert_array_equal(pool, initial_policy_pool(5, 21, 3))  # "stored": the same for every trial
    source = parse_source({"name": "expadard", "shaper": {"name": "expadard"}})
    train("gridworld/linek", source, "reinforce", 10, seed=0, run_dir=tmp_path, trainer="tabular",
          preset_overrides={"runs": 5, "init_pool": 5, "eval_every": 10})
    start = np.load(tmp_path / "curves.npz")["values"][:, 0]
    assert len(set(np.round(start, 9))) == 5  # five different starting policies, five different values


def test_the_centred_invariance_point_is_the_analytic_centre(linek_lp: AdaptiveDesignLP) -> None:
    """INVARIANCE with ``point: centre``: strictly inside every constraint, structural, and the barrier's gradient
    vanishes there (the optimality condition of max Σ log slack); far from the vertex HiGHS returns."""
    teacher, F = linek_lp.teacher, state_features("linek", linek())
    R = linek_lp.centre()
    assert teacher.satisfies_invariance(R) and np.abs(R).max() < 10
    for leaf in range(F.shape[1]):
        rows = R[F[:, leaf] == 1]
        np.testing.assert_allclose(rows, rows[:1].repeat(len(rows), 0), atol=1e-9)
    A = linek_lp.A_ub.toarray()
    live = np.abs(A).sum(1) > 0
    w = np.linalg.lstsq(linek_lp.Phi, R.reshape(-1), rcond=None)[0]
    slack = linek_lp.b_ub[live] - A[live] @ w
    assert slack.min() > 1e-6
    gradient = A[live].T @ (1.0 / slack)
    assert np.abs(gradient).max() < 1e-6 * np.abs(A[live].T).sum(1).max() / slack.min()
    assert np.abs(R - linek_lp.solve(None)).max() > 1.0


def test_invariance_takes_a_point_and_refuses_an_unknown_one() -> None:
    from rewardlab.cards import load_card
    from rewardlab.errors import UserError
    from rewardlab.shaping.base import check_shaper_for
    from rewardlab.shaping.expadard import InvarianceBaseline

    card = load_card("gridworld/linek")
    mdp = linek()
    centred = InvarianceBaseline(card, {"point": "centre"}, 0.95).design(mdp)
    vertex = InvarianceBaseline(card, {}, 0.95).design(mdp)
    assert np.abs(vertex).max() == pytest.approx(10) and np.abs(centred).max() < 10
    with pytest.raises(UserError, match="point must be one of vertex, centre"):
        check_shaper_for(card, "invariance", {"point": "middle"})
    with pytest.raises(UserError, match="takes r_max"):
        check_shaper_for(card, "expadard", {"point": "centre"})  # ExpAdaRD maximises I: no point to pick


def test_the_papers_linek_pool_puts_one_logit_on_each_policy(tmp_path: Path) -> None:
    from rewardlab.errors import UserError
    from rewardlab.training.tabular import paper_linek_pool

    pool = paper_linek_pool(linek())
    hot = [tuple(map(int, np.argwhere(p)[0])) for p in pool]
    assert hot == [(1, 0), (1, 1), (5, 1), (5, 2), (10, 2)]  # key cell left/right, start right/pick, key layer 0 pick
    assert all(np.count_nonzero(p) == 1 and p.max() == 2.0 for p in pool)
    with pytest.raises(UserError, match="is the AAMAS'24 pool of LINEK"):
        paper_linek_pool(room())
    source = parse_source({"name": "orig", "path": "env"})
    train("gridworld/linek", source, "reinforce", 2, seed=0, run_dir=tmp_path, trainer="tabular",
          preset_overrides={"runs": 5, "init_pool": "aamas24", "eval_every": 1})
    start = np.load(tmp_path / "curves.npz")["values"][:, 0]
    assert len(set(np.round(start, 9))) == 5  # run r starts from policy (r + 1) mod 5: five different values
    with pytest.raises(UserError, match="init_pool must be a whole number >= 0 or 'aamas24'"):
        train("gridworld/linek", source, "reinforce", 2, seed=0, run_dir=tmp_path / "bad", trainer="tabular",
              preset_overrides={"init_pool": "paper"})
