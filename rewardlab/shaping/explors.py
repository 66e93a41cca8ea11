"""ExploRS: exploration-guided reward shaping (Devidze, Kamalaruban & Singla, NeurIPS 2022), tabular,
with its baselines EXPLOB (the bonus alone) and SELFRS (the learned reward alone).

No model and no expert: the learner trains on (research note §4)

    R̂(s, a, s') = R̄(s, a) + R^exploit_φ(s, a) + R^explore(s')

- **exploration bonus** ``R^explore(s') = λ / √((λ/B_max)² + N(ψ(s')))``, λ = B_max = 1, zero at the
  absorbing state; N counts the states the learner acted in (ψ is the identity on tabular tasks);
- **exploitation reward** φ (a table), every N_r = 5 episodes a meta-gradient step on the last 10
  episodes, with Ḡ_t the discounted *original* return and V a critic of Ḡ:

      φ ← φ + η_φ Σ_t π(a_t|s_t) (Ḡ_t − V(s_t)) [1{a_t} − π(·|s_t)]   (the gradient of R_φ(s_t,a_t) − Σ_b π(b|s_t) R_φ(s_t,b))
      V(s) ← V(s) + η_V · mean_t (Ḡ_t − V(s_t)) over the steps in s

  with η_φ = η_V = 0.01. π(·|s_t) is the learner's policy when it acted.

Deviations: the counts are not advanced by evaluation rollouts (the official code evaluates through
the shaped env; here evaluation is exact, from the model); vectorised over runs (each run has its own
counts, φ and V).

**Neural ExploRS** (``{name: explors, neural: true}``, :class:`NeuralExplorationGuidedShaping`) is the
same method for an SB3 on-policy learner (PPO, A2C), on any observation space (research note, "ExploRS
in SB3"): ``R_φ(s, a) = 0.1·tanh(MLP[256](s, a))`` (Adam 1e-3), a critic ``V(s)`` of Ḡ (MLP[256], Adam
5e-3), and every N_r = 20 finished episodes one step on the last 10 of

    loss_φ = −mean_t π(a_t|s_t) (Ḡ_t − V(s_t)) [R_φ(s_t, a_t) − E_{b∼π(·|s_t)} R_φ(s_t, b)]

(the gradient flows through R_φ only) and one step on ``mean_t (V(s_t) − Ḡ_t)²``. Counts N are over ψ:
the task's abstraction where its simulator has one (``linek-continuous``: 20 x-bins × key), the state
index on other ``Discrete`` observations, else the observation floored to a ``count_resolution`` grid.
Deviations, labelled: π(·|s_t) is the learner's policy at the update, not when it acted (PPO changes it
once per rollout); with continuous actions E_b is a mean over ``samples`` actions drawn from π and the
weight π(a_t|s_t) is 1 (a density is not a probability); the warm-up (learned reward not added for the
first ``warmup`` episodes, while φ and V already learn) defaults to 100 episodes, not the paper's 5,000,
for CPU-sized runs; off-policy learners (DQN, SAC, TD3) are refused, since the meta-gradient assumes the
rewarded policy is the one that acted. At the end of training R_φ's and V's weights are saved in the trial
directory as ``explors_weights.pt`` (:func:`load_neural_explors` rebuilds both nets).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.shaping.base import ActionMemoryVecEnv, Shaper, TabularOnlyShaper
from rewardlab.sims.tabular import TabularMDP
from rewardlab.state import StateExtractor

#: The official code's teacher settings (``parameters.py``: chain and four-room alike).
DEFAULTS: dict[str, Any] = {"bonus_lambda": 1.0, "bonus_max": 1.0, "eta_phi": 0.01, "eta_critic": 0.01,
                            "update_every": 5, "buffer": 10, "clip": None}


class ExplorationGuidedOnline:
    """ExploRS' state during training, vectorised over ``runs`` (see the module docstring).

    :param mdp: the task (sizes, γ, R̄, absorbing states)
    :param runs: independent learners
    :param explore: add the exploration bonus
    :param exploit: add and learn the exploitation reward φ
    """

    def __init__(self, mdp: TabularMDP, runs: int, explore: bool, exploit: bool, bonus_lambda: float = 1.0,
                 bonus_max: float = 1.0, eta_phi: float = 0.01, eta_critic: float = 0.01, update_every: int = 5,
                 buffer: int = 10, clip: float | None = None):
        self.mdp = mdp
        self.explore, self.exploit = explore, exploit
        self.lam, self.bmax = bonus_lambda, bonus_max
        self.eta_phi, self.eta_critic = eta_phi, eta_critic
        self.update_every = update_every
        self.clip = clip
        self.counts = np.zeros((runs, mdp.n_states))
        self.phi = np.zeros((runs, mdp.n_states, mdp.n_actions))
        self.V = np.zeros((runs, mdp.n_states))
        self.buffer: deque[tuple[np.ndarray, ...]] = deque(maxlen=buffer)
        self.episodes = 0
        self._run = np.arange(runs)

    def exploration_bonus(self, next_states: np.ndarray) -> np.ndarray:
        """``R^explore(s')`` per run, ``(N,)``."""
        n = self.counts[self._run, next_states]
        bonus = self.lam / np.sqrt((self.lam / self.bmax) ** 2 + n)
        return np.where(self.mdp.terminal[next_states], 0.0, bonus)

    def begin(self, policy: np.ndarray) -> None:
        """Nothing to do before the first episode."""

    def step_reward(self, states: np.ndarray, actions: np.ndarray, next_states: np.ndarray,
                    alive: np.ndarray) -> np.ndarray:
        r = np.zeros(len(states))
        if self.explore:
            r += self.exploration_bonus(next_states)
            self.counts[self._run, states] += alive  # after the bonus, as the official step()
        if self.exploit:
            r += self.phi[self._run, states, actions]
        return np.where(alive, r, 0.0)

    def end_episode(self, batch: Any, policy: np.ndarray) -> None:
        """Buffer the episode with Ḡ_t and π(·|s_t); every ``update_every`` episodes, update φ and V."""
        if not self.exploit:
            return
        G = np.zeros(batch.rewards.shape[1])
        G_bar = np.zeros(batch.rewards.shape)
        for t in range(len(G_bar) - 1, -1, -1):
            G = np.where(batch.alive[t], batch.rewards[t], 0.0) + self.mdp.gamma * G
            G_bar[t] = G
        run = np.broadcast_to(self._run, batch.states.shape)
        self.buffer.append((batch.states, batch.actions, G_bar, batch.alive, policy[run, batch.states]))
        self.episodes += 1
        if self.episodes % self.update_every == 0:
            self.update()

    def update(self) -> None:
        """The meta-gradient step on φ and the critic step on V over the buffered episodes."""
        grad = np.zeros_like(self.phi)
        critic = np.zeros_like(self.V)
        steps = np.zeros(len(self._run))
        for states, actions, G_bar, alive, probs in self.buffer:
            run = np.broadcast_to(self._run, states.shape)
            advantage = np.where(alive, G_bar - self.V[run, states], 0.0)  # Ḡ_t − V(s_t), V before the update
            pi_a = np.take_along_axis(probs, actions[..., None], -1)[..., 0]
            w = pi_a * advantage
            np.add.at(grad, (run, states, actions), w)
            np.add.at(grad, (run, states), -w[..., None] * probs)
            np.add.at(critic, (run, states), advantage)
            steps += alive.sum(0)
        self.phi += self.eta_phi * grad
        if self.clip is not None:  # the official code clips φ to ±0.01 with Q-learning
            np.clip(self.phi, -self.clip, self.clip, out=self.phi)
        self.V += self.eta_critic * critic / np.maximum(steps, 1.0)[:, None]


class ExplorationGuidedShaping(TabularOnlyShaper):
    """ExploRS as a shaper (registered ``explors``): bonus plus learned exploitation reward, added to
    the env's reward, for the tabular learners (ψ = identity). With ``neural: true`` the shaper is
    :class:`NeuralExplorationGuidedShaping`, for SB3 on-policy learners.

    :param params: ``bonus_lambda``, ``bonus_max``, ``eta_phi``, ``eta_critic``, ``update_every``
        (N_r), ``buffer``, ``clip`` (bound on |φ|; the official code uses 0.01 with Q-learning) (see
        :data:`DEFAULTS`)
    """

    name = "explors"
    mode = "additive"
    requires = frozenset({"tabular_model"})
    explore: ClassVar[bool] = True
    exploit: ClassVar[bool] = True

    @classmethod
    def for_params(cls, params: dict[str, Any]) -> type[Shaper]:
        neural = params.get("neural", False)
        if not isinstance(neural, bool):
            raise UserError(f"shaper {cls.name!r}: neural must be true or false, got {neural!r}")
        return _NEURAL[cls.name] if neural else cls

    @classmethod
    def learner_problem(cls, trainer: str, algo: str) -> str | None:
        if trainer == "tabular":
            return None
        return (f"shaper {cls.name!r} runs with the tabular trainer only (trainer: tabular); for an SB3 "
                f"learner (ppo) give it neural: true")

    def wrap(self, venv: VecEnv, extractor: StateExtractor) -> VecEnv:
        raise UserError(type(self).learner_problem("sb3", "") or "")

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        params = {k: v for k, v in params.items() if k != "neural"}  # neural: false is the tabular variant
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise UserError(f"shaper {self.name!r} takes {', '.join(sorted(DEFAULTS))}, not {', '.join(sorted(unknown))}"
                            + (" (those are the neural variant's: add neural: true)" if unknown <= set(NEURAL_DEFAULTS) else ""))
        self.settings = {**DEFAULTS, **params}
        for key in ("bonus_lambda", "bonus_max"):
            if float(self.settings[key]) <= 0:
                raise UserError(f"shaper {self.name!r}: {key} must be positive, got {self.settings[key]}")
        for key in ("update_every", "buffer"):
            if not isinstance(self.settings[key], int) or self.settings[key] < 1:
                raise UserError(f"shaper {self.name!r}: {key} must be a whole number >= 1, got {self.settings[key]!r}")
        clip = self.settings["clip"]
        if clip is not None and (not isinstance(clip, int | float) or clip <= 0):
            raise UserError(f"shaper {self.name!r}: clip must be a positive number or null, got {clip!r}")

    def online(self, mdp: TabularMDP, runs: int, rng: np.random.Generator) -> ExplorationGuidedOnline:
        return ExplorationGuidedOnline(mdp, runs, explore=self.explore, exploit=self.exploit, **self.settings)


class ExplorationBonus(ExplorationGuidedShaping):
    """EXPLOB: ExploRS' count-based exploration bonus alone (registered ``explob``)."""

    name = "explob"
    exploit = False


class SelfRewardShaping(ExplorationGuidedShaping):
    """SELFRS: ExploRS' learned exploitation reward alone (registered ``selfrs``)."""

    name = "selfrs"
    explore = False


# -- neural ExploRS, for SB3 on-policy learners --------------------------------------------------------------

#: Neural ExploRS' settings (research note §4 and "ExploRS in SB3"); ``warmup`` is CPU-sized (paper: 5,000).
NEURAL_DEFAULTS: dict[str, Any] = {"bonus_lambda": 1.0, "bonus_max": 1.0, "lr_reward": 1e-3, "lr_critic": 5e-3,
                                   "hidden": 256, "reward_scale": 0.1, "update_every": 20, "buffer": 10,
                                   "warmup": 100, "samples": 8, "count_resolution": 0.1}

#: The file in a trial directory that keeps neural ExploRS' nets (:func:`load_neural_explors`).
WEIGHTS_NAME = "explors_weights.pt"
#: The sb3 trainer's on-policy algorithms, the ones neural ExploRS' and SELFRS' meta-gradient fits (``reinforce``:
#: rewardlab.training.reinforce, not the tabular trainer's).
ON_POLICY = ("ppo", "reinforce")

#: The policy's action distribution on a batch of raw observations (a ``torch.distributions`` object:
#: ``Categorical`` for discrete actions, one with ``sample`` for continuous ones).
PolicyDistribution = Callable[[np.ndarray], Any]


def exploration_bonus(counts: np.ndarray | int, lam: float = 1.0, bmax: float = 1.0) -> np.ndarray:
    """``R^explore = λ / √((λ/B_max)² + N)`` for visit counts ``N`` (any shape)."""
    return lam / np.sqrt((lam / bmax) ** 2 + np.asarray(counts, dtype=np.float64))


class ExploitationReward(torch.nn.Module):
    """``R_φ(s, a) = scale·tanh(MLP(s, a))``, one hidden layer of ``hidden`` units: with ``n_actions``
    (discrete) the net maps s to one value per action; otherwise it maps (s, a) to one value.

    :param features: width of the preprocessed observation (one-hot for ``Discrete``)
    :param n_actions: discrete action count, or None
    :param action_dim: width of a continuous action (ignored with ``n_actions``)
    """

    def __init__(self, features: int, n_actions: int | None, action_dim: int, hidden: int, scale: float):
        super().__init__()
        self.n_actions, self.scale = n_actions, scale
        inputs = features if n_actions is not None else features + action_dim
        self.net = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, n_actions if n_actions is not None else 1))

    def all_actions(self, x: torch.Tensor) -> torch.Tensor:
        """``R_φ(s, ·)`` ``(T, A)`` (discrete actions)."""
        return self.scale * torch.tanh(self.net(x))

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``R_φ(s_t, a_t)`` ``(T,)``; ``a``: indices ``(T,)`` or actions ``(T, d)``."""
        if self.n_actions is not None:
            return self.all_actions(x).gather(1, a.long().reshape(-1, 1))[:, 0]
        return self.scale * torch.tanh(self.net(torch.cat([x, a.reshape(len(x), -1).float()], 1)))[:, 0]


class NeuralExploRS:
    """Neural ExploRS' state: counts over ψ, R_φ, the critic V and the buffered episodes (module docstring).

    :param observation_space: the training env's (raw, before any ``VecNormalize``)
    :param action_space: ``Discrete`` or ``Box``
    :param psi: abstract cell per state index (``Discrete`` observations), or None
    :param gamma: discount of Ḡ
    :param seed: seeds the nets' initialisation
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, gamma: float,
                 settings: dict[str, Any], psi: np.ndarray | None = None, explore: bool = True, exploit: bool = True,
                 seed: int = 0):
        self.observation_space, self.action_space = observation_space, action_space
        self.gamma, self.psi, self.explore, self.exploit = gamma, psi, explore, exploit
        self.s = settings
        self.discrete = isinstance(action_space, spaces.Discrete)
        features = int(observation_space.n) if isinstance(observation_space, spaces.Discrete) else \
            int(np.prod(observation_space.shape or (1,)))
        self.n_features = features
        self.reseed(seed)
        self.counts: dict[Any, int] = {}
        self.buffer: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=int(settings["buffer"]))
        self.episodes = 0
        self.updates = 0
        self.pending = False

    def reseed(self, seed: int) -> None:
        """(Re)initialise R_φ, V and their optimisers from ``seed`` (the trial's, once the learner exists)."""
        settings, hidden = self.s, int(self.s["hidden"])
        with torch.random.fork_rng():  # the learner's own RNG stream stays as it was
            torch.manual_seed(seed)
            self.reward = ExploitationReward(self.n_features, int(self.action_space.n) if self.discrete else None,  # type: ignore[attr-defined]
                                             int(np.prod(self.action_space.shape or (1,))), hidden,
                                             float(settings["reward_scale"]))
            self.critic = torch.nn.Sequential(torch.nn.Linear(self.n_features, hidden), torch.nn.ReLU(),
                                              torch.nn.Linear(hidden, 1))
        self.reward_opt = torch.optim.Adam(self.reward.parameters(), lr=float(settings["lr_reward"]))
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=float(settings["lr_critic"]))

    # -- the two reward terms ----------------------------------------------------------------------------
    def cell(self, obs: Any) -> Any:
        """ψ(s) of one raw observation (a hashable key)."""
        if isinstance(self.observation_space, spaces.Discrete):
            s = int(np.asarray(obs).reshape(-1)[0])
            return int(self.psi[s]) if self.psi is not None else s
        return np.floor(np.asarray(obs, dtype=np.float64).reshape(-1) / float(self.s["count_resolution"])).astype(
            np.int64).tobytes()

    def bonus(self, next_obs: Any, terminal: bool) -> float:
        """``R^explore(s')`` before counting; 0 at a terminal state."""
        if terminal:
            return 0.0
        return float(exploration_bonus(self.counts.get(self.cell(next_obs), 0), float(self.s["bonus_lambda"]),
                                       float(self.s["bonus_max"])))

    def count(self, obs: Any) -> None:
        """Count the state the learner acted in (after its step's bonus, as the tabular ExploRS)."""
        key = self.cell(obs)
        self.counts[key] = self.counts.get(key, 0) + 1

    def features(self, obs: np.ndarray) -> torch.Tensor:
        """Preprocessed observations ``(T, F)`` (one-hot for ``Discrete``)."""
        x = torch.as_tensor(np.asarray(obs))
        if isinstance(self.observation_space, spaces.Discrete):
            x = x.reshape(-1).long()
        else:
            x = x.reshape(-1, *(self.observation_space.shape or ()))
        out = preprocess_obs(x, self.observation_space)
        assert isinstance(out, torch.Tensor), "dict observations are not supported"
        return out.float().reshape(len(x), -1)

    def learned(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``R_φ(s, a)`` ``(N,)``; zero during the warm-up or without the exploitation term."""
        if not self.exploit or self.episodes < int(self.s["warmup"]):
            return np.zeros(len(obs))
        with torch.no_grad():
            return self.reward(self.features(obs), torch.as_tensor(np.asarray(actions))).numpy().astype(np.float64)

    # -- episodes and the meta-gradient ------------------------------------------------------------------
    def end_episode(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Buffer one finished episode with Ḡ_t, the discounted original return from t; flag an update
        every ``update_every`` episodes."""
        G = np.zeros(len(rewards))
        acc = 0.0
        for t in range(len(rewards) - 1, -1, -1):
            acc = float(rewards[t]) + self.gamma * acc
            G[t] = acc
        self.buffer.append((obs, actions, G))
        self.episodes += 1
        if self.exploit and self.episodes % int(self.s["update_every"]) == 0:
            self.pending = True

    def update(self, distribution: PolicyDistribution) -> dict[str, float]:
        """One step on R_φ (the meta-gradient loss) and one on V over the buffered episodes.

        :param distribution: the learner's π(·|s) on raw observations
        :return: the two losses
        """
        self.pending = False
        obs = np.concatenate([b[0] for b in self.buffer])
        actions = np.concatenate([b[1] for b in self.buffer])
        G = torch.as_tensor(np.concatenate([b[2] for b in self.buffer]), dtype=torch.float32)
        x = self.features(obs)
        a = torch.as_tensor(actions)
        with torch.no_grad():
            advantage = G - self.critic(x)[:, 0]  # V before its update
            dist = distribution(obs)
        if self.discrete:
            probs = dist.probs.detach().reshape(len(x), -1)
            r_all = self.reward.all_actions(x)
            r_a = r_all.gather(1, a.long().reshape(-1, 1))[:, 0]
            expected = (probs * r_all).sum(1)
            weight = probs.gather(1, a.long().reshape(-1, 1))[:, 0]
        else:  # E_b by sampling; weight 1 (a deviation, see the module docstring)
            r_a = self.reward(x, a)
            with torch.no_grad():
                b = dist.sample((int(self.s["samples"]),))  # (K, T, d)
            expected = torch.stack([self.reward(x, bk) for bk in b]).mean(0)
            weight = torch.ones(len(x))
        loss = -(weight * advantage * (r_a - expected)).mean()
        self.reward_opt.zero_grad()
        loss.backward()
        self.reward_opt.step()
        critic_loss = ((self.critic(x)[:, 0] - G) ** 2).mean()
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        self.updates += 1
        return {"meta_loss": float(loss.detach()), "critic_loss": float(critic_loss.detach())}


class NeuralExploRSVecEnv(ActionMemoryVecEnv):
    """Adds ``R^explore(s') + R_φ(s, a)`` to the reward; ``info["unshaped_reward"]`` keeps the reward
    before, ``info["explore_bonus"]`` and ``info["exploit_reward"]`` the two terms. The meta-gradient
    update is run by :class:`NeuralExploRSCallback` (it needs the learner's policy).

    :param venv: the training env (raw observations)
    :param state: the shaper's state
    """

    def __init__(self, venv: VecEnv, state: NeuralExploRS):
        super().__init__(venv)
        self.state = state
        self._obs: np.ndarray | None = None
        self._episodes: list[tuple[list[Any], list[Any], list[float]]] = [([], [], []) for _ in range(self.num_envs)]

    def reset(self) -> Any:
        self._obs = np.asarray(self.venv.reset())
        self._episodes = [([], [], []) for _ in range(self.num_envs)]
        return self._obs

    def step_wait(self) -> Any:
        obs, reward, dones, infos = self.venv.step_wait()
        obs = np.asarray(obs)
        st = self.state
        assert self._obs is not None, "step before reset"
        before = self._obs
        exploit = st.learned(before, self.actions)  # with the reward of the episodes so far
        bonus = np.zeros(self.num_envs)
        for i in range(self.num_envs):
            if st.explore:
                nxt = infos[i].get("terminal_observation", obs[i]) if dones[i] else obs[i]
                terminal = bool(dones[i]) and not infos[i].get("TimeLimit.truncated", False)
                bonus[i] = st.bonus(nxt, terminal)
                st.count(before[i])
            infos[i]["unshaped_reward"] = float(reward[i])
            infos[i]["explore_bonus"] = float(bonus[i])
            infos[i]["exploit_reward"] = float(exploit[i])
            o, a, r = self._episodes[i]
            o.append(before[i])
            a.append(self.actions[i])
            r.append(float(reward[i]))
            if dones[i]:
                st.end_episode(np.stack(o), np.stack(a), np.asarray(r))
                self._episodes[i] = ([], [], [])
        self._obs = obs
        return obs, (np.asarray(reward, dtype=np.float64) + bonus + exploit).astype(np.float32), dones, infos


def sb3_distribution(model: Any) -> PolicyDistribution:
    """π(·|s) of an SB3 on-policy model on raw observations (normalised first where it trains on
    ``VecNormalize``)."""
    normalizer = model.get_vec_normalize_env()

    def distribution(obs: np.ndarray) -> Any:
        o = normalizer.normalize_obs(obs) if isinstance(normalizer, VecNormalize) else obs
        tensor, _ = model.policy.obs_to_tensor(o)
        return model.policy.get_distribution(tensor).distribution

    return distribution


class NeuralExploRSCallback(BaseCallback):
    """Runs neural ExploRS' meta-gradient update after the vector step that finished the N_r-th episode,
    with the learner's current policy; refuses off-policy learners."""

    def __init__(self, env: NeuralExploRSVecEnv):
        super().__init__()
        self.env = env
        self.losses: list[dict[str, float]] = []

    def _init_callback(self) -> None:
        from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

        if self.env.state.exploit and not isinstance(self.model, OnPolicyAlgorithm):
            raise UserError(f"shaper 'explors' with neural: true needs an on-policy learner (ppo or reinforce); "
                            f"{type(self.model).__name__.lower()} learns off-policy, which its meta-gradient does not fit")
        self._distribution = sb3_distribution(self.model)
        if self.model.seed is not None and self.env.state.updates == 0:
            self.env.state.reseed(int(self.model.seed))

    def _on_step(self) -> bool:
        if self.env.state.pending:
            self.losses.append(self.env.state.update(self._distribution))
            for key, value in self.losses[-1].items():
                self.logger.record(f"explors/{key}", value)
        return True


class NeuralExplorationGuidedShaping(Shaper):
    """Neural ExploRS for SB3 on-policy learners (``{name: explors, neural: true}``; module docstring).

    :param params: ``neural: true`` and any of :data:`NEURAL_DEFAULTS`: ``bonus_lambda``, ``bonus_max``,
        ``lr_reward``, ``lr_critic``, ``hidden`` (units of the one hidden layer), ``reward_scale`` (the
        bound on |R_φ|), ``update_every`` (N_r, episodes), ``buffer`` (episodes per update),
        ``warmup`` (episodes before R_φ is added), ``samples`` (actions drawn for E_b, continuous
        actions), ``count_resolution`` (grid of the counts on ``Box`` observations)
    :raises UserError: an unknown parameter or a meaningless value
    """

    name = "explors"
    mode = "additive"
    requires = frozenset()
    explore: ClassVar[bool] = True
    exploit: ClassVar[bool] = True

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        given = {k: v for k, v in params.items() if k != "neural"}
        unknown = set(given) - set(NEURAL_DEFAULTS)
        if unknown:
            raise UserError(f"shaper {self.name!r} (neural) takes {', '.join(sorted(NEURAL_DEFAULTS))}, "
                            f"not {', '.join(sorted(unknown))}")
        self.settings = {**NEURAL_DEFAULTS, **given}
        for key in ("bonus_lambda", "bonus_max", "lr_reward", "lr_critic", "reward_scale", "count_resolution"):
            value = self.settings[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise UserError(f"shaper {self.name!r}: {key} must be a positive number, got {value!r}")
        for key, least in (("hidden", 1), ("update_every", 1), ("buffer", 1), ("samples", 1), ("warmup", 0)):
            value = self.settings[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UserError(f"shaper {self.name!r}: {key} must be a whole number >= {least}, got {value!r}")
        self.env: NeuralExploRSVecEnv | None = None

    def psi(self) -> np.ndarray | None:
        """The task's abstraction (abstract cell per state index) where its simulator has one."""
        from rewardlab.sims.base import get_simulator

        adapter = get_simulator(self.card.simulator)
        if "abstraction" not in adapter.capabilities(self.card) or not hasattr(adapter, "abstraction"):
            return None
        phi, _ = adapter.abstraction(self.card)
        return np.asarray(phi)

    def make_state(self, venv: VecEnv, seed: int = 0) -> NeuralExploRS:
        return NeuralExploRS(venv.observation_space, venv.action_space, self.gamma, self.settings, self.psi(),
                             explore=self.explore, exploit=self.exploit, seed=seed)

    def wrap(self, venv: VecEnv, extractor: StateExtractor) -> VecEnv:
        if not isinstance(venv.observation_space, spaces.Discrete | spaces.Box):
            raise UserError(f"shaper {self.name!r} with neural: true needs Discrete or Box observations; "
                            f"{self.card.id} has {type(venv.observation_space).__name__}")
        self.env = NeuralExploRSVecEnv(venv, self.make_state(venv))
        return self.env

    def callbacks(self) -> list[Any]:
        return [NeuralExploRSCallback(self.env)] if self.env is not None else []

    def write_artifacts(self, run_dir: Path) -> list[Path]:
        """``explors_weights.pt``: R_φ's and the critic's ``state_dict`` and what rebuilds them (written when the
        learner is built and again at the end of training); load it with :func:`load_neural_explors`."""
        if self.env is None:
            return []
        st = self.env.state
        path = Path(run_dir) / WEIGHTS_NAME
        torch.save({"reward": st.reward.state_dict(), "critic": st.critic.state_dict(), "shaper": self.name,
                    "features": st.n_features,
                    "n_actions": int(st.action_space.n) if st.discrete else None,  # type: ignore[attr-defined]
                    "action_dim": int(np.prod(st.action_space.shape or (1,))),
                    "hidden": int(st.s["hidden"]), "reward_scale": float(st.s["reward_scale"]),
                    "episodes": st.episodes, "updates": st.updates}, path)
        return [path]

    @classmethod
    def learner_problem(cls, trainer: str, algo: str) -> str | None:
        if trainer != "sb3":
            return (f"shaper {cls.name!r} with neural: true runs with the sb3 trainer (ppo or its reinforce); "
                    "drop neural for the tabular trainer")
        if cls.exploit and algo not in ON_POLICY:  # the count bonus alone (explob) fits any learner
            return (f"shaper {cls.name!r} with neural: true needs an on-policy learner (ppo or reinforce); {algo} learns "
                    "off-policy, which its meta-gradient does not fit")
        return None

    def online(self, mdp: TabularMDP, runs: int, rng: np.random.Generator) -> Any:
        raise UserError(type(self).learner_problem("tabular", "") or "")


class NeuralExplorationBonus(NeuralExplorationGuidedShaping):
    """EXPLOB for SB3 learners (``{name: explob, neural: true}``): the count bonus alone, no nets trained."""

    name = "explob"
    exploit = False


class NeuralSelfRewardShaping(NeuralExplorationGuidedShaping):
    """SELFRS for SB3 learners (``{name: selfrs, neural: true}``): the learned R_φ alone."""

    name = "selfrs"
    explore = False


def load_neural_explors(path: Path | str) -> tuple[ExploitationReward, torch.nn.Module, dict[str, Any]]:
    """R_φ, the critic V and the saved metadata (``episodes``, ``updates``, ``shaper``, sizes) from a trial's
    ``explors_weights.pt`` (:meth:`NeuralExplorationGuidedShaping.write_artifacts`). The nets take
    preprocessed observations (one-hot for ``Discrete``), as :meth:`NeuralExploRS.features` makes them.

    :raises UserError: the file is missing or not such a file
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file (neural ExploRS writes {WEIGHTS_NAME} into its trial directory)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        reward = ExploitationReward(saved["features"], saved["n_actions"], saved["action_dim"], saved["hidden"],
                                    saved["reward_scale"])
        reward.load_state_dict(saved["reward"])
        critic = torch.nn.Sequential(torch.nn.Linear(saved["features"], saved["hidden"]), torch.nn.ReLU(),
                                     torch.nn.Linear(saved["hidden"], 1))
        critic.load_state_dict(saved["critic"])
    except (KeyError, RuntimeError, TypeError, ValueError, EOFError) as e:
        raise UserError(f"{path}: not a neural ExploRS weights file ({e})") from None
    meta = {k: v for k, v in saved.items() if k not in ("reward", "critic")}
    return reward, critic, meta


_NEURAL: dict[str, type[Shaper]] = {"explors": NeuralExplorationGuidedShaping, "explob": NeuralExplorationBonus,
                                    "selfrs": NeuralSelfRewardShaping}
#: The shapers with a neural variant (``neural: true``; ``rewardlab train --neural``).
NEURAL_SHAPERS = tuple(_NEURAL)
