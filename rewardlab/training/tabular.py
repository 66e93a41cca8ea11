"""The ``tabular`` trainer: the reward-design thesis' learners on tasks with an exact model (the
gridworlds), vectorised over independent runs so that 30 runs of 2^15 episodes take minutes.

=============  =====================================================================================
``qlearning``  tabular Q-learning, ε-greedy (EXPRD's learner: ε = 0.1, α = 0.5, Q₀ = 0)
``reinforce``  tabular softmax REINFORCE without baseline (ExpAdaRD: η = 0.01; ExploRS: η = 0.1)
``qlearning-   ExploRS' Q-learning: ε = 0.05, α = 0.1, every 2 episodes the last 5 replayed backwards
replay``
=============  =====================================================================================

**Budgets are episodes.** The papers count learning in episodes, so for this trainer ``budget.steps``
is the number of episodes per run (each at most the card's ``episode_steps`` long), and a curve
point's ``step`` is the episode it was taken *before* (episode 0: the untrained learner).

**The metric** is exact, not sampled: after every ``eval_every`` episodes the learner's policy
(Q-learning: greedy in Q, first best action on ties; REINFORCE: the softmax policy) is evaluated on
the task's model under the original reward R̄ — ``discounted``: ``ρ₀ · V^π`` with the model's γ (EXPRD,
ExpAdaRD); ``horizon_discounted``: the expected γ-discounted return over the episode's horizon
(ExploRS, whose code averages 5 sampled episodes instead: a labelled deviation); ``horizon_return``:
the same undiscounted.
Each trial writes ``curves.npz`` (``episodes (E,)``, ``values (runs, E)``, ``optimum``) and its
final evaluation holds one value per run.

Hyperparameters (a spec's ``hyperparameters:``): ``runs`` (default 1), ``epsilon``, ``alpha``, ``q0``
(Q-learning), ``learning_rate``, ``update_every``, ``recent``, ``init_pool`` (REINFORCE: a number K of seeded
initial policies, or ``aamas24``, the paper's LINEK pool), ``eval_every`` (default 1
episode), ``metric``, ``target`` (a value to reach, for the report's "first episode at ≥ target";
default 0.9 of the optimum).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rewardlab.cards import EnvCard
from rewardlab.config import TrainConfig
from rewardlab.errors import UserError
from rewardlab.program import RewardProgram
from rewardlab.runtime import limit_threads
from rewardlab.shaping.base import Shaper, make_shaper, tabular_model
from rewardlab.sims.base import get_simulator
from rewardlab.sims.tabular import TabularMDP
from rewardlab.sources import NativeReward, ResolvedReward, ShapedReward
from rewardlab.state import StateExtractor, fields_used_by
from rewardlab.types import CurvePoint, EvalResult, TrialResult

ALGORITHMS = ("qlearning", "reinforce", "qlearning-replay")
METRICS = ("discounted", "horizon_discounted", "horizon_return")
#: Defaults per algorithm (EXPRD's Q-learning; ExpAdaRD's REINFORCE step size).
DEFAULTS: dict[str, dict[str, Any]] = {
    "qlearning": {"epsilon": 0.1, "alpha": 0.5, "q0": 0.0},
    "reinforce": {"learning_rate": 0.01, "update_every": 2, "recent": 5, "init_pool": 0},
    "qlearning-replay": {"epsilon": 0.05, "alpha": 0.1, "update_every": 2, "recent": 5},
}
COMMON = {"runs": 1, "eval_every": 1, "metric": "discounted", "target": None}


# -- online shaping (ExploRS) ------------------------------------------------------------------------
@dataclass
class EpisodeBatch:
    """One episode of every run, time-major: ``states``, ``actions``, ``next_states`` ``(T, N)`` int,
    ``rewards`` ``(T, N)`` (the original reward R̄), ``alive`` ``(T, N)`` bool (the step happened)."""

    states: np.ndarray
    actions: np.ndarray
    next_states: np.ndarray
    rewards: np.ndarray
    alive: np.ndarray


class OnlineShaping(Protocol):
    """A shaper that changes while the learner trains, vectorised over runs (ExploRS)."""

    def step_reward(self, states: np.ndarray, actions: np.ndarray, next_states: np.ndarray,
                    alive: np.ndarray) -> np.ndarray:
        """The shaping term of one step of every run, ``(N,)``; also where counts are updated."""

    def begin(self, policy: np.ndarray) -> None:
        """Before the first episode, with the learner's initial policy ``(N, S, A)``."""

    def end_episode(self, batch: EpisodeBatch, policy: np.ndarray) -> None:
        """After each episode, with the learner's current policy ``(N, S, A)``."""


