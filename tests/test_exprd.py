"""EXPRD and PBRS with Φ = V* on the gridworlds: invariance, sparsity, the greedy selection, and
shapers that refuse tasks lacking what they need with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rewardlab.cards import load_card
from rewardlab.errors import UserError
from rewardlab.shaping.base import make_shaper
from rewardlab.shaping.exprd import InformativenessLP, design_exprd, informativeness, reward_program_source
from rewardlab.shaping.teachers import Teacher, potential_shaping_term
from rewardlab.sims.gridworld import chain, linek, room

MODELS = {"room": room(), "room-distractor": room(slip=0.05, slip_kind="random_action", r_max=1.0, gamma=0.99,
                                                      horizon=30, distractor=True),
          "chain": chain(), "chain-distractor": chain(distractor=True), "linek": linek()}


@pytest.fixture(scope="module")
def room_b3() -> tuple[np.ndarray, object]:
    return design_exprd(MODELS["room"], 3)


@pytest.mark.parametrize("name", MODELS)
def test_pbrs_with_optimal_values_leaves_the_optimal_policies_unchanged(name: str) -> None:
    mdp = MODELS[name]
    teacher = Teacher.solve(mdp)
    shaped = mdp.R + potential_shaping_term(mdp, teacher.V)
    _, opt_shaped = mdp.optimal_policy(shaped)
    _, opt = mdp.optimal_policy()
    live = ~mdp.terminal
    np.testing.assert_array_equal(opt_shaped[live], opt[live])
    assert teacher.satisfies_invariance(shaped)


def test_exprd_lp_solution_satisfies_invariance_and_sparsity(room_b3: tuple[np.ndarray, object]) -> None:
    mdp = MODELS["room"]
    R, log = room_b3
    teacher = Teacher.solve(mdp)
    assert teacher.satisfies_invariance(R)
    assert set(np.flatnonzero(np.abs(R).sum(1) > 0)) <= set(log.chosen)
    assert np.abs(R).max() <= 10.0 + 1e-9
    # π_T stays optimal under the designed reward
    _, opt = mdp.optimal_policy(R)
    assert opt[np.arange(mdp.n_states), teacher.pi][~mdp.terminal].all()
    # the design is more informative than the original reward, and no better than dense PBRS (0 is the best)
    i_orig, i_exprd = informativeness(teacher, mdp.R), informativeness(teacher, R)
    assert i_orig < i_exprd <= informativeness(teacher, mdp.R + potential_shaping_term(mdp, teacher.V)) + 1e-9
    assert log.objective[-1] == pytest.approx(i_exprd, abs=1e-6)


def test_exprd_greedy_selection_picks_the_trap_and_the_cells_before_the_gaps(room_b3: tuple[np.ndarray, object]) -> None:
    mdp = MODELS["room"]
    _, log = room_b3
    assert [mdp.name_of(s) for s in log.chosen[:1]] == ["(6,6)"]  # Z0: the goal
    assert {mdp.name_of(s) for s in log.chosen[1:]} == {"(0,0)", "(1,2)", "(2,1)"}  # the research note's re-run
    assert log.solves == 1 + 48 + 47 + 46 and log.seconds > 0


def test_an_infeasible_lower_bound_is_not_hidden() -> None:
    """The LP is exact: asking for a margin no bounded reward can give makes HiGHS fail loudly."""
    teacher = Teacher.solve(MODELS["linek"])
    lp = InformativenessLP(teacher, r_max=1e-3)
    with pytest.raises(RuntimeError, match="LP"):
        lp.solve([19])


def test_designed_reward_program_passes_the_sandbox_and_reproduces_the_table(room_b3: tuple[np.ndarray, object]) -> None:
    from rewardlab.checks import check_program
    from rewardlab.program import RewardProgram
    from rewardlab.training.tabular import program_table

    card = load_card("gridworld/room")
    R, log = room_b3
    program = RewardProgram(reward_program_source(card, MODELS["room"], R, log.chosen, "EXPRD test"))
    check_program(program, card, seed=0).raise_if_failed()
    np.testing.assert_allclose(program_table(card, program, MODELS["room"]), R, atol=1e-9, rtol=1e-9)


def test_shapers_name_what_a_task_lacks() -> None:
    hopper = load_card("mujoco/Hopper-v5")
    with pytest.raises(UserError, match="shaper 'exprd' needs a tabular model; mujoco/Hopper-v5 does not provide it"):
        make_shaper("exprd", {"budget": 5}, hopper, 0.99, set())
    with pytest.raises(UserError, match="shaper 'pbrs' needs a tabular model"):
        make_shaper("pbrs", {"potential": "V*"}, hopper, 0.99, {"expert_policy"})


@pytest.mark.parametrize(("params", "message"), [
    ({}, "needs a budget B"),
    ({"budget": -1}, "budget must be a whole number >= 0 or .all."),
    ({"budget": 2.5}, "budget must be a whole number >= 0 or .all."),
    ({"budget": 3, "horizon": [1]}, "takes budget, horizons, r_max and abstraction, not horizon"),
    ({"budget": 3, "horizons": [0, 4]}, "horizons must be whole numbers >= 1"),
    ({"budget": 3, "r_max": 0}, "r_max must be positive"),
])
def test_exprd_refuses_meaningless_settings(params: dict, message: str) -> None:
    card = load_card("gridworld/room")
    with pytest.raises(UserError, match=message):
        make_shaper("exprd", params, card, 0.95, {"tabular_model"})


def test_exprd_writes_its_program_table_and_drawing(tmp_path: Path) -> None:
    card = load_card("gridworld/linek")
    shaper = make_shaper("exprd", {"budget": 1}, card, 0.95, {"tabular_model", "expert_policy"})
    R = shaper.tabular_reward(MODELS["linek"])
    assert R.shape == (21, 3)
    names = {p.name for p in shaper.write_artifacts(tmp_path)}
    assert names == {"designed_reward.py", "designed_reward.md"}  # LINEK is not a grid of 4 moves: no drawing
    text = (tmp_path / "designed_reward.md").read_text()
    assert "LP solves (scipy HiGHS)" in text and "invariance holds: True" in text


def test_exprd_on_an_abstraction_lifts_a_constant_reward_over_each_abstract_state(tmp_path: Path) -> None:
    from rewardlab.sims.base import get_simulator
    from rewardlab.sims.gridworld import linek_abstraction

    card = load_card("gridworld/linek-continuous")
    adapter = get_simulator("gridworld")
    shaper = make_shaper("exprd", {"budget": 1, "abstraction": True}, card, 0.95, adapter.capabilities(card))
    ground = adapter.tabular_model(card)
    R = shaper.tabular_reward(ground)
    phi = linek_abstraction(ground)
    for z in range(41):
        np.testing.assert_allclose(R[phi == z], R[phi == z][:1].repeat((phi == z).sum(), 0))
    _, abstract, R_abs = shaper._abstract
    assert Teacher.solve(abstract).satisfies_invariance(R_abs)  # guaranteed in the abstract MDP only
    shaper.write_artifacts(tmp_path)
    assert "(ground, lifted)" in (tmp_path / "designed_reward.md").read_text()  # the ground check is reported
    from rewardlab.checks import check_program
    from rewardlab.program import load_program

    check_program(load_program(str(tmp_path / "designed_reward.py")), card, seed=0).raise_if_failed()
    with pytest.raises(UserError, match="needs an abstraction; gridworld/room provides"):
        make_shaper("exprd", {"budget": 1, "abstraction": True}, load_card("gridworld/room"), 0.95,
                    adapter.capabilities(load_card("gridworld/room")))


def test_craft_rewards_the_gates_and_the_goal() -> None:
    card = load_card("gridworld/room")
    shaper = make_shaper("craft", {}, card, 0.95, {"tabular_model"})
    mdp = MODELS["room"]
    R = shaper.tabular_reward(mdp)
    teacher = Teacher.solve(mdp)
    gates = [7 * y + x for x, y in ((2, 1), (1, 2), (5, 2), (2, 5))]
    assert set(np.flatnonzero(np.abs(R).sum(1))) == {*gates, 48}
    for s in gates:
        np.testing.assert_array_equal(R[s], np.where(teacher.opt[s], 1.0, -1.0))
    assert (R[48] == 10).all()
    with pytest.raises(UserError, match="needs landmarks"):
        make_shaper("craft", {}, load_card("gridworld/chain"), 0.99, {"tabular_model"})
