"""SORS: self-supervised online reward shaping (Memarian, Goo, Lioutikov, Niekum & Topcu, 2021), as
ExploRS' code runs it for its baseline (tabular, the learner trains on R̄ + R_φ).

Every N_r = 5 episodes, on the last 10: the pairs of episodes (i, j) whose original discounted return
Ḡ_i > Ḡ_j, at most 10 of them drawn with replacement, give a Bradley–Terry step on a reward table φ:

    φ ← φ + η/|P| Σ_{(i,j)∈P} (1 − σ(R_φ(τ_i) − R_φ(τ_j))) (∇R_φ(τ_i) − ∇R_φ(τ_j)),

with ``R_φ(τ) = Σ_t γ^t φ(s_t, a_t)`` and η = 0.01. Without a pair (no episode better than another)
φ stays as it is.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.shaping.base import TabularOnlyShaper
from rewardlab.sims.tabular import TabularMDP

DEFAULTS: dict[str, Any] = {"eta_phi": 0.01, "pairs": 10, "update_every": 5, "buffer": 10}


class SelfSupervisedOnline:
    """SORS' reward table per run, learnt from ranked episodes (see the module docstring)."""

    def __init__(self, mdp: TabularMDP, runs: int, rng: np.random.Generator, eta_phi: float = 0.01,
                 pairs: int = 10, update_every: int = 5, buffer: int = 10):
        self.mdp = mdp
        self.rng = rng
        self.eta, self.pairs, self.update_every = eta_phi, pairs, update_every
        self.phi = np.zeros((runs, mdp.n_states, mdp.n_actions))
        self.buffer: deque[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=buffer)
        self.episodes = 0
        self._run = np.arange(runs)

    def begin(self, policy: np.ndarray) -> None:
        """Nothing to do before the first episode."""

    def step_reward(self, states: np.ndarray, actions: np.ndarray, next_states: np.ndarray,
                    alive: np.ndarray) -> np.ndarray:
        return np.where(alive, self.phi[self._run, states, actions], 0.0)

    def end_episode(self, batch: Any, policy: np.ndarray) -> None:
        discount = self.mdp.gamma ** np.arange(len(batch.states))[:, None]
        G_bar = (np.where(batch.alive, batch.rewards, 0.0) * discount).sum(0)  # Ḡ from the start, per run
        self.buffer.append((batch.states, batch.actions, np.where(batch.alive, discount, 0.0), G_bar))
        self.episodes += 1
        if self.episodes % self.update_every == 0:
            self.update()

    def update(self) -> None:
        S, A = self.mdp.n_states, self.mdp.n_actions
        episodes = list(self.buffer)
        returns = np.stack([g for *_, g in episodes])  # (E, N)
        for n in self._run:
            better = [(i, j) for i in range(len(episodes)) for j in range(len(episodes)) if returns[i, n] > returns[j, n]]
            if not better:
                continue
            chosen = [better[k] for k in self.rng.choice(len(better), size=self.pairs)] if len(better) > self.pairs else better
            # ∇R_φ(τ) per episode: discounted visit counts of (s, a)
            feats = np.zeros((len(episodes), S * A))
            for e, (states, actions, weight, _) in enumerate(episodes):
                np.add.at(feats[e], states[:, n] * A + actions[:, n], weight[:, n])
            scores = feats @ self.phi[n].reshape(-1)
            grad = np.zeros(S * A)
            for i, j in chosen:
                grad += (1.0 - 1.0 / (1.0 + np.exp(scores[j] - scores[i]))) * (feats[i] - feats[j])
            self.phi[n] += self.eta * grad.reshape(S, A) / len(chosen)


class SelfSupervisedRewardShaping(TabularOnlyShaper):
    """SORS as a shaper (registered ``sors``), tabular tasks.

    :param params: ``eta_phi``, ``pairs``, ``update_every``, ``buffer`` (see :data:`DEFAULTS`)
    """

    name = "sors"
    mode = "additive"
    requires = frozenset({"tabular_model"})

    def __init__(self, card: EnvCard, params: dict[str, Any], gamma: float):
        super().__init__(card, params, gamma)
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise UserError(f"shaper 'sors' takes {', '.join(sorted(DEFAULTS))}, not {', '.join(sorted(unknown))}")
        self.settings = {**DEFAULTS, **params}
        for key in ("pairs", "update_every", "buffer"):
            if not isinstance(self.settings[key], int) or self.settings[key] < 1:
                raise UserError(f"shaper 'sors': {key} must be a whole number >= 1, got {self.settings[key]!r}")

    def online(self, mdp: TabularMDP, runs: int, rng: np.random.Generator) -> SelfSupervisedOnline:
        return SelfSupervisedOnline(mdp, runs, rng, **self.settings)
