"""Neural REINFORCE (Williams 1992) as a stable-baselines3 on-policy algorithm: the learner ExploRS' paper
runs its neural experiments with (Devidze et al., NeurIPS'22; research/reward_design_algorithms.md §4:
MLP[256], Adam 1e-5, ε = 0.05 action mixing), registered as the ``sb3`` trainer's algorithm ``reinforce``
(the ``tabular`` trainer's ``reinforce`` is the tabular softmax one, a different learner).

One update, CleanRL-style:

1. collect ``episodes_per_update`` complete episodes with the current policy (all envs step together;
   an episode still running when the batch is full carries over into the next batch, so with
   ``n_envs > 1`` its first steps come from the previous policy — ``n_envs: 1``, the paper's setting,
   has none);
2. Monte-Carlo returns ``G_t = Σ_{k≥t} γ^{k-t} r_k`` of each episode (``gamma: 1`` for undiscounted);
3. ``loss = −(1/E) Σ_episodes Σ_t log π(a_t|s_t) G_t``: no baseline, no γ^t weighting of step t (as in the
   paper's code and most implementations), no gradient clipping;
4. one Adam step.

Being an :class:`~stable_baselines3.common.on_policy_algorithm.OnPolicyAlgorithm` with an
``ActorCriticPolicy``, it works wherever SB3's PPO does in rewardlab: the sb3 trainer's callbacks,
checkpoints, ``VecNormalize``, and the neural ExploRS/EXPLOB/SELFRS shapers, which read π through
``policy.get_distribution``. The policy's value head exists (it is SB3's policy class) but is never trained
or used.

ε-mixing (discrete actions): the policy *is* the mixture ``π_ε(a|s) = (1 − ε) softmax(f_θ(s))_a + ε/|A|``;
actions are drawn from it, its log-probability enters the loss (so the gradient is the on-policy one of
the policy that acts), and the shapers see it. Deterministic evaluation takes its argmax, the same as the
unmixed one's. ``Box`` actions have no uniform mixture here: ε must be 0 for them (refused otherwise).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import CategoricalDistribution, Distribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from rewardlab.errors import UserError


def mixed_logits(logits: th.Tensor, epsilon: float) -> th.Tensor:
    """Log-probabilities of ``(1 − ε) softmax(logits) + ε/|A|`` (a valid ``Categorical`` logits tensor).

    :param logits: ``(batch, |A|)`` unnormalised log-probabilities
    :param epsilon: the uniform share, in ``[0, 1]``
    """
    if epsilon == 0.0:
        return logits
    n = logits.shape[-1]
    return th.log((1.0 - epsilon) * th.softmax(logits, dim=-1) + epsilon / n)


class EpsilonMixingPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` whose categorical action distribution is mixed with the uniform one.

    :param epsilon: the uniform share ε in ``[0, 1]`` (discrete actions; 0 for ``Box`` actions)
    """

    def __init__(self, *args: Any, epsilon: float = 0.0, **kwargs: Any):
        self.epsilon = float(epsilon)
        super().__init__(*args, **kwargs)

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        if isinstance(self.action_dist, CategoricalDistribution):
            return self.action_dist.proba_distribution(action_logits=mixed_logits(self.action_net(latent_pi),
                                                                                  self.epsilon))
        return super()._get_action_dist_from_latent(latent_pi)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "epsilon": self.epsilon}


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = r_t + γ G_{t+1}`` of one complete episode, ``G_T = 0`` after its last step.

    :param rewards: ``(T,)`` the episode's rewards
    :return: ``(T,)`` float64
    """
    returns = np.zeros(len(rewards), dtype=np.float64)
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = float(rewards[t]) + gamma * g
        returns[t] = g
    return returns


Episode = tuple[list[Any], list[Any], list[float]]


class REINFORCE(OnPolicyAlgorithm):
    """Monte-Carlo policy gradient without baseline (module docstring), for SB3's ``learn``.

    :param policy: ``MlpPolicy`` (etc.: :class:`EpsilonMixingPolicy`) or an ``EpsilonMixingPolicy`` subclass
    :param env: the training env (a ``VecEnv``)
    :param learning_rate: Adam's step size (the paper: 1e-5)
    :param episodes_per_update: complete episodes per gradient step (the paper: 1)
    :param gamma: discount of the returns; 1 for undiscounted
    :param epsilon: uniform action mixing ε in ``[0, 1]`` (the paper: 0.05); 0 for ``Box`` actions
    :param policy_kwargs: passed to the policy (``net_arch`` etc.)
    :raises UserError: ε outside ``[0, 1]``, ε > 0 with ``Box`` actions, a policy class that cannot mix,
        fewer than one episode per update
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": EpsilonMixingPolicy, "CnnPolicy": EpsilonMixingPolicy, "MultiInputPolicy": EpsilonMixingPolicy}

    def __init__(self, policy: str | type[ActorCriticPolicy], env: Any, learning_rate: float = 1e-5,
                 episodes_per_update: int = 1, gamma: float = 0.99, epsilon: float = 0.05,
                 policy_kwargs: dict[str, Any] | None = None, stats_window_size: int = 100,
                 tensorboard_log: str | None = None, verbose: int = 0, seed: int | None = None,
                 device: th.device | str = "auto", _init_setup_model: bool = True):
        if isinstance(epsilon, bool) or not 0.0 <= float(epsilon) <= 1.0:
            raise UserError(f"the sb3 trainer's reinforce: epsilon must be in [0, 1], got {epsilon!r}")
        if isinstance(episodes_per_update, bool) or int(episodes_per_update) < 1:
            raise UserError(f"the sb3 trainer's reinforce: episodes_per_update must be >= 1, got {episodes_per_update!r}")
        cls = self.policy_aliases.get(policy, policy) if isinstance(policy, str) else policy
        if float(epsilon) > 0 and not (isinstance(cls, type) and issubclass(cls, EpsilonMixingPolicy)):
            raise UserError(f"the sb3 trainer's reinforce mixes epsilon {epsilon} uniform actions, which policy "
                            f"{getattr(cls, '__name__', cls)} cannot; use MlpPolicy or set epsilon: 0")
        self.epsilon = float(epsilon)
        self.episodes_per_update = int(episodes_per_update)
        if isinstance(cls, type) and issubclass(cls, EpsilonMixingPolicy):
            policy_kwargs = {**(policy_kwargs or {}), "epsilon": self.epsilon}
        super().__init__(policy, env, learning_rate=learning_rate, n_steps=1, gamma=gamma, gae_lambda=1.0,
                         ent_coef=0.0, vf_coef=0.0, max_grad_norm=float("inf"), use_sde=False, sde_sample_freq=-1,
                         stats_window_size=stats_window_size, tensorboard_log=tensorboard_log,
                         policy_kwargs=policy_kwargs, verbose=verbose, seed=seed, device=device,
                         _init_setup_model=False, supported_action_spaces=(spaces.Discrete, spaces.Box))
        space = getattr(self, "action_space", None)  # absent while load() rebuilds the model without an env
        if self.epsilon > 0 and space is not None and not isinstance(space, spaces.Discrete):
            raise UserError(f"the sb3 trainer's reinforce: epsilon {self.epsilon} mixes uniform actions, which needs "
                            f"discrete actions; this env has {type(self.action_space).__name__} actions "
                            "(set epsilon: 0)")
        self._running: list[Episode] = []
        self._batch: list[Episode] = []
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        self._running = [([], [], []) for _ in range(self.n_envs)]

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, rollout_buffer: Any, n_rollout_steps: int) -> bool:
        """Step all envs with the current policy until ``episodes_per_update`` episodes are complete or the
        budget is spent (then the unfinished ones wait for the next call); SB3's rollout buffer is unused.

        :return: False where a callback stopped training
        """
        assert self._last_obs is not None
        self.policy.set_training_mode(False)
        callback.on_rollout_start()
        self._batch = []
        while len(self._batch) < self.episodes_per_update and self.num_timesteps < self._total_timesteps:
            with th.no_grad():
                actions, _, _ = self.policy(obs_as_tensor(self._last_obs, self.device))  # type: ignore[arg-type]
            actions = actions.cpu().numpy()
            clipped = actions
            if isinstance(self.action_space, spaces.Box):
                clipped = np.clip(actions, self.action_space.low, self.action_space.high)
            new_obs, rewards, dones, infos = env.step(clipped)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            for i in range(env.num_envs):
                obs, acts, rews = self._running[i]
                obs.append(np.array(self._last_obs[i]))  # type: ignore[index]
                acts.append(actions[i])
                rews.append(float(rewards[i]))
                if dones[i]:
                    self._batch.append(self._running[i])
                    self._running[i] = ([], [], [])
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def reinforce_loss(self, episodes: list[Episode]) -> th.Tensor:
        """``−(1/E) Σ_episodes Σ_t log π_ε(a_t|s_t) G_t`` over complete episodes (differentiable in θ).

        :param episodes: ``(observations, actions, rewards)`` lists of each episode, in time order
        """
        obs = np.stack([o for ep in episodes for o in ep[0]])
        actions = th.as_tensor(np.stack([a for ep in episodes for a in ep[1]]), device=self.device)
        returns = th.as_tensor(np.concatenate([discounted_returns(np.asarray(ep[2]), self.gamma) for ep in episodes]),
                               dtype=th.float32, device=self.device)
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        _, log_prob, _ = self.policy.evaluate_actions(obs_as_tensor(obs, self.device), actions)
        return -(log_prob.flatten() * returns).sum() / len(episodes)

    def train(self) -> None:
        """One Adam step on the batch's REINFORCE loss (nothing where no episode finished)."""
        if not self._batch:
            return
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        loss = self.reinforce_loss(self._batch)
        self.policy.optimizer.zero_grad()
        loss.backward()
        self.policy.optimizer.step()
        self._n_updates += 1
        self.logger.record("train/loss", float(loss.item()))
        self.logger.record("train/episodes", len(self._batch))
        self.logger.record("train/n_updates", self._n_updates)
        self._batch = []

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_running", "_batch"]
