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
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import numpy as np

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.shaping.base import TabularOnlyShaper
from rewardlab.sims.tabular import TabularMDP

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
    the env's reward. Tabular tasks only for now (ψ = identity); the neural variant is not built yet.

    :param params: ``bonus_lambda``, ``bonus_max``, ``eta_phi``, ``eta_critic``, ``update_every``
        (N_r), ``buffer``, ``clip`` (bound on |φ|; the official code uses 0.01 with Q-learning) (see
        :data:`DEFAULTS`)
    """

    name = "explors"
    mode = "additive"
    requires = frozenset({"tabular_model"})
    explore: ClassVar[bool] = True
    exploit: ClassVar[bool] = True

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise UserError(f"shaper {self.name!r} takes {', '.join(sorted(DEFAULTS))}, not {', '.join(sorted(unknown))}")
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
