"""SB3 callbacks the trainer uses: the learning curve (deterministic evaluations at fixed steps),
episode statistics to TensorBoard, and a bound on the reward program's cost per step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from rewardlab.training.evaluation import evaluate
from rewardlab.types import CurvePoint, EvalResult


class LearningCurve(BaseCallback):
    """Deterministic evaluations at step 0 (the untrained policy), every ``every`` steps and whenever
    the caller asks; training-episode statistics (env return, program return, success, components)
    to TensorBoard under ``rewardlab/``.

    :param eval_env: the evaluation envs (one episode each)
    :param episodes: episodes per evaluation
    :param every: environment steps between evaluations
    :param progress: called with ``(steps done, steps)`` after every vector step
    :param steps: the training budget, for ``progress``
    """

    def __init__(self, eval_env: VecEnv, episodes: int, every: int, steps: int,
                 progress: Callable[[int, int], None] | None = None):
        super().__init__()
        self.eval_env = eval_env
        self.episodes = episodes
        self.every = every
        self.steps = steps
        self.progress = progress
        self.next_eval = every
        self.curve: list[CurvePoint] = []
        self.last: tuple[int, int, EvalResult] | None = None  # (step, the model's updates then, result)

    def evaluate(self, step: int) -> CurvePoint:
        result = evaluate(self.model, self.eval_env, self.episodes)
        self.last = (step, _updates(self.model), result)
        point = result.point(step)
        self.curve.append(point)
        return point

    def _on_training_start(self) -> None:
        self.evaluate(0)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            ep = info.get("episode_stats")
            if ep is None:
                continue
            self.logger.record_mean("rewardlab/env_return", ep["env_return"])
            if ep["program_return"] is not None:
                self.logger.record_mean("rewardlab/program_return", ep["program_return"])
            if ep["success"] is not None:
                self.logger.record_mean("rewardlab/success", float(ep["success"]))
            for name, value in ep["components"].items():
                self.logger.record_mean(f"rewardlab/components/{name}", value)
        if self.num_timesteps >= self.next_eval:
            self.next_eval += self.every
            point = self.evaluate(self.num_timesteps)
            for key in ("return_env", "return_program", "success"):
                value = getattr(point, key)
                if value is not None:
                    self.logger.record(f"eval/{key}", value)
        if self.progress is not None:
            self.progress(self.num_timesteps, self.steps)
        return True

    def final(self, model: Any) -> EvalResult:
        """The final evaluation: the last curve point when it was taken at the end of training with
        the final weights (every evaluation meets the next goals of a MetaWorld task's cycle, so a
        second one would disagree with the curve), else a new one, which becomes the curve's last point.

        An on-policy learner reaches its last step while collecting its last rollout, before the update
        that follows it: an evaluation taken then saw the weights before that update, so it is redone.
        """
        if self.last is not None and self.last[0] == model.num_timesteps and self.last[1] == _updates(model):
            return self.last[2]
        result = evaluate(model, self.eval_env, self.episodes)
        if self.curve and self.curve[-1].step == model.num_timesteps:
            self.curve.pop()  # taken before the last update
        self.curve.append(result.point(model.num_timesteps))
        return result


def _updates(model: Any) -> int:
    """How many gradient updates the model has made (SB3 counts them in ``_n_updates``)."""
    return int(getattr(model, "_n_updates", 0))
