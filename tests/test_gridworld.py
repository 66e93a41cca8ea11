"""The thesis' gridworlds: cards match their envs, envs pass gymnasium's checker, and the exact models
(value iteration, policy evaluation, occupancy) agree with each other and with the layouts."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rewardlab.cards import load_card
from rewardlab.sims import make_env, verify_card
from rewardlab.sims.gridworld import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    chain,
    estimate_abstract_mdp,
    linek,
    linek_abstraction,
    linek_continuous,
    room,
)
from rewardlab.sims.tabular import TabularMDP

CARDS = ["gridworld/room", "gridworld/room-distractor", "gridworld/chain", "gridworld/chain-distractor",
         "gridworld/linek", "gridworld/room-aamas24", "gridworld/linek-continuous"]
MODELS = [room(), room(slip=0.05, slip_kind="random_action", r_max=1.0, gamma=0.99, horizon=30, distractor=True),
          chain(), chain(distractor=True), linek(), room(slip=0.05, slip_kind="random_action", horizon=30),
          linek_continuous()]


@pytest.mark.parametrize("card_id", CARDS)
def test_every_gridworld_card_matches_its_env_and_passes_check_env(card_id: str) -> None:
    card = load_card(card_id)
    verify_card(card, use_cache=False)
    env = make_env(card, seed=0)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    steps = 0
    while True:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            break
    assert steps <= card.episode_steps


def test_a_card_whose_episode_length_differs_from_the_model_is_refused(tmp_path) -> None:
    from rewardlab.errors import UserError

    text = load_card("gridworld/chain").path.read_text().replace("episode_steps: 40", "episode_steps: 41")
    path = tmp_path / "chain.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="episode_steps 41 differs from the model's horizon 40"):
        make_env(load_card(path))


def _cell(x: int, y: int) -> int:
    return 7 * y + x


def test_room_walls_block_moves_except_at_the_gaps() -> None:
    m = room(slip=0.0)
    assert m.T[_cell(2, 0), RIGHT, _cell(2, 0)] == 1.0  # wall between x=2|3
    assert m.T[_cell(2, 1), RIGHT, _cell(3, 1)] == 1.0  # gap at y=1
    assert m.T[_cell(0, 2), UP, _cell(0, 2)] == 1.0  # wall between y=2|3
    assert m.T[_cell(1, 2), UP, _cell(1, 3)] == 1.0  # gap at x=1
    assert m.T[_cell(0, 0), LEFT, 49] == 1.0 and m.T[_cell(0, 0), DOWN, 49] == 1.0  # the trap
    assert m.R[_cell(6, 6), RIGHT] == 10.0 and np.count_nonzero(m.R) == 1
    # with slip 0.1, a blocked move stays with 0.9 and slips to each reachable neighbour
    s = room().T[_cell(2, 0), RIGHT]
    assert s[_cell(2, 0)] == pytest.approx(0.9)
    assert s[_cell(1, 0)] == pytest.approx(0.05) and s[_cell(2, 1)] == pytest.approx(0.05)


@pytest.mark.parametrize("mdp", MODELS, ids=CARDS)
def test_value_iteration_agrees_with_exact_policy_evaluation(mdp: TabularMDP) -> None:
    V, Q = mdp.value_iteration()
    pi, opt = mdp.optimal_policy()
    V_pi, Q_pi = mdp.evaluate(pi)
    np.testing.assert_allclose(V_pi, V, atol=1e-6)
    np.testing.assert_allclose(Q_pi, Q, atol=1e-6)
    assert opt[np.arange(mdp.n_states), pi].all()
    # batched greedy values: the optimal policy and a uniformly random deterministic one
    rng = np.random.default_rng(0)
    other = rng.integers(mdp.n_actions, size=mdp.n_states)
    batched = mdp.greedy_values(np.stack([pi, other]))
    assert batched[0] == pytest.approx(mdp.start @ V)
    assert batched[1] == pytest.approx(mdp.start @ mdp.evaluate(other)[0])
    assert batched[1] <= batched[0] + 1e-9
    mu = mdp.occupancy(pi)
    assert mu.sum() == pytest.approx(1.0) and (mu >= 0).all()


def test_horizon_returns_count_chain_rewards_by_hand() -> None:
    # no slip, always right: 20 steps from 40 to 60, then 20 steps of reward 1 in the 40-step horizon
    m = chain(slip=0.0)
    right = np.zeros((1, m.n_states, 2))
    right[..., 1] = 1.0
    assert m.horizon_returns(right, discount=1.0)[0] == pytest.approx(20.0)


def test_linek_key_is_needed_for_the_goal_reward() -> None:
    m = linek(slip=0.0)
    assert m.T[1, 2, 10] == 1.0  # pick at position 1 -> position 0 with the key
    assert m.R[19, 1] == 10.0 and m.R[9, 1] == 0.0
    pi, _ = m.optimal_policy()
    assert pi[5] == 0 and pi[1] == 2  # go left, then pick


def test_continuous_linek_moves_seven_or_eight_cells_and_its_abstraction_is_estimated() -> None:
    g = linek_continuous()
    start = int(g.start.argmax())
    assert g.name_of(start) == "x=0.495"
    right = g.T[start, 1]  # right
    assert right[start + 7] == pytest.approx(0.45) and right[start + 8] == pytest.approx(0.45)
    phi = linek_abstraction(g)
    assert phi.max() == 40 and np.bincount(phi)[:40].tolist() == [5] * 40  # 20 bins x key, 5 cells each
    a = estimate_abstract_mdp(g, phi, 500, np.random.default_rng(0))
    assert a.n_states == 41 and a.terminal[40]
    np.testing.assert_allclose(a.T.sum(-1), 1.0)
    # the abstract model agrees with the ground one where it is exact: picking the key in its bins
    assert a.T[3, 2, 23] > 0.85 and a.R[39, 1] == pytest.approx(10.0)
