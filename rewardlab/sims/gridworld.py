"""The reward-design thesis' gridworlds (Devidze 2025; EXPRD NeurIPS'21, ExpAdaRD AAMAS'24, ExploRS
NeurIPS'22), each built from its exact :class:`~rewardlab.sims.tabular.TabularMDP` and exposed as a
gymnasium env (``Discrete`` observations and actions) by the ``gridworld`` simulator.

=============  ==================================================================================
``room``       7×7 four-room grid + absorbing terminal (50 states); walls between x=2|3 (gaps y=1,5)
               and y=2|3 (gaps x=1,5); start (1,1); "right" at the goal (6,6) pays ``r_max`` and ends
               the episode; "left"/"down" at (0,0) is a trap (terminal, reward 0)
``chain``      states 0..60 + terminal; start 40; "right" at 60 pays 1 and stays (the reward repeats
               until the horizon); "left" at 0 enters the terminal state
``linek``      ExpAdaRD's discrete LINEK: 10 positions × key bit + terminal (21 states), actions
               left/right/pick; the key is picked at position 1 (and puts the agent at position 0 of
               the key layer); "right" at 9 with the key pays ``r_max`` and ends; "left" at 0 ends
=============  ==================================================================================

Each takes ``distractor`` (ExploRS' variant: a small reward, 0.01, on a wrong action) and its slip
model. Sources: the official code of each paper (research note §2–4); deviations are labelled
``Deviation:`` where they are made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.sims.base import Policy, Simulator
from rewardlab.sims.tabular import TabularMDP

UP, LEFT, DOWN, RIGHT = 0, 1, 2, 3
ROOM_ACTIONS = ("up", "left", "down", "right")
#: ExploRS' distractor reward (research note §4).
DISTRACTOR_REWARD = 0.01


def _room_walls(n: int = 7) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """Blocked moves of the four-room layout as (cell, direction) pairs: a barrier between x=2|3 with
    gaps at y=1 and y=5, and one between y=2|3 with gaps at x=1 and x=5 (EXPRD's ``compute_walls``
    for ``gridsizefull=7``)."""
    blocked_right = {(2, y) for y in range(n) if y not in (1, 5)}  # from x=2 to x=3
    blocked_up = {(x, 2) for x in range(n) if x not in (1, 5)}  # from y=2 to y=3
    return blocked_right, blocked_up


def room(slip: float = 0.1, slip_kind: str = "neighbour", r_max: float = 10.0, gamma: float = 0.95,
         horizon: int = 50, distractor: bool = False, size: int = 7) -> TabularMDP:
    """The ROOM gridworld (EXPRD's four rooms).

    :param slip: probability that the move does not go where intended
    :param slip_kind: ``neighbour`` (EXPRD: the agent moves to another reachable neighbour, uniformly;
        a blocked move stays with ``1 − slip``) or ``random_action`` (ExpAdaRD/ExploRS: a uniformly
        random action is executed instead)
    :param r_max: the goal reward (10 in EXPRD/ExpAdaRD, 1 in ExploRS)
    :param distractor: ExploRS' variant: "up" at (1,0) pays 0.01 (research note §4)
    """
    if slip_kind not in ("neighbour", "random_action"):
        raise ValueError(f"slip_kind must be 'neighbour' or 'random_action', not {slip_kind!r}")
    n = size
    S = n * n + 1
    term = n * n
    blocked_right, blocked_up = _room_walls(n)

    def cell(x: int, y: int) -> int:
        return y * n + x

    def target(x: int, y: int, a: int) -> int | None:
        """Where action ``a`` leads from (x, y), or None when a wall or the border blocks it."""
        if a == UP and y < n - 1 and (x, y) not in blocked_up:
            return cell(x, y + 1)
        if a == DOWN and y > 0 and (x, y - 1) not in blocked_up:
            return cell(x, y - 1)
        if a == LEFT and x > 0 and (x - 1, y) not in blocked_right:
            return cell(x - 1, y)
        if a == RIGHT and x < n - 1 and (x, y) not in blocked_right:
            return cell(x + 1, y)
        return None

    goal, trap = cell(n - 1, n - 1), cell(0, 0)
    # the deterministic effect of each action: the grid move, except where an action ends the episode
    effect = np.zeros((S, 4), dtype=np.int64)
    for y in range(n):
        for x in range(n):
            s = cell(x, y)
            for a in range(4):
                t = target(x, y, a)
                effect[s, a] = s if t is None else t
    effect[trap, LEFT] = effect[trap, DOWN] = term
    effect[goal, RIGHT] = effect[goal, UP] = term  # EXPRD's code: "up" at the goal also enters the terminal
    effect[term, :] = term

    T = np.zeros((S, 4, S))
    for s in range(n * n):
        x, y = s % n, s // n
        for a in range(4):
            if slip_kind == "random_action":
                T[s, a, effect[s, a]] += 1 - slip
                for b in range(4):
                    T[s, a, effect[s, b]] += slip / 4
                continue
            moved = target(x, y, a) is not None or effect[s, a] == term
            reachable = sorted({int(effect[s, b]) for b in range(4) if effect[s, b] != s})
            if moved:
                T[s, a, effect[s, a]] += 1 - slip
                others = [t for t in reachable if t != effect[s, a]] or [s]
            else:
                T[s, a, s] += 1 - slip
                others = reachable
            for t in others:
                T[s, a, t] += slip / len(others)
    T[term, :, term] = 1.0

    R = np.zeros((S, 4))
    R[goal, RIGHT] = r_max
    if distractor:
        R[cell(1, 0), UP] = DISTRACTOR_REWARD
    start = np.zeros(S)
    start[cell(1, 1)] = 1.0
    terminal = np.zeros(S, dtype=bool)
    terminal[term] = True
    names = tuple(f"({s % n},{s // n})" for s in range(n * n)) + ("terminal",)
    coords = np.array([[s % n, s // n] for s in range(n * n)] + [[np.nan, np.nan]], dtype=float)
    return TabularMDP(T, R, gamma, start, horizon, terminal, names, ROOM_ACTIONS, coords)


def chain(length: int = 61, start_state: int = 40, slip: float = 0.05, gamma: float = 0.99, horizon: int = 40,
          distractor: bool = False, distractor_state: int = 25) -> TabularMDP:
    """ExploRS' CHAIN: states ``0..length-1`` plus a terminal state; actions left, right.

    "Right" at the last state pays 1 and stays there (the reward repeats until the horizon); "left" at
    0 enters the terminal state. With probability ``slip`` a uniformly random action is executed
    instead (so the other one with ``slip / 2``, as ExploRS' ``get_transition_matrix_line``).

    :param distractor: "left" at ``distractor_state`` pays 0.01 (research note §4)
    """
    S = length + 1
    term, goal = length, length - 1
    effect = np.zeros((S, 2), dtype=np.int64)
    for s in range(length):
        effect[s, 0] = term if s == 0 else s - 1
        effect[s, 1] = min(s + 1, goal)
    effect[term] = term
    T = np.zeros((S, 2, S))
    for s in range(length):
        for a in range(2):
            T[s, a, effect[s, a]] += 1 - slip / 2
            T[s, a, effect[s, 1 - a]] += slip / 2
    T[term, :, term] = 1.0
    R = np.zeros((S, 2))
    R[goal, 1] = 1.0
    if distractor:
        R[distractor_state, 0] = DISTRACTOR_REWARD
    start = np.zeros(S)
    start[start_state] = 1.0
    terminal = np.zeros(S, dtype=bool)
    terminal[term] = True
    names = tuple(str(s) for s in range(length)) + ("terminal",)
    coords = np.array([[s, 0] for s in range(length)] + [[np.nan, np.nan]], dtype=float)
    return TabularMDP(T, R, gamma, start, horizon, terminal, names, ("left", "right"), coords)


def linek(positions: int = 10, key_position: int = 1, start_position: int = 5, slip: float = 0.1,
          r_max: float = 10.0, gamma: float = 0.95, horizon: int = 30, distractor: bool = False) -> TabularMDP:
    """ExpAdaRD's discrete LINEK: ``positions`` cells × {no key, key} + a terminal state; actions
    left, right, pick.

    "Pick" at ``key_position`` without the key takes it and puts the agent at position 0 of the key
    layer; "right" at the last position with the key pays ``r_max`` and ends the episode; "left" at 0
    ends it with 0. With probability ``slip`` a move goes the opposite way. Deviation: "pick" never
    slips (the research note gives the slip for moves only).

    :param distractor: "right" at the last position *without* the key pays 0.01 and ends the episode
        (ExploRS' LINEK distractor, research note §4)
    """
    P = positions
    S = 2 * P + 1
    term = 2 * P
    LEFT_, RIGHT_, PICK = 0, 1, 2

    def st(pos: int, key: int) -> int:
        return key * P + pos

    effect = np.zeros((S, 3), dtype=np.int64)
    for key in (0, 1):
        for pos in range(P):
            s = st(pos, key)
            effect[s, LEFT_] = term if pos == 0 else st(pos - 1, key)
            last_ends = key == 1 or distractor
            effect[s, RIGHT_] = term if (pos == P - 1 and last_ends) else st(min(pos + 1, P - 1), key)
            effect[s, PICK] = st(0, 1) if (key == 0 and pos == key_position) else s
    effect[term] = term
    T = np.zeros((S, 3, S))
    for s in range(term):
        T[s, LEFT_, effect[s, LEFT_]] += 1 - slip
        T[s, LEFT_, effect[s, RIGHT_]] += slip
        T[s, RIGHT_, effect[s, RIGHT_]] += 1 - slip
        T[s, RIGHT_, effect[s, LEFT_]] += slip
        T[s, PICK, effect[s, PICK]] = 1.0
    T[term, :, term] = 1.0
    R = np.zeros((S, 3))
    R[st(P - 1, 1), RIGHT_] = r_max
    if distractor:
        R[st(P - 1, 0), RIGHT_] = DISTRACTOR_REWARD
    start = np.zeros(S)
    start[st(start_position, 0)] = 1.0
    terminal = np.zeros(S, dtype=bool)
    terminal[term] = True
    names = tuple(f"{pos}{' key' if key else ''}" for key in (0, 1) for pos in range(P)) + ("terminal",)
    coords = np.array([[pos, key] for key in (0, 1) for pos in range(P)] + [[np.nan, np.nan]], dtype=float)
    return TabularMDP(T, R, gamma, start, horizon, terminal, names, ("left", "right", "pick"), coords)


def linek_continuous(grid: float = 0.01, move: tuple[float, float] = (0.074, 0.076), slip: float = 0.1,
                     key_range: tuple[float, float] = (0.1, 0.2), goal_range: tuple[float, float] = (0.9, 1.0),
                     start_x: float = 0.5, r_max: float = 10.0, gamma: float = 0.95, horizon: int = 50,
                     quadrature: int = 200) -> TabularMDP:
    """EXPRD's LINEK with a continuous position, on its ground state space: x ∈ [0, 1] snapped to a
    ``grid``-spaced lattice (cell centres 0.005 … 0.995 for 0.01: 100 positions) × key bit + terminal
    (201 states), as the official code does (``find_nearest`` after every move). Actions left, right,
    pick.

    A move shifts x by ``u ~ U[move]`` (then snaps; clipped at the ends); "pick" in ``key_range`` takes the
    key; with probability ``slip`` one of the two other actions is executed instead. "right" in
    ``goal_range`` ends the episode (no slip), paying ``r_max`` with the key and 0 without it.

    The move's distribution over lattice cells is integrated exactly enough by ``quadrature`` points of
    u. Deviation: γ = 0.95 is assumed (the research note does not give LINEK's).
    """
    P = int(round(1 / grid))
    xs = (np.arange(P) + 0.5) * grid
    S = 2 * P + 1
    term = 2 * P
    LEFT_, RIGHT_, PICK = 0, 1, 2
    us = move[0] + (np.arange(quadrature) + 0.5) / quadrature * (move[1] - move[0])

    def shifted(i: int, sign: int) -> np.ndarray:
        """Distribution over positions after a move from cell i."""
        out = np.zeros(P)
        for u in us:
            x = xs[i] + sign * u
            j = P - 1 if x >= 1 else 0 if x <= 0 else int(np.clip(np.round((x - grid / 2) / grid - 1e-9), 0, P - 1))
            out[j] += 1.0 / len(us)
        return out

    in_key = (xs >= key_range[0]) & (xs <= key_range[1])
    in_goal = (xs >= goal_range[0]) & (xs < goal_range[1])
    T = np.zeros((S, 3, S))
    R = np.zeros((S, 3))
    for key in (0, 1):
        for i in range(P):
            s = key * P + i
            effect = np.zeros((3, S))
            effect[LEFT_, key * P:(key + 1) * P] = shifted(i, -1)
            effect[RIGHT_, key * P:(key + 1) * P] = shifted(i, +1)
            effect[PICK, (P + i) if (key == 0 and in_key[i]) else s] = 1.0
            for a in range(3):
                others = [b for b in range(3) if b != a]
                T[s, a] = (1 - slip) * effect[a] + slip / 2 * (effect[others[0]] + effect[others[1]])
            if in_goal[i]:
                T[s, RIGHT_] = 0.0
                T[s, RIGHT_, term] = 1.0
                R[s, RIGHT_] = r_max if key else 0.0
    T[term, :, term] = 1.0
    start = np.zeros(S)
    start[int(np.argmin(np.abs(xs - start_x)))] = 1.0
    terminal = np.zeros(S, dtype=bool)
    terminal[term] = True
    names = tuple(f"x={x:.3f}{' key' if key else ''}" for key in (0, 1) for x in xs) + ("terminal",)
    coords = np.array([[x, key] for key in (0, 1) for x in xs] + [[np.nan, np.nan]], dtype=float)
    return TabularMDP(T, R, gamma, start, horizon, terminal, names, ("left", "right", "pick"), coords)


def linek_abstraction(ground: TabularMDP, bins: int = 20) -> np.ndarray:
    """EXPRD's φ for continuous LINEK: ``bins`` equal bins of x × key bit, plus the terminal state
    (41 abstract states for 20 bins); ``(S_ground,)`` abstract index per ground state."""
    assert ground.coords is not None
    x, key = ground.coords[:, 0], ground.coords[:, 1]
    phi = np.where(ground.terminal, 2 * bins, 0)
    live = ~ground.terminal
    phi[live] = key[live].astype(int) * bins + np.minimum((x[live] * bins).astype(int), bins - 1)
    return phi


def estimate_abstract_mdp(ground: TabularMDP, phi: np.ndarray, samples: int, rng: np.random.Generator) -> TabularMDP:
    """The abstract MDP by sampling (EXPRD's ``get_sampling``): for every abstract state z and action a,
    ``samples`` transitions from ground states drawn uniformly in z give T̂(z'|z, a) and R̂(z, a).

    :param phi: abstract index per ground state (the abstract terminal is the image of absorbing states)
    """
    Z = int(phi.max()) + 1
    A = ground.n_actions
    T = np.zeros((Z, A, Z))
    R = np.zeros((Z, A))
    cum = np.cumsum(ground.T, -1)
    for z in range(Z):
        members = np.flatnonzero(phi == z)
        for a in range(A):
            s = rng.choice(members, size=samples)
            nxt = (cum[s, a] <= rng.random(samples)[:, None]).sum(1).clip(max=ground.n_states - 1)
            np.add.at(T[z, a], phi[nxt], 1.0 / samples)
            R[z, a] = ground.R[s, a].mean()
    terminal = np.zeros(Z, dtype=bool)
    terminal[np.unique(phi[ground.terminal])] = True
    start = np.zeros(Z)
    np.add.at(start, phi, ground.start)
    bins = (Z - 1) // 2
    names = tuple(f"x∈[{b / bins:.2f},{(b + 1) / bins:.2f}){' key' if k else ''}" for k in (0, 1)
                  for b in range(bins)) + ("terminal",)
    return TabularMDP(T, R, ground.gamma, start, ground.horizon, terminal, names, ground.action_names)


#: ``env_id`` of a gridworld card -> its MDP builder (keyword arguments from the card's ``make_kwargs``).
BUILDERS: dict[str, Callable[..., TabularMDP]] = {"room": room, "chain": chain, "linek": linek,
                                                 "linek-continuous": linek_continuous}
#: Abstractions φ of the tasks that have one: ``env_id -> (ground model) -> abstract index per state``.
ABSTRACTIONS: dict[str, Callable[[TabularMDP], np.ndarray]] = {"linek-continuous": linek_abstraction}
#: Transitions sampled per (abstract state, action) to estimate an abstract model.
ABSTRACT_SAMPLES = 2000


class TabularEnv(gym.Env[np.int64, np.int64]):
    """A gymnasium env that samples a :class:`TabularMDP`: observation and action are state and action
    indices; entering an absorbing state terminates the episode; ``info["success"]`` is true on the
    step that earns the task's goal reward (the largest entry of R̄).

    :param mdp: the model
    """

    metadata = {"render_modes": []}

    def __init__(self, mdp: TabularMDP):
        self.mdp = mdp
        self.observation_space = spaces.Discrete(mdp.n_states)
        self.action_space = spaces.Discrete(mdp.n_actions)
        self._cum = np.cumsum(mdp.T, axis=-1)
        self._goal = mdp.R >= mdp.R.max() - 1e-12
        self._state = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.int64, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.start))
        return np.int64(self._state), {}

    def step(self, action: Any) -> tuple[np.int64, float, bool, bool, dict[str, Any]]:
        s, a = self._state, int(action)
        nxt = int(np.searchsorted(self._cum[s, a], self.np_random.random(), side="right"))
        nxt = min(nxt, self.mdp.n_states - 1)  # a cumulative sum of 1 - 1e-16 must not step outside
        self._state = nxt
        reward = float(self.mdp.R[s, a])
        info = {"success": bool(self._goal[s, a])}
        return np.int64(nxt), reward, bool(self.mdp.terminal[nxt]), False, info


class GridworldSimulator(Simulator):
    """The ``gridworld`` simulator: the thesis' tabular tasks, with their exact models.

    Provides shapers with ``tabular_model`` (the :class:`TabularMDP`) and ``expert_policy`` (π_T by
    value iteration on it).
    """

    name = "gridworld"
    packages = ("gymnasium",)

    def tabular_model(self, card: EnvCard) -> TabularMDP:
        """The card's exact model.

        :raises UserError: an unknown ``env_id`` or bad ``make_kwargs``
        """
        builder = BUILDERS.get(card.env_id)
        if builder is None:
            raise UserError(f"env card {card.label}: env_id {card.env_id!r} is not a gridworld env; "
                            f"known: {', '.join(sorted(BUILDERS))}")
        try:
            return builder(**card.make_kwargs)
        except TypeError as e:
            raise UserError(f"env card {card.label}: bad make_kwargs for {card.env_id}: {e}") from None

    def make_env(self, card: EnvCard, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
        mdp = self.tabular_model(card)
        if mdp.horizon != card.episode_steps:
            raise UserError(f"env card {card.label}: episode_steps {card.episode_steps} differs from the "
                            f"model's horizon {mdp.horizon}")
        env: gym.Env = gym.wrappers.TimeLimit(TabularEnv(mdp), max_episode_steps=card.episode_steps)
        if seed is not None:
            env.reset(seed=seed)
            env.action_space.seed(seed)
        return env

    def known_env_ids(self) -> list[str]:
        return sorted(BUILDERS)

    def expert(self, card: EnvCard) -> Policy | None:
        pi, _ = self.tabular_model(card).optimal_policy()
        return lambda obs, t: np.asarray(pi[int(np.asarray(obs).reshape(-1)[0])])

    def capabilities(self, card: EnvCard) -> set[str]:
        return {"tabular_model", "expert_policy"} | ({"abstraction"} if card.env_id in ABSTRACTIONS else set())

    def abstraction(self, card: EnvCard, seed: int = 0) -> tuple[np.ndarray, TabularMDP]:
        """φ (abstract index per ground state) and the abstract MDP estimated by sampling
        (:data:`ABSTRACT_SAMPLES` transitions per abstract state and action, seeded).

        :raises UserError: the task has no abstraction
        """
        if card.env_id not in ABSTRACTIONS:
            raise UserError(f"{card.id} has no abstraction")
        ground = self.tabular_model(card)
        phi = ABSTRACTIONS[card.env_id](ground)
        return phi, estimate_abstract_mdp(ground, phi, ABSTRACT_SAMPLES, np.random.default_rng(seed))
