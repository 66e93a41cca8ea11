"""E2CL's data collection (§6 of ``shared/research/reward_design_algorithms.md``): expert demonstrations,
teacher-guided exploration and teacher-free exploration, each producing :class:`~rewardlab.e2cl.datasets.Record`\\ s.

- **Expert**: the planner's trajectories; each step gives a plan record, and (for the feedback skill)
  a feedback record ``(prefix, expert step) -> True``.
- **Teacher-guided**: along each expert trajectory the agent proposes its own step given the expert
  prefix; a proposal that differs from the expert's is checked against the env: its feedback is a
  feedback record, and an infeasible one also gives the *expert-based correction*
  ``(prefix, step, feedback) -> expert step``.
- **Teacher-free**: the agent rolls out alone; every step's env feedback is a feedback record; after an
  error the planner's next step from that state is the correction, kept only if the env executes it
  (the paper asks GPT-4o for the correction and filters it with a feedback check: a labelled deviation).
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardlab.e2cl.agents import Agent
from rewardlab.e2cl.datasets import Context, Record
from rewardlab.household.env import HouseholdEnv


@dataclass(frozen=True)
class Demo:
    """One expert episode: the env seed that draws it and, per step, the context and the expert step."""

    seed: int
    steps: tuple[tuple[Context, str], ...]


def _context(obs: dict, history: tuple[tuple[str, bool], ...] = ()) -> Context:
    return Context(str(obs["task"]), str(obs["text"]), history)


def collect_demos(env_steps: int, seed: int, split: str = "train", max_steps: int = 30) -> list[Demo]:
    """Expert episodes on ``split`` until they hold at least ``env_steps`` steps (the data budget).

    Episode ``i`` is drawn with env seed ``seed * 1_000_003 + i``, so the same seed gives the same demos.
    """
    env = HouseholdEnv(split=split, max_steps=max_steps)
    demos: list[Demo] = []
    total, i = 0, 0
    while total < env_steps:
        ep_seed = seed * 1_000_003 + i
        obs, _ = env.reset(seed=ep_seed)
        ctx = _context(obs)
        steps = []
        for action in env.expert_plan():
            steps.append((ctx, action.text))
            obs, _, _, _, info = env.step(action)
            ctx = ctx.then(action.text, bool(info["executable"]), str(obs["text"]))
        demos.append(Demo(ep_seed, tuple(steps)))
        total += len(steps)
        i += 1
    return demos


def expert_records(demos: list[Demo], feedback: bool) -> list[Record]:
    """Plan records of every expert step, and with ``feedback`` the ``(prefix, expert step) -> True`` records."""
    out = []
    for d in demos:
        for ctx, step in d.steps:
            out.append(Record("plan", ctx, step, source="expert"))
            if feedback:
                out.append(Record("feedback", ctx, "True", step=step, source="expert"))
    return out


def teacher_guided(agent: Agent, demos: list[Demo], split: str = "train", max_steps: int = 30) -> tuple[list[Record], int]:
    """Teacher-guided exploration along the expert trajectories.

    :return: the records, and the env steps spent (each checked proposal counts as one)
    """
    contexts = [ctx for d in demos for ctx, _ in d.steps]
    proposals = iter(agent.plan(contexts))
    env = HouseholdEnv(split=split, max_steps=max_steps)
    records: list[Record] = []
    checked = 0
    for d in demos:
        env.reset(seed=d.seed)
        for ctx, expert_step in d.steps:
            proposal = next(proposals)
            if proposal != expert_step:
                fb = env.check(proposal)
                checked += 1
                meta = {"episode": d.seed}
                records.append(Record("feedback", ctx, fb.text, step=proposal, source="teacher_guided",
                                      error_kind=fb.kind, meta=meta))
                if not fb.executable:
                    records.append(Record("correction", ctx, expert_step, step=proposal, feedback=fb.text,
                                          source="teacher_guided", error_kind=fb.kind, meta=meta))
            env.step(expert_step)
    return records, checked


def teacher_free(agent: Agent, episodes: int, seed: int, split: str = "train", max_steps: int = 30,
                 batch: int = 32) -> tuple[list[Record], dict[str, int]]:
    """Teacher-free exploration: the agent's own rollouts, in lockstep batches of ``batch`` envs.

    Episode ``i`` uses env seed ``seed * 1_000_003 + 500_000 + i`` (disjoint from the demos').

    :return: the records, and counts: ``env_steps``, ``errors``, ``corrections_kept``,
        ``corrections_rejected`` (the env refused the planner's step), ``no_correction`` (unreachable goal)
    """
    stats = dict.fromkeys(("env_steps", "errors", "corrections_kept", "corrections_rejected", "no_correction"), 0)
    records: list[Record] = []
    for start in range(0, episodes, batch):
        envs = [HouseholdEnv(split=split, max_steps=max_steps) for _ in range(min(batch, episodes - start))]
        seeds = [seed * 1_000_003 + 500_000 + start + k for k in range(len(envs))]
        ctxs = [_context(env.reset(seed=s)[0]) for env, s in zip(envs, seeds, strict=True)]
        live = list(range(len(envs)))
        while live:
            steps = agent.plan([ctxs[i] for i in live])
            still = []
            for i, step in zip(live, steps, strict=True):
                env, ctx = envs[i], ctxs[i]
                obs, _, terminated, truncated, info = env.step(step)
                stats["env_steps"] += 1
                meta = {"episode": seeds[i]}
                records.append(Record("feedback", ctx, str(info["feedback"]), step=step, source="teacher_free",
                                      error_kind=info["error_kind"], meta=meta))
                if not info["executable"]:
                    stats["errors"] += 1
                    fix = env.expert_step()  # the infeasible step left the world unchanged
                    if fix is None:
                        stats["no_correction"] += 1
                    elif env.check(fix).executable:
                        stats["corrections_kept"] += 1
                        records.append(Record("correction", ctx, fix.text, step=step, feedback=str(info["feedback"]),
                                              source="teacher_free", error_kind=info["error_kind"], meta=meta))
                        # the filter's own check is a feedback example too: the same context with an
                        # executable step, paired with the error above, so the feedback skill must read
                        # the step rather than guess from the context (without it, predicted feedback for
                        # a correction repeated the proposal's error)
                        records.append(Record("feedback", ctx, "True", step=fix.text, source="teacher_free",
                                              meta={**meta, "check": "correction"}))
                    else:
                        stats["corrections_rejected"] += 1
                ctxs[i] = ctx.then(step, bool(info["executable"]), str(obs["text"]))
                if not (terminated or truncated):
                    still.append(i)
            live = still
    return records, stats
