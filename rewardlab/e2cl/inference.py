"""Running an agent in the household: plain (execute the planned step) or E2CL's speculative inference.

Speculative inference, one correction round per step (§6 of ``shared/research/reward_design_algorithms.md``,
from the released code):

1. a <- pi(plan);
2. f^ <- pi(feedback | a);
3. if f^ is an error: a_c <- pi(correction | a, f^); if pi(feedback | a_c) is not an error, a <- a_c;
4. execute a, append it to the history.

The check is the model's, not the env's; the log records what the env would have said about both the
proposal and the correction, so how often corrections fire and how often they were right is measured.
Episodes run in lockstep batches so that the model is called once per step for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardlab.e2cl.agents import Agent, is_error
from rewardlab.e2cl.datasets import Context
from rewardlab.household.env import HouseholdEnv


@dataclass
class EpisodeStats:
    """One episode's outcome.

    :param success: the task's goal held before the step limit
    :param steps: steps taken
    :param executable: steps the env executed (executability = executable / steps)
    :param fired: steps where the feedback model predicted an error (a correction was generated)
    :param accepted: corrections that replaced the proposal (their predicted feedback was not an error)
    :param fired_right: fired where the env would indeed have refused the proposal
    :param accepted_right: accepted corrections the env executed
    """

    success: bool = False
    steps: int = 0
    executable: int = 0
    fired: int = 0
    accepted: int = 0
    fired_right: int = 0
    accepted_right: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def executability(self) -> float:
        return self.executable / self.steps if self.steps else 0.0


def run_episodes(agent: Agent, envs: Sequence[HouseholdEnv], seeds: Sequence[int | None], speculative: bool,
                 options: Sequence[dict[str, Any] | None] | None = None,
                 on_step: Callable[[int, dict[str, Any]], None] | None = None) -> list[EpisodeStats]:
    """Run one episode in each env, in lockstep.

    :param agent: any :class:`~rewardlab.e2cl.agents.Agent`
    :param envs: household envs (one episode each)
    :param seeds: reset seed per env
    :param speculative: E2CL's speculative inference (else: execute the planned step)
    :param options: reset options per env (``home``, ``task``)
    :param on_step: called with ``(env index, step log)`` after each step (``e2cl play`` prints it)
    """
    stats = [EpisodeStats() for _ in envs]
    ctxs: list[Context] = []
    for k, (env, seed) in enumerate(zip(envs, seeds, strict=True)):
        obs, _ = env.reset(seed=seed, options=(options or [None] * len(envs))[k])
        ctxs.append(Context(str(obs["task"]), str(obs["text"])))
    live = list(range(len(envs)))
    while live:
        c = [ctxs[i] for i in live]
        proposals = agent.plan(c)
        chosen = list(proposals)
        predicted: list[str | None] = [None] * len(live)
        corrections: list[str | None] = [None] * len(live)
        corrected_pred: list[str | None] = [None] * len(live)
        accepted = [False] * len(live)  # a correction equal to the proposal can be rejected too
        if speculative:
            predicted = list(agent.predict_feedback(c, proposals))
            fire = [j for j, f in enumerate(predicted) if is_error(str(f))]
            if fire:
                fixes = agent.correct([c[j] for j in fire], [proposals[j] for j in fire], [str(predicted[j]) for j in fire])
                checks = agent.predict_feedback([c[j] for j in fire], fixes)
                for j, fix, chk in zip(fire, fixes, checks, strict=True):
                    corrections[j], corrected_pred[j] = fix, chk
                    if not is_error(chk):
                        chosen[j], accepted[j] = fix, True
        still = []
        for j, i in enumerate(live):
            env, st = envs[i], stats[i]
            entry: dict[str, Any] = {"t": st.steps, "proposal": proposals[j], "predicted_feedback": predicted[j],
                                     "correction": corrections[j], "correction_predicted_feedback": corrected_pred[j]}
            if corrections[j] is not None:
                st.fired += 1
                proposal_fb = env.check(proposals[j])
                entry["proposal_env_feedback"] = proposal_fb.text
                st.fired_right += not proposal_fb.executable
                st.accepted += accepted[j]
            entry["accepted"] = accepted[j]
            obs, _, terminated, truncated, info = env.step(chosen[j])
            st.steps += 1
            st.executable += bool(info["executable"])
            if entry["accepted"]:
                st.accepted_right += bool(info["executable"])
            entry.update(executed=chosen[j], env_feedback=info["feedback"], error_kind=info["error_kind"],
                         success=bool(info["success"]))
            st.log.append(entry)
            if on_step is not None:
                on_step(i, entry)
            ctxs[i] = ctxs[i].then(chosen[j], bool(info["executable"]), str(obs["text"]))
            if terminated or truncated:
                st.success = bool(info["success"])
            else:
                still.append(i)
        live = still
    return stats