# -- the learners ------------------------------------------------------------------------------------
class _Sampler:
    """Vectorised sampling of next states from a model."""

    def __init__(self, mdp: TabularMDP, rng: np.random.Generator):
        self.cum = np.cumsum(mdp.T, axis=-1)
        self.cum[..., -1] = 1.0 + 1e-12  # a row summing to 1 - 1e-16 never steps outside
        self.start_cum = np.cumsum(mdp.start)
        self.start_cum[-1] = 1.0 + 1e-12
        self.rng = rng

    def reset(self, n: int) -> np.ndarray:
        return np.searchsorted(self.start_cum, self.rng.random(n), side="right")

    def step(self, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        u = self.rng.random(len(s))
        return (self.cum[s, a] <= u[:, None]).sum(1)


def _metric(mdp: TabularMDP, policy: np.ndarray, metric: str) -> np.ndarray:
    """The policies' value under R̄ (see the module docstring); ``policy`` is ``(N, S)`` actions or
    ``(N, S, A)`` probabilities."""
    if metric == "discounted" and policy.ndim == 2:
        return mdp.greedy_values(policy)
    if policy.ndim == 2:
        probs = np.zeros((*policy.shape, mdp.n_actions))
        np.put_along_axis(probs, policy[..., None], 1.0, axis=-1)
        policy = probs
    if metric == "discounted":
        T_pi = np.einsum("nsa,sat->nst", policy, mdp.T)
        r_pi = (policy * mdp.R[None]).sum(-1)
        V = np.linalg.solve(np.eye(mdp.n_states)[None] - mdp.gamma * T_pi, r_pi[..., None])[..., 0]
        return V @ mdp.start
    return mdp.horizon_returns(policy, discount=mdp.gamma if metric == "horizon_discounted" else 1.0)


@dataclass
class LearningCurves:
    """Per-run values of the learner's policy: ``values[r, k]`` after ``episodes[k]`` episodes."""

    episodes: np.ndarray
    values: np.ndarray


def _eval_points(episodes: int, every: int) -> np.ndarray:
    return np.unique(np.concatenate([np.arange(0, episodes, every), [episodes]]))


def q_learning(mdp: TabularMDP, reward: np.ndarray, runs: int, episodes: int, rng: np.random.Generator,
               epsilon: float = 0.1, alpha: float = 0.5, q0: float = 0.0, eval_every: int = 1,
               metric: str = "discounted", online: OnlineShaping | None = None,
               progress: Callable[[int, int], None] | None = None) -> LearningCurves:
    """Tabular ε-greedy Q-learning (Watkins), ``runs`` independent learners in lockstep.

    Each episode starts from ρ₀ and lasts until an absorbing state or the horizon; the update is
    ``Q(s,a) += α (r + γ max_b Q(s',b) − Q(s,a))`` (``Q`` of absorbing states stays 0, as in EXPRD's
    code), on the reward table ``reward (S, A)`` plus the online shaping term.

    :return: the greedy policy's value (see :func:`_metric`) before every ``eval_every``-th episode and
        at the end
    """
    S, A = mdp.n_states, mdp.n_actions
    Q = np.full((runs, S, A), float(q0))
    Q[:, mdp.terminal] = 0.0
    sampler = _Sampler(mdp, rng)
    points = _eval_points(episodes, eval_every)
    values = np.zeros((runs, len(points)))
    idx = np.arange(runs)
    if online is not None:
        online.begin(_epsilon_greedy(Q, epsilon))
    k = 0
    for episode in range(episodes + 1):
        if episode == points[k]:
            values[:, k] = _metric(mdp, Q.argmax(-1), metric)
            k += 1
            if progress is not None:
                progress(episode, episodes)
        if episode == episodes:
            break
        s = sampler.reset(runs)
        alive = np.ones(runs, dtype=bool)
        trace: list[tuple[np.ndarray, ...]] = []
        for _ in range(mdp.horizon):
            greedy = Q[idx, s].argmax(-1)
            explore = rng.random(runs) < epsilon
            a = np.where(explore, rng.integers(A, size=runs), greedy)
            s2 = sampler.step(s, a)
            r = reward[s, a]
            if online is not None:
                r = r + online.step_reward(s, a, s2, alive)
            target = r + mdp.gamma * Q[idx, s2].max(-1)
            Q[idx, s, a] += np.where(alive, alpha * (target - Q[idx, s, a]), 0.0)
            if online is not None:
                trace.append((s, a, s2, mdp.R[s, a], alive.copy()))
            alive &= ~mdp.terminal[s2]
            s = s2
            if not alive.any():
                break
        if online is not None and trace:
            batch = EpisodeBatch(*(np.stack(x) for x in zip(*trace)))
            online.end_episode(batch, _epsilon_greedy(Q, epsilon))
    return LearningCurves(points, values)


def _epsilon_greedy(Q: np.ndarray, epsilon: float) -> np.ndarray:
    """The ε-greedy policy of ``Q (N, S, A)`` as probabilities (ties: the first best action)."""
    A = Q.shape[-1]
    probs = np.full(Q.shape, epsilon / A)
    np.put_along_axis(probs, Q.argmax(-1)[..., None], 1 - epsilon + epsilon / A, axis=-1)
    return probs


def _tied_epsilon_greedy(Q: np.ndarray, epsilon: float, tol: float = 1e-6) -> np.ndarray:
    """ε-greedy over *all* best actions (ties split evenly), ``(N, S, A)`` — ExploRS' Q-learning policy."""
    best = Q >= Q.max(-1, keepdims=True) - tol
    greedy = best / best.sum(-1, keepdims=True)
    return (1 - epsilon) * greedy + epsilon / Q.shape[-1]


def replay_q_learning(mdp: TabularMDP, reward: np.ndarray, runs: int, episodes: int, rng: np.random.Generator,
                      epsilon: float = 0.05, alpha: float = 0.1, update_every: int = 2, recent: int = 5,
                      eval_every: int = 1, metric: str = "discounted", online: OnlineShaping | None = None,
                      progress: Callable[[int, int], None] | None = None) -> LearningCurves:
    """Q-learning as ExploRS' code runs it (``agent_Q_learning_tabular``): the ε-greedy policy (ties split
    evenly) acts for whole episodes; every ``update_every`` episodes the last ``recent`` episodes are
    replayed, each backwards, with ``Q(s,a) += α (r̂ + γ max_b Q(s',b) − Q(s,a))`` on the rewards r̂ stored
    when they were received. The metric evaluates the ε-greedy policy (the learner's own).
    """
    from collections import deque

    S, A = mdp.n_states, mdp.n_actions
    Q = np.zeros((runs, S, A))
    sampler = _Sampler(mdp, rng)
    points = _eval_points(episodes, eval_every)
    values = np.zeros((runs, len(points)))
    idx = np.arange(runs)
    buffer: deque[tuple[np.ndarray, ...]] = deque(maxlen=recent)
    if online is not None:
        online.begin(_tied_epsilon_greedy(Q, epsilon))
    k = 0
    for episode in range(episodes + 1):
        pi = _tied_epsilon_greedy(Q, epsilon)  # Q is fixed during an episode
        if episode == points[k]:
            values[:, k] = _metric(mdp, pi, metric)
            k += 1
            if progress is not None:
                progress(episode, episodes)
        if episode == episodes:
            break
        s = sampler.reset(runs)
        alive = np.ones(runs, dtype=bool)
        cum = np.cumsum(pi, -1)
        trace: list[tuple[np.ndarray, ...]] = []
        for _ in range(mdp.horizon):
            a = (cum[idx, s] <= rng.random(runs)[:, None]).sum(-1).clip(max=A - 1)
            s2 = sampler.step(s, a)
            r = reward[s, a]
            if online is not None:
                r = r + online.step_reward(s, a, s2, alive)
            trace.append((s, a, s2, r, alive.copy()))
            alive = alive & ~mdp.terminal[s2]
            s = s2
            if not alive.any():
                break
        st, at, nt, rt, al = (np.stack(x) for x in zip(*trace))
        buffer.append((st, at, nt, rt, al))
        if online is not None:
            online.end_episode(EpisodeBatch(st, at, nt, mdp.R[st, at], al), pi)
        if (episode + 1) % update_every == 0:
            for bs, ba, bn, br, balive in buffer:
                for t in range(len(bs) - 1, -1, -1):  # backwards, as the official update
                    target = br[t] + mdp.gamma * Q[idx, bn[t]].max(-1)
                    Q[idx, bs[t], ba[t]] += np.where(balive[t], alpha * (target - Q[idx, bs[t], ba[t]]), 0.0)
    return LearningCurves(points, values)


def softmax(theta: np.ndarray) -> np.ndarray:
    z = theta - theta.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


#: Seed of the pool of initial REINFORCE policies (fixed: the same "stored" pool for every trial).
POOL_SEED = 2024


def initial_policy_pool(size: int, n_states: int, n_actions: int, scale: float = 2.0) -> np.ndarray:
    """ExpAdaRD's learner pool: ``size`` initial softmax parameter tables θ, ``(size, S, A)``, drawn once
    from N(0, scale²) with :data:`POOL_SEED`: diverse, far-from-uniform starting policies on any task. Not the
    paper's pool: its code's five LINEK policies are mild (one +2 logit each; :func:`paper_linek_pool`)."""
    return np.random.default_rng(POOL_SEED).normal(0.0, scale, size=(size, n_states, n_actions))


#: ``init_pool`` naming the AAMAS'24 code's own LINEK pool (:func:`paper_linek_pool`).
PAPER_POOL = "aamas24"


def paper_linek_pool(mdp: TabularMDP) -> np.ndarray:
    """The five initial REINFORCE policies of the AAMAS'24 code for LINEK (``linekey/learner_population``, made
    by its ``generate_random_policy.py``), ``(5, S, A)``: θ = 0 except a logit of +2 on one (state, action) —
    (key cell, left), (key cell, right), (start, right), (start, pick), (key layer's position 0, pick).

    :raises UserError: ``mdp`` is not LINEK (actions left, right, pick; positions and a key bit)
    """
    if mdp.action_names != ("left", "right", "pick") or mdp.coords is None:
        raise UserError(f"init_pool {PAPER_POOL!r} is the AAMAS'24 pool of LINEK (gridworld/linek); this task is not LINEK")
    pos, key = mdp.coords[:, 0], mdp.coords[:, 1]
    into_key = [s for s in range(mdp.n_states) if key[s] == 0 and mdp.T[s, 2][key == 1].sum() > 0.5]
    start = int(np.argmax(mdp.start))
    key_zero = int(np.flatnonzero((key == 1) & (pos == 0))[0])
    theta = np.zeros((5, mdp.n_states, mdp.n_actions))
    for i, (s, a) in enumerate([(into_key[0], 0), (into_key[0], 1), (start, 1), (start, 2), (key_zero, 2)]):
        theta[i, s, a] = 2.0
    return theta


def reinforce(mdp: TabularMDP, reward: np.ndarray, runs: int, episodes: int, rng: np.random.Generator,
              learning_rate: float = 0.01, update_every: int = 2, recent: int = 5, init_pool: int | str = 0,
              eval_every: int = 1,
              metric: str = "discounted", online: OnlineShaping | None = None,
              progress: Callable[[int, int], None] | None = None) -> LearningCurves:
    """Tabular softmax REINFORCE (Williams 1992) without baseline, ``runs`` learners in lockstep, with
    the schedule of ExploRS' and ExpAdaRD's code: every ``update_every`` episodes (N_p = 2) one
    gradient step on the last ``recent`` episodes (5),

        θ(s_t, ·) += η/n Σ_t Ĝ_t (1{a_t} − π(·|s_t)),

    with ``Ĝ_t = Σ_k γ^k r̂_{t+k}`` the discounted return-to-go of the training reward r̂ (the table
    plus the online shaping term) and n the number of steps in those episodes.

    :param init_pool: 0: every run starts uniform (θ = 0); K > 0: run r starts from the r mod K-th
        policy of :func:`initial_policy_pool` (a seeded stand-in for ExpAdaRD's pool); ``"aamas24"``: run r
        starts from policy (r + 1) mod 5 of :func:`paper_linek_pool` (the paper's code: run ``exp_iter = r + 1``
        takes ``policy_{exp_iter % 5}``)

    :return: the softmax policy's value (see :func:`_metric`)
    """
    from collections import deque

    S, A = mdp.n_states, mdp.n_actions
    theta = np.zeros((runs, S, A))
    if init_pool == PAPER_POOL:
        theta = paper_linek_pool(mdp)[(np.arange(runs) + 1) % 5]
    elif isinstance(init_pool, int) and init_pool > 0:
        theta = initial_policy_pool(init_pool, S, A)[np.arange(runs) % init_pool].copy()
    sampler = _Sampler(mdp, rng)
    points = _eval_points(episodes, eval_every)
    values = np.zeros((runs, len(points)))
    idx = np.arange(runs)
    buffer: deque[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=recent)
    if online is not None:
        online.begin(softmax(theta))
    k = 0
    for episode in range(episodes + 1):
        pi = softmax(theta)  # θ is fixed during an episode
        if episode == points[k]:
            values[:, k] = _metric(mdp, pi, metric)
            k += 1
            if progress is not None:
                progress(episode, episodes)
        if episode == episodes:
            break
        s = sampler.reset(runs)
        alive = np.ones(runs, dtype=bool)
        states, actions, nexts, rewards, alives = [], [], [], [], []
        cum = np.cumsum(pi, -1)
        for _ in range(mdp.horizon):
            a = (cum[idx, s] <= rng.random(runs)[:, None]).sum(-1).clip(max=A - 1)
            s2 = sampler.step(s, a)
            r = reward[s, a]
            if online is not None:
                r = r + online.step_reward(s, a, s2, alive)
            states.append(s)
            actions.append(a)
            nexts.append(s2)
            rewards.append(np.where(alive, r, 0.0))
            alives.append(alive.copy())
            alive = alive & ~mdp.terminal[s2]
            s = s2
            if not alive.any():
                break
        G = np.zeros(runs)
        returns = np.zeros((len(states), runs))
        for t in range(len(states) - 1, -1, -1):
            G = rewards[t] + mdp.gamma * G
            returns[t] = G
        st, at, al = np.stack(states), np.stack(actions), np.stack(alives)
        buffer.append((st, at, returns, al))
        if online is not None:
            online.end_episode(EpisodeBatch(st, at, np.stack(nexts), mdp.R[st, at], al), pi)
        if (episode + 1) % update_every == 0:
            grad = np.zeros((runs, S, A))
            steps = np.zeros(runs)
            for bs, ba, bG, balive in buffer:
                w = np.where(balive, bG, 0.0)  # (T, N)
                run = np.broadcast_to(idx, bs.shape)
                np.add.at(grad, (run, bs, ba), w)
                np.add.at(grad, (run, bs), -w[..., None] * pi[run, bs])
                steps += balive.sum(0)
            theta += learning_rate * grad / np.maximum(steps, 1.0)[:, None, None]
    return LearningCurves(points, values)


# -- the trainer -----------------------------------------------------------------------------------
def program_table(card: EnvCard, program: RewardProgram, mdp: TabularMDP) -> np.ndarray:
    """A reward program evaluated on every (state, action) of a tabular task, ``(S, A)`` (one batched
    call: the program sees B = S·A states)."""
    S, A = mdp.n_states, mdp.n_actions
    extractor = StateExtractor(card, fields_used_by(card, program.source))
    obs = np.repeat(np.arange(S), A).astype(np.int64)
    actions = np.tile(np.arange(A), S).astype(np.int64)
    flat = extractor.batch(obs[:, None].astype(np.float64), None)
    total, _ = program.bind(card)(extractor.view(flat, obs), actions)
    return np.asarray(total, dtype=np.float64).reshape(S, A)


class TabularTrainer:
    """The thesis' tabular learners (registered as ``tabular``); see the module docstring."""

    name = "tabular"
    algorithms = ALGORITHMS

    def settings(self, config: TrainConfig) -> dict[str, Any]:
        """The algorithm's hyperparameters: defaults, then the config's overrides.

        :raises UserError: an unknown key or a meaningless value
        """
        params = {**COMMON, **DEFAULTS[config.algo]}
        unknown = set(config.overrides) - set(params)
        if unknown:
            raise UserError(f"the tabular trainer's {config.algo} takes {', '.join(sorted(params))}, not "
                            f"{', '.join(sorted(unknown))}")
        params.update(config.overrides)
        if not isinstance(params["runs"], int) or params["runs"] < 1:
            raise UserError(f"hyperparameter runs must be a whole number >= 1, got {params['runs']!r}")
        if not isinstance(params["eval_every"], int) or params["eval_every"] < 1:
            raise UserError(f"hyperparameter eval_every must be a whole number >= 1, got {params['eval_every']!r}")
        if params["metric"] not in METRICS:
            raise UserError(f"hyperparameter metric must be one of {', '.join(METRICS)}, got {params['metric']!r}")
        if config.algo in ("qlearning", "qlearning-replay"):
            if not 0.0 <= float(params["epsilon"]) <= 1.0:
                raise UserError(f"hyperparameter epsilon must be in [0, 1], got {params['epsilon']}")
            if not 0.0 < float(params["alpha"]) <= 1.0:
                raise UserError(f"hyperparameter alpha must be in (0, 1], got {params['alpha']}")
        if config.algo in ("reinforce", "qlearning-replay"):
            for key in ("update_every", "recent"):
                if not isinstance(params[key], int) or params[key] < 1:
                    raise UserError(f"hyperparameter {key} must be a whole number >= 1, got {params[key]!r}")
        if config.algo == "reinforce":
            if float(params["learning_rate"]) <= 0.0:
                raise UserError(f"hyperparameter learning_rate must be positive, got {params['learning_rate']}")
            for key in ("update_every", "recent"):
                if not isinstance(params[key], int) or params[key] < 1:
                    raise UserError(f"hyperparameter {key} must be a whole number >= 1, got {params[key]!r}")
            pool = params["init_pool"]
            if pool != PAPER_POOL and (not isinstance(pool, int) or isinstance(pool, bool) or pool < 0):
                raise UserError(f"hyperparameter init_pool must be a whole number >= 0 or {PAPER_POOL!r}, got {pool!r}")
        if params["target"] is not None and not isinstance(params["target"], int | float):
            raise UserError(f"hyperparameter target must be a number, got {params['target']!r}")
        return params

    def validate(self, card: EnvCard, config: TrainConfig) -> None:
        if "tabular_model" not in get_simulator(card.simulator).capabilities(card):
            raise UserError(f"the tabular trainer needs a task with a tabular model; {card.id} has none "
                            "(use trainer sb3)")
        self.settings(config)

    def train(self, card: EnvCard, reward: ResolvedReward, config: TrainConfig, run_dir: Path,
              callbacks: Sequence[Any] = (), progress: Callable[[int, int], None] | None = None,
              check: bool = True) -> TrialResult:
        """Train ``runs`` learners for ``budget.steps`` episodes; write ``curves.npz``, ``result.json``
        and what the shaper designed into ``run_dir``."""
        limit_threads()
        start = time.perf_counter()
        run_dir = Path(run_dir)
        self.validate(card, config)
        if callbacks:
            raise UserError("the tabular trainer takes no SB3 callbacks")
        params = self.settings(config)
        mdp = tabular_model(card)
        base = reward.base if isinstance(reward, ShapedReward) else reward
        program = base if isinstance(base, RewardProgram) else None
        if program is not None:
            (run_dir / "reward.py").write_text(program.source)
            if check:
                from rewardlab.checks import check_program

                check_program(program, card, seed=config.seed).raise_if_failed()
            table = program_table(card, program, mdp)
        else:
            assert isinstance(base, NativeReward)
            table = mdp.R.copy()
        shaper: Shaper | None = None
        online = None
        rng = np.random.default_rng(config.seed)
        if isinstance(reward, ShapedReward):
            shaper = make_shaper(reward.shaper.name, reward.shaper.params, card, mdp.gamma,
                                 get_simulator(card.simulator).capabilities(card))
            designed = shaper.tabular_reward(mdp)
            if designed is not None:
                table = designed if shaper.mode == "replace" else table + designed
            else:
                online = shaper.online(mdp, params["runs"], np.random.default_rng([config.seed, 1]))
                if online is None:
                    raise UserError(f"shaper {reward.shaper.name!r} gives neither a reward table nor online shaping "
                                    "for tabular learners")
                if shaper.mode == "replace":  # the online term is the whole reward (ExpAdaRD)
                    table = np.zeros_like(table)
            shaper.write_artifacts(run_dir)
        episodes = config.budget.steps
        common = {"runs": params["runs"], "episodes": episodes, "rng": rng, "eval_every": params["eval_every"],
                  "metric": params["metric"], "online": online, "progress": progress}
        if config.algo == "qlearning-replay":
            curves = replay_q_learning(mdp, table, epsilon=float(params["epsilon"]), alpha=float(params["alpha"]),
                                       update_every=int(params["update_every"]), recent=int(params["recent"]),
                                       **common)
        elif config.algo == "qlearning":
            curves = q_learning(mdp, table, epsilon=float(params["epsilon"]), alpha=float(params["alpha"]),
                                q0=float(params["q0"]), **common)
        else:
            curves = reinforce(mdp, table, learning_rate=float(params["learning_rate"]),
                               update_every=int(params["update_every"]), recent=int(params["recent"]),
                               init_pool=params["init_pool"], **common)
        optimum = self.optimum(mdp, params["metric"])
        target = float(params["target"]) if params["target"] is not None else 0.9 * optimum
        np.savez_compressed(run_dir / "curves.npz", episodes=curves.episodes, values=curves.values.astype(np.float32),
                            optimum=optimum, target=target)
        mean = curves.values.mean(0)
        shown = self._shown_points(curves.episodes)
        curve = [CurvePoint(step=int(curves.episodes[i]), return_env=float(mean[i])) for i in shown]
        final = curves.values[:, -1]
        result = TrialResult(curve=curve, eval=EvalResult(env_return=[float(v) for v in final],
                                                          program_return=[None] * len(final),
                                                          success=[None] * len(final), length=[0] * len(final),
                                                          components=[{} for _ in final]),
                             wall_s=time.perf_counter() - start, steps=episodes, model_path=str(run_dir / "curves.npz"),
                             reward_sha256=program.sha256 if program is not None else None, trainer=self.name,
                             algo=config.algo)
        (run_dir / "result.json").write_text(result.to_json(indent=1))
        return result

    @staticmethod
    def optimum(mdp: TabularMDP, metric: str) -> float:
        """The optimal policy's value under the metric (V*(ρ₀), or its horizon return)."""
        pi, _ = mdp.optimal_policy()
        return float(_metric(mdp, pi[None], metric)[0])

    @staticmethod
    def _shown_points(episodes: np.ndarray) -> list[int]:
        """Indices of log2-spaced evaluation points (the store keeps the curve small; ``curves.npz``
        keeps every point)."""
        marks = {0, int(episodes[-1])} | {2 ** k for k in range(0, 63) if 2 ** k <= episodes[-1]}
        return [i for i, e in enumerate(episodes) if int(e) in marks or i == len(episodes) - 1]
