"""rewardlab's three performance figures, measured side by side and written to JSON.

    python -m benchmarks.run [--quick] [--out benchmarks/results.json] [--only a,b,c]

(a) ``reward_path_cost``: what a reward program costs during PPO training (mujoco/HalfCheetah-v5, the
    ``agents/mujoco.yaml`` preset: 4 DummyVecEnv envs, VecNormalize). The headline is measured by
    :class:`rewardlab.wrappers.RewardVecEnv` itself in every timed program run (``RewardVecEnv.cost``):
    the reward path's time per vector step (state extraction + the program) ÷ the wrapped env's time
    per vector step, median and interquartile range over the runs. Beside it: the paired throughput
    ratios (steps/s with the hand-written reference program ÷ with the env's own reward; runs
    alternate in pairs, order flipped every pair), median and IQR, and whether that IQR is narrow
    enough to resolve the goal ratio >= 0.97 (``resolvable``: the IQR lies wholly on one side of 0.97).
    The two arms are built as :func:`rewardlab.training.sb3.build_agent` builds them and differ only in
    the program (None vs the reference), so the program arm always does strictly more work: a pair
    ratio above 1 is noise, and the ratios resolve a 3% effect only on a quiet machine.
(b) ``batched_speedup``: one batched call of a bound reference program on B=1024 sampled states /
    the same bound program called once per state on B=1 views, per-state times, interleaved
    timeit-style repeats; the figure is the smaller of the two tasks' medians. Goal >= 100x.
(c) ``check_seconds``: wall time of ``check_program(source, card)`` (static check + sandbox trial
    in a subprocess) with the sampled-state cache warm, median of the runs, the larger of the two
    programs' medians. Goal <= 1 s, warm and cold. Cold (empty cache: simulator imports, MetaWorld's
    goal set, env creation and a 256-step random rollout, overlapping the trial process's start) is
    measured in fresh processes, each with a new empty cache, with a breakdown of its parts.

Everything is recorded: machine, versions, sizes, every raw sample, medians, goals. ``--quick`` runs
the same code paths at tiny sizes (a smoke test, seconds); its numbers mean little.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load (see rewardlab.runtime.limit_threads)
os.environ.setdefault("MUJOCO_GL", "egl")

import argparse
import cProfile
import dataclasses
import datetime as _dt
import gc
import json
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results.json"

GOALS: dict[str, dict[str, Any]] = {
    # figure (a) reports a cost; its goal is on the throughput ratio that cost allows
    "reward_path_cost": {"op": ">=", "value": 0.97, "unit": "x", "on": "throughput_ratio",
                         "text": "PPO steps/s with the program >= 0.97 x with the env's own reward"},
    "batched_speedup": {"op": ">=", "value": 100.0, "unit": "x"},
    "check_seconds": {"op": "<=", "value": 1.0, "unit": "s", "text": "warm and cold"},
}


@dataclass(frozen=True)
class Sizes:
    """How much of everything to run. :data:`FULL` is the reported run; :data:`QUICK` a smoke test."""

    # (a) reward path cost and training throughput
    train_card: str = "mujoco/HalfCheetah-v5"
    train_steps: int = 8192  # per run (PPO rounds up to whole rollouts of n_steps * n_envs)
    train_pairs: int = 8  # native/program pairs; order flips every pair
    warmup_steps: int = 2048  # one discarded run per arm first (imports, allocator, caches)
    ppo_overrides: dict[str, Any] = field(default_factory=dict)  # on top of agents/mujoco.yaml
    env_steps: int = 2000  # diagnostics: vector steps per repeat of the env-only loop
    env_repeats: int = 5
    wrapper_steps: int = 20000  # diagnostics: RewardVecEnv over a replayed step
    wrapper_repeats: int = 5
    # (b) batched program evaluation
    batch_cards: tuple[str, ...] = ("metaworld/drawer-open-v3", "mujoco/HalfCheetah-v5")
    batch_size: int = 1024
    batch_repeats: int = 7
    min_repeat_s: float = 0.2  # each timed repeat runs at least this long (timeit autorange)
    # (c) check_program
    check_cards: tuple[str, ...] = ("mujoco/HalfCheetah-v5", "metaworld/drawer-open-v3")
    check_runs: int = 10
    check_states: int = 256  # check_program's default
    cold_repeats: int = 5  # fresh processes per card, each with a new empty cache (and as many for the parts)


FULL = Sizes()
QUICK = Sizes(
    train_steps=512, train_pairs=2, warmup_steps=256, ppo_overrides={"n_steps": 64, "n_epochs": 1},
    env_steps=100, env_repeats=2, wrapper_steps=500, wrapper_repeats=2,
    batch_size=64, batch_repeats=3, min_repeat_s=0.01, check_runs=2, cold_repeats=1,
)


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _spread(xs: list[float]) -> dict[str, float]:
    """Median, quartiles (numpy's linear interpolation), interquartile range, extremes, count."""
    a = np.asarray(xs, dtype=float)
    q1, med, q3 = (float(v) for v in np.percentile(a, [25, 50, 75]))
    return {"median": med, "q1": q1, "q3": q3, "iqr": q3 - q1, "min": float(a.min()), "max": float(a.max()),
            "n": int(a.size)}


def _met(name: str, value: float) -> bool:
    goal = GOALS[name]
    return bool(value >= goal["value"]) if goal["op"] == ">=" else bool(value <= goal["value"])


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- machine and versions --------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cpu_model = None
    mem_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": mem_gb,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(),
    }


def versions() -> dict[str, str | None]:
    from importlib import metadata

    import rewardlab

    out: dict[str, str | None] = {"rewardlab": rewardlab.__version__}
    for dist in ("numpy", "torch", "stable-baselines3", "gymnasium", "mujoco", "metaworld"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# -- (a) reward path cost and training throughput ----------------------------------------------------
def _build_ppo(card: Any, extractor: Any, program: Any, seed: int, overrides: dict[str, Any]) -> tuple[Any, Any]:
    """The training env and model exactly as the ``sb3`` trainer builds them (``build_agent``), minus
    evaluation, checkpoints and TensorBoard."""
    from rewardlab.training.sb3 import build_agent

    return build_agent(card, extractor, program, "ppo", seed, 10**9, overrides)


def _reward_vec_env(env: Any) -> Any:
    from rewardlab.wrappers import RewardVecEnv

    while not isinstance(env, RewardVecEnv):
        env = env.venv
    return env


def _phase_timer() -> Any:
    """A callback timing the rollout-collection phase (policy forward + env step + reward) of PPO."""
    from stable_baselines3.common.callbacks import BaseCallback

    class PhaseTimer(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.rollout_s = 0.0
            self._t0 = 0.0

        def _on_rollout_start(self) -> None:
            self._t0 = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.rollout_s += time.perf_counter() - self._t0

        def _on_step(self) -> bool:
            return True

    return PhaseTimer()


def _train_once(card: Any, extractor: Any, program: Any, arm: str, steps: int, seed: int,
                overrides: dict[str, Any]) -> dict[str, Any]:
    """One timed ``model.learn``; for the program arm, the reward path's cost as its
    :class:`~rewardlab.wrappers.RewardVecEnv` measured it over the same run."""
    model, env = _build_ppo(card, extractor, program, seed, overrides)
    wrapper = _reward_vec_env(env)
    timer = _phase_timer()
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=steps, callback=timer)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = int(model.num_timesteps)
    cost = wrapper.cost
    env.close()
    del model, env
    row: dict[str, Any] = {
        "arm": arm, "seed": seed, "steps": n, "n_envs": wrapper.num_envs, "wall_s": wall, "cpu_s": cpu,
        "rollout_s": timer.rollout_s,
        "steps_per_s": n / wall, "steps_per_cpu_s": n / cpu, "rollout_steps_per_s": n / timer.rollout_s,
    }
    if program is not None:
        row["reward_cost"] = {
            "vector_steps": cost.steps, "env_s": cost.env_s, "reward_s": cost.reward_s,
            "fraction": cost.fraction, "us_per_step": cost.us_per_step,
            "env_us_per_step": 1e6 * cost.env_s / cost.steps if cost.steps else 0.0,
            "share_of_wall": cost.reward_s / wall,
        }
    return row


def _replay_vec_env(template: Any, step: tuple[Any, ...]) -> Any:
    """A VecEnv standing in for the DummyVecEnv under :class:`RewardVecEnv`: it returns one recorded
    step forever, so the wrapper's own cost is timed without the simulator's."""
    from stable_baselines3.common.vec_env import VecEnv

    class Replay(VecEnv):
        def __init__(self) -> None:
            super().__init__(template.num_envs, template.observation_space, template.action_space)

        def reset(self) -> Any:
            return step[0]

        def step_async(self, actions: Any) -> None:
            pass

        def step_wait(self) -> Any:
            return step

        def close(self) -> None:
            pass

        def get_attr(self, name: str, indices: Any = None) -> list[Any]:
            return [None] * self.num_envs

        def set_attr(self, name: str, value: Any, indices: Any = None) -> None:
            pass

        def env_method(self, *args: Any, **kwargs: Any) -> list[Any]:
            return [None] * self.num_envs

        def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
            return [False] * self.num_envs

    return Replay()


def _interleaved(arms: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each arm's timing function once per repeat, arms in rotating order; raw samples per arm."""
    names = list(arms)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            gc.collect()
            out[k].append(arms[k]())
    return out


def _training_diagnostics(card: Any, extractor: Any, program: Any, sizes: Sizes) -> dict[str, Any]:
    """Where the program arm's extra time per vector step goes, measured without PPO's noise."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    from rewardlab.sims import make_env
    from rewardlab.state import StateExtractor
    from rewardlab.training.sb3 import make_vec_env
    from rewardlab.wrappers import RewardVecEnv

    n_envs = 4
    rng = np.random.default_rng(0)
    actions = rng.uniform(card.action.low, card.action.high,
                          (sizes.env_steps, n_envs) + tuple(card.action.shape)).astype(np.float32)

    # 1. env-only loop (no policy): bare gymnasium envs, the native arm's stack, the program arm's stack
    def bare() -> Any:
        venv = DummyVecEnv([(lambda i=i: make_env(card, seed=i)) for i in range(n_envs)])
        venv.seed(0)
        return VecMonitor(venv)

    stacks = {
        "bare": bare,
        "native": lambda: make_vec_env(card, StateExtractor.for_program(card, None), None, n_envs, 0),
        "program": lambda: make_vec_env(card, extractor, program, n_envs, 0),
    }

    def env_loop(make: Callable[[], Any]) -> Callable[[], float]:
        def run() -> float:
            venv = make()
            venv.reset()
            t0 = time.perf_counter()
            for a in actions:
                venv.step(a)
            dt = time.perf_counter() - t0
            venv.close()
            return dt / len(actions) * 1e6
        return run

    env_us = _interleaved({k: env_loop(v) for k, v in stacks.items()}, sizes.env_repeats)

    # 2. RewardVecEnv alone over a replayed real step (no episode end in it)
    real = make_vec_env(card, extractor, None, n_envs, 0, monitor=False)
    real.reset()
    step = real.venv.step(actions[0])  # the DummyVecEnv under RewardVecEnv: its raw output
    inner = real.venv
    a0 = actions[0]
    bound = program.bind(card)

    def wrapper_loop(reward: Any) -> Callable[[], float]:
        def run() -> float:
            w = RewardVecEnv(_replay_vec_env(inner, step), extractor, reward)
            w.reset()
            t0 = time.perf_counter()
            for _ in range(sizes.wrapper_steps):
                w.step_async(a0)
                w.step_wait()
            return (time.perf_counter() - t0) / sizes.wrapper_steps * 1e6
        return run

    wrapper_us = _interleaved({"native": wrapper_loop(None), "program": wrapper_loop(bound)}, sizes.wrapper_repeats)

    # 3. cProfile of the program arm's wrapper loop: the hot spots, per vector step
    w = RewardVecEnv(_replay_vec_env(inner, step), extractor, bound)
    w.reset()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(sizes.wrapper_steps):
        w.step_async(a0)
        w.step_wait()
    prof.disable()
    real.close()

    med_env = {k: _median(v) for k, v in env_us.items()}
    med_wrap = {k: _median(v) for k, v in wrapper_us.items()}
    return {
        "n_envs": n_envs,
        "env_step_us": {"samples": env_us, "median": med_env,
                        "note": "per vector step of 4 envs, random actions, no policy; bare = DummyVecEnv of "
                                "make_env + VecMonitor; native/program = make_vec_env(None / reference)"},
        "wrapper_step_us": {"samples": wrapper_us, "median": med_wrap,
                            "program_minus_native": med_wrap["program"] - med_wrap["native"],
                            "note": "RewardVecEnv.step_async+step_wait over a replayed DummyVecEnv step (no simulator, "
                                    "no policy: caches hot, so a lower bound on the cost inside training)"},
        "profile_top": _profile_rows(prof, sizes.wrapper_steps),
    }


def _profile_rows(prof: cProfile.Profile, steps: int, top: int = 15) -> list[dict[str, Any]]:
    stats = pstats.Stats(prof)
    rows = []
    for (filename, line, name), (_cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename
        for marker in ("site-packages/", str(REPO) + "/"):
            if marker in filename:
                short = filename.split(marker, 1)[1]
        rows.append({"function": f"{short}:{line}({name})", "calls_per_step": nc / steps,
                     "tottime_us_per_step": tt / steps * 1e6, "cumtime_us_per_step": ct / steps * 1e6})
    rows.sort(key=lambda r: -r["tottime_us_per_step"])
    return rows[:top]


def _verdict(ratio: dict[str, float], goal: float) -> tuple[bool, bool | None, str]:
    """``(resolvable, met, sentence)`` for the paired ratios against the goal: resolvable when their
    interquartile range lies wholly on one side of it."""
    iqr = f"IQR {ratio['q1']:.3f}-{ratio['q3']:.3f} (width {ratio['iqr']:.3f}, {ratio['n']} pairs)"
    if ratio["q1"] <= goal <= ratio["q3"]:
        return False, None, (f"not resolved: the paired throughput ratios' {iqr} contains {goal:g}, so this run "
                             f"cannot tell whether the program keeps >= {goal:g}x of native throughput")
    if ratio["q1"] > goal:
        return True, True, f"met: the paired throughput ratios' {iqr} lies above {goal:g}"
    return True, False, f"not met: the paired throughput ratios' {iqr} lies below {goal:g}"


def bench_training(sizes: Sizes) -> dict[str, Any]:
    """Figure (a)."""
    from rewardlab.cards import load_card
    from rewardlab.program import reference_program
    from rewardlab.runtime import limit_threads
    from rewardlab.state import StateExtractor

    limit_threads()
    card = load_card(sizes.train_card)
    program = reference_program(card)
    arms = {"native": None, "program": program}
    # each arm extracts what the trainer would: only the fields its reward (and success rule) reads
    extractors = {k: StateExtractor.for_program(card, p.source if p else None) for k, p in arms.items()}
    extractor = extractors["program"]
    ov = dict(sizes.ppo_overrides)

    _log(f"(a) warm-up: one {sizes.warmup_steps}-step run per arm")
    warmup = [_train_once(card, extractors[k], arms[k], k, sizes.warmup_steps, 0, ov) for k in ("native", "program")]
    runs: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    for p in range(sizes.train_pairs):
        order = ("native", "program") if p % 2 == 0 else ("program", "native")
        got = {}
        for k in order:
            got[k] = _train_once(card, extractors[k], arms[k], k, sizes.train_steps, p, ov)
            got[k]["pair"] = p
            runs.append(got[k])
        n, g = got["native"], got["program"]
        pairs.append({
            "pair": p, "order": list(order),
            "ratio_wall": g["steps_per_s"] / n["steps_per_s"],
            "ratio_cpu": g["steps_per_cpu_s"] / n["steps_per_cpu_s"],
            "ratio_rollout": g["rollout_steps_per_s"] / n["rollout_steps_per_s"],
        })
        c = g["reward_cost"]
        _log(f"(a) pair {p}: reward path {c['us_per_step']:.0f} us per vector step = {c['fraction']:.3f}x the env's "
             f"{c['env_us_per_step']:.0f} us, {c['share_of_wall']:.1%} of training time; native "
             f"{n['steps_per_s']:.0f} steps/s, program {g['steps_per_s']:.0f} steps/s, "
             f"ratio {pairs[-1]['ratio_wall']:.3f}")

    costs = [r["reward_cost"] for r in runs if r["arm"] == "program"]
    fraction = _spread([c["fraction"] for c in costs])
    share = _spread([c["share_of_wall"] for c in costs])
    implied = _spread([1.0 - c["share_of_wall"] for c in costs])
    ratio = _spread([q["ratio_wall"] for q in pairs])
    goal = GOALS["reward_path_cost"]["value"]
    resolvable, met, verdict = _verdict(ratio, goal)
    native_sps = _median([r["steps_per_s"] for r in runs if r["arm"] == "native"])
    program_sps = _median([r["steps_per_s"] for r in runs if r["arm"] == "program"])

    _log("(a) diagnostics: env-only loop, wrapper over a replayed step, profile")
    diag = _training_diagnostics(card, extractor, program, sizes)

    return {
        "figure": "a",
        "title": "reward path time per vector step / the env's vector step time, PPO training",
        "value": fraction["median"],
        "unit": "x the env's time per vector step",
        "spread": fraction,
        "method": "RewardVecEnv.cost of each timed program run (RewardVecEnv's own timer around the wrapped "
                  "VecEnv's step_wait and around the reward path: state extraction + the batched program): "
                  "reward_s / env_s per run; value = the median over runs, spread = quartiles over runs",
        "us_per_vector_step": _spread([c["us_per_step"] for c in costs]),
        "env_us_per_vector_step": _spread([c["env_us_per_step"] for c in costs]),
        "share_of_training_time": share,
        "implied_ratio": {**implied, "met": _met("reward_path_cost", implied["median"]),
                          "note": "1 - the reward path's share of each program run's wall time: the throughput "
                                  "ratio if the reward path were the program arm's only extra work (the arms "
                                  "differ only in it); derived from the measured cost, not a measurement "
                                  "of the ratio"},
        "throughput_ratio": {**ratio, "values": [q["ratio_wall"] for q in pairs],
                             "method": "per pair, (steps/s program) / (steps/s native), wall clock, model.learn only"},
        "goal": GOALS["reward_path_cost"],
        "resolvable": resolvable,
        "met": met,
        "verdict": verdict,
        "card": card.id,
        "n_envs": runs[0]["n_envs"],
        "preset": {"file": "agents/mujoco.yaml", "algo": "ppo", "overrides": ov},
        "median_ratio_cpu": _median([q["ratio_cpu"] for q in pairs]),
        "median_ratio_rollout": _median([q["ratio_rollout"] for q in pairs]),
        "median_steps_per_s": {"native": native_sps, "program": program_sps},
        "pairs": pairs,
        "samples": runs,
        "warmup": warmup,
        "diagnostics": diag,
    }


# -- (b) batched vs per-env loop -------------------------------------------------------------------
def _autorange(fn: Callable[[], Any], min_s: float) -> int:
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 >= min_s:
            return n
        n *= 2


def bench_batched(sizes: Sizes) -> dict[str, Any]:
    """Figure (b)."""
    from rewardlab.cards import load_card
    from rewardlab.program import reference_program
    from rewardlab.rollouts import sample_states
    from rewardlab.state import StateExtractor

    B = sizes.batch_size
    tasks = {}
    for cid in sizes.batch_cards:
        card = load_card(cid)
        ex = StateExtractor(card)
        sampled = sample_states(card, n=B, seed=0)
        flat, obs, act = sampled.states, sampled.obs, sampled.actions
        fn = reference_program(card).bind(card)

        def batched(fn: Any = fn, ex: Any = ex, flat: Any = flat, obs: Any = obs, act: Any = act) -> Any:
            return fn(ex.view(flat, obs), act)

        def loop(fn: Any = fn, ex: Any = ex, flat: Any = flat, obs: Any = obs, act: Any = act) -> list[Any]:
            return [fn(ex.view(flat[i:i + 1], obs[i:i + 1]), act[i:i + 1]) for i in range(B)]

        total_b, _ = batched()
        total_l = np.concatenate([np.asarray(t) for t, _ in loop()])
        agree = bool(np.allclose(total_b, total_l, rtol=1e-12, atol=1e-12))
        numbers = {"batched": _autorange(batched, sizes.min_repeat_s), "loop": _autorange(loop, sizes.min_repeat_s)}

        def timed(f: Callable[[], Any], number: int) -> Callable[[], float]:
            def run() -> float:
                t0 = time.perf_counter()
                for _ in range(number):
                    f()
                return (time.perf_counter() - t0) / number / B * 1e6  # us per state
            return run

        samples = _interleaved({"batched": timed(batched, numbers["batched"]), "loop": timed(loop, numbers["loop"])},
                               sizes.batch_repeats)
        ratios = [lp / b for b, lp in zip(samples["batched"], samples["loop"], strict=True)]
        tasks[cid] = {
            "results_agree": agree,
            "mode": fn.mode,
            "number_per_repeat": numbers,
            "us_per_state": samples,
            "median_us_per_state": {k: _median(v) for k, v in samples.items()},
            "repeat_ratios": ratios,
            "median_ratio": _median(ratios),
        }
        _log(f"(b) {cid}: batched {tasks[cid]['median_us_per_state']['batched']:.3f} us/state, "
             f"loop {tasks[cid]['median_us_per_state']['loop']:.2f} us/state, ratio {tasks[cid]['median_ratio']:.0f}x")

    value = min(t["median_ratio"] for t in tasks.values())
    return {
        "figure": "b",
        "title": f"batched program evaluation at B={B} / per-env loop of B=1 calls (per-state time)",
        "value": value,
        "goal": GOALS["batched_speedup"],
        "met": _met("batched_speedup", value),
        "method": "per task: median over interleaved repeats of (loop us/state) / (batched us/state); "
                  "value = the smaller task median. Both arms include building the state view.",
        "batch_size": B,
        "tasks": tasks,
    }


# -- (c) check_program -------------------------------------------------------------------------------
#: A truly cold check: a fresh interpreter (rewardlab imported, nothing else), an empty cache; the time
#: of ``check_program`` alone, split at the state sampling it overlaps with the trial process's start.
_COLD_CHILD = r"""
import json, sys, time
import rewardlab.checks as checks
from rewardlab.cards import load_card

card = load_card(sys.argv[1])
source = card.reference_reward_path().read_text()
marks = {}
sample_states = checks.sample_states

def timed(*args, **kwargs):
    marks["start"] = time.perf_counter()
    out = sample_states(*args, **kwargs)
    marks["end"] = time.perf_counter()
    return out

checks.sample_states = timed
t0, c0 = time.perf_counter(), time.process_time()
report = checks.check_program(source, card, n_states=int(sys.argv[2]))
t1, c1 = time.perf_counter(), time.process_time()
print(json.dumps({"ok": report.ok, "message": report.message, "seconds": t1 - t0, "cpu_s": c1 - c0,
                  "before_sampling_s": marks["start"] - t0, "sampling_s": marks["end"] - marks["start"],
                  "after_sampling_s": t1 - marks["end"], "trial_s": report.seconds}))
"""

#: Where a cold check's time goes: its parts one after another in a fresh process with an empty cache
#: (the simulator's imports, MetaWorld's goal set, the env, the rollout, then the sandbox trial alone).
_PARTS_CHILD = r"""
import importlib, json, sys, time
from rewardlab.cards import load_card
from rewardlab.rollouts import random_rollout
from rewardlab.sims.base import make_env
from rewardlab.sims.base import get_simulator
from rewardlab.state import StateExtractor
from rewardlab.trial import run_trial

card = load_card(sys.argv[1])
n = int(sys.argv[2])
parts = {}
t = time.perf_counter()
adapter = get_simulator(card.simulator)
for package in adapter.packages:
    importlib.import_module(package)
parts["import_simulator"] = time.perf_counter() - t
if card.simulator == "metaworld":
    from rewardlab.sims.metaworld import mt1_tasks
    t = time.perf_counter()
    mt1_tasks(card.env_id, 0)
    parts["goal_set"] = time.perf_counter() - t
t = time.perf_counter()
env = make_env(card, seed=0)
parts["make_env"] = time.perf_counter() - t
t = time.perf_counter()
sampled = random_rollout(env, StateExtractor(card), n, 0)
env.close()
parts["rollout"] = time.perf_counter() - t
t = time.perf_counter()
report = run_trial(card.reference_reward_path().read_text(), card.model_dump_json(), sampled.states,
                   sampled.actions, sampled.obs)
parts["trial_alone"] = time.perf_counter() - t
print(json.dumps({"ok": report.ok, "parts": parts}))
"""


def _fresh_process(code: str, cid: str, n_states: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-cold-") as tmp:
        env = dict(os.environ, REWARDLAB_CACHE=tmp, OMP_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, "-c", code, cid, str(n_states)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"cold-check child for {cid} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _cold_checks(sizes: Sizes) -> dict[str, Any]:
    """Per card: ``cold_repeats`` fresh-process cold checks and as many part-by-part runs, interleaved."""
    out: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {cid: [] for cid in sizes.check_cards}
    parts: dict[str, list[dict[str, float]]] = {cid: [] for cid in sizes.check_cards}
    for _ in range(sizes.cold_repeats):
        for cid in sizes.check_cards:
            runs[cid].append(_fresh_process(_COLD_CHILD, cid, sizes.check_states))
            parts[cid].append(_fresh_process(_PARTS_CHILD, cid, sizes.check_states)["parts"])
    for cid in sizes.check_cards:
        rs = runs[cid]
        out[cid] = {
            "ok": all(r["ok"] for r in rs), "message": next((r["message"] for r in rs if not r["ok"]), ""),
            "samples": rs,
            **{k: _spread([r[k] for r in rs]) for k in ("seconds", "cpu_s", "sampling_s", "after_sampling_s",
                                                         "trial_s")},
            "parts": {k: _spread([p[k] for p in parts[cid]]) for k in parts[cid][0]},
        }
        med = {k: v["median"] for k, v in out[cid]["parts"].items()}
        _log(f"(c) {cid}: cold (fresh process, empty cache) {out[cid]['seconds']['median']:.2f} s median of {len(rs)} "
             f"(sampling {out[cid]['sampling_s']['median']:.2f} s, then {out[cid]['after_sampling_s']['median']:.2f} s "
             f"for the trial); parts: " + ", ".join(f"{k} {v:.2f} s" for k, v in med.items()))
    return out


def bench_check(sizes: Sizes) -> dict[str, Any]:
    """Figure (c). Cold runs use fresh processes and empty caches; the warm runs (and the first,
    cold-cache call before them) run in this process with a temporary cache."""
    from rewardlab.cards import load_card
    from rewardlab.checks import check_program

    programs = {}
    old = os.environ.get("REWARDLAB_CACHE")
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-cache-") as tmp:
        os.environ["REWARDLAB_CACHE"] = tmp
        try:
            for cid in sizes.check_cards:
                card = load_card(cid)
                source = card.reference_reward_path().read_text()
                sim_module = f"rewardlab.sims.{card.simulator}"
                imported_before = sim_module in sys.modules
                t0 = time.perf_counter()
                report = check_program(source, card, n_states=sizes.check_states)
                cold = time.perf_counter() - t0
                warm, trial = [], []
                oks = [report.ok]
                for _ in range(sizes.check_runs):
                    gc.collect()
                    t0 = time.perf_counter()
                    r = check_program(source, card, n_states=sizes.check_states)
                    warm.append(time.perf_counter() - t0)
                    trial.append(r.seconds)
                    oks.append(r.ok)
                programs[cid] = {
                    "program": f"reference reward of {cid}",
                    "ok": all(oks), "mode": report.mode, "message": report.message,
                    "cold_in_process_seconds": cold, "simulator_module_imported_before_cold": imported_before,
                    "warm_seconds": warm, "median_warm_seconds": _median(warm),
                    "trial_subprocess_seconds": trial, "median_trial_subprocess_seconds": _median(trial),
                }
                _log(f"(c) {cid}: warm median {_median(warm):.3f} s (subprocess {_median(trial):.3f} s), "
                     f"first call in this process {cold:.2f} s, ok={all(oks)}")
        finally:
            if old is None:
                os.environ.pop("REWARDLAB_CACHE", None)
            else:
                os.environ["REWARDLAB_CACHE"] = old
    cold = _cold_checks(sizes)
    for cid, c in cold.items():
        programs[cid]["ok"] = programs[cid]["ok"] and c["ok"]
        programs[cid]["message"] = programs[cid]["message"] or c["message"]

    value = max(p["median_warm_seconds"] for p in programs.values())
    cold_value = max(c["seconds"]["median"] for c in cold.values())
    return {
        "figure": "c",
        "title": "check_program(source, card) wall time, state cache warm",
        "value": value,
        "goal": GOALS["check_seconds"],
        "met": _met("check_seconds", value),
        "cold_value": cold_value,
        "cold_met": _met("check_seconds", cold_value),
        "method": "per program: median wall time of the warm runs; value = the larger median. Cold: check_program "
                  "alone in fresh processes (rewardlab imported first), each with a new empty cache (simulator "
                  "imports, MetaWorld goal set, env, random rollout, overlapping the trial process's start); "
                  "cold_value = the larger per-card median. parts: the same steps one after another in other "
                  "fresh processes, and the sandbox trial alone.",
        "n_states": sizes.check_states,
        "cold_seconds": {cid: c["seconds"]["median"] for cid, c in cold.items()},
        "cold": cold,
        "programs": programs,
    }


# -- driver ------------------------------------------------------------------------------------------
FIGURES: dict[str, tuple[str, Callable[[Sizes], dict[str, Any]]]] = {
    # (c) first: its in-process first call then includes first-time simulator imports, as a fresh
    # `rewardlab check` would (the cold figure itself comes from fresh processes)
    "c": ("check_seconds", bench_check),
    "b": ("batched_speedup", bench_batched),
    "a": ("reward_path_cost", bench_training),
}


def _iqr(s: dict[str, float], fmt: str = ".3f", scale: float = 1.0) -> str:
    return f"IQR {s['q1'] * scale:{fmt}}-{s['q3'] * scale:{fmt}}"


def _summary_a(fig: dict[str, Any]) -> list[str]:
    f, us, env_us = fig["spread"], fig["us_per_vector_step"], fig["env_us_per_vector_step"]
    share, implied, ratio = fig["share_of_training_time"], fig["implied_ratio"], fig["throughput_ratio"]
    goal = fig["goal"]["value"]
    return [
        f"(a) {fig['title']} ({fig['card']}, {fig['n_envs']} envs, {f['n']} runs)",
        f"    reward path {f['median']:.3f}x the env's step ({_iqr(f)}): {us['median']:.0f} us ({_iqr(us, '.0f')}) "
        f"of {env_us['median']:.0f} us per vector step",
        f"    = {share['median']:.1%} of training time ({_iqr(share, '.1f', 100)} %) -> implied throughput ratio "
        f"{implied['median']:.3f} ({_iqr(implied)}), goal >= {goal:g}: {'yes' if implied['met'] else 'NO'}",
        f"    paired throughput ratios program/native: median {ratio['median']:.3f}, {_iqr(ratio)} "
        f"(width {ratio['iqr']:.3f}, {ratio['n']} pairs; min {ratio['min']:.3f}, max {ratio['max']:.3f})",
        f"    goal ratio >= {goal:g}: {fig['verdict']}",
    ]


def _table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    figures = results["figures"]
    if "reward_path_cost" in figures:
        lines += _summary_a(figures["reward_path_cost"])
    rows = [(n, f) for n, f in figures.items() if n != "reward_path_cost"]
    if rows:
        lines.append(f"{'figure':<62} {'value':>10} {'goal':>10}  met")
    for name, fig in rows:
        unit = GOALS[name]["unit"]
        value = f"{fig['value']:.0f} {unit}" if name == "batched_speedup" else f"{fig['value']:.3f} {unit}"
        goal = f"{fig['goal']['op']} {fig['goal']['value']:g}"
        met = "yes" if fig["met"] else "NO"
        lines.append(f"({fig['figure']}) {fig['title'][:58]:<58} {value:>10} {goal:>10}  {met}")
        if name == "check_seconds":
            cold = ", ".join(f"{k} {c['seconds']['median']:.2f} s ({_iqr(c['seconds'], '.2f')})"
                             for k, c in fig["cold"].items())
            repeats = results["sizes"]["cold_repeats"]
            lines.append(f"    cold (fresh process, empty cache, median of {repeats}): {cold}; "
                         f"<= 1 s: {'yes' if fig['cold_met'] else 'NO'}")
            for cid, c in fig["cold"].items():
                parts = ", ".join(f"{k} {v['median']:.2f}" for k, v in c["parts"].items())
                lines.append(f"      {cid} parts (s, one after another): {parts}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the code paths (~20 s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results file (default {DEFAULT_OUT})")
    parser.add_argument("--only", default="a,b,c", help="comma-separated subset of the figures a, b, c")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only <= set(FIGURES):
        parser.error(f"--only takes a subset of a,b,c, not {args.only!r}")

    import torch

    torch.set_num_threads(1)
    sizes = QUICK if args.quick else FULL
    start = time.perf_counter()
    results: dict[str, Any] = {
        "schema": 2,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, "-m", "benchmarks.run", *(argv if argv is not None else sys.argv[1:])],
        "quick": args.quick,
        "machine": machine_info(),
        "versions": versions(),
        "sizes": dataclasses.asdict(sizes),
        "goals": GOALS,
        "figures": {},
    }
    for key, (name, fn) in FIGURES.items():
        if key in only:
            t0 = time.perf_counter()
            results["figures"][name] = fn(sizes)
            results["figures"][name]["bench_wall_s"] = time.perf_counter() - t0
    results["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["total_wall_s"] = time.perf_counter() - start
    # figure order a, b, c
    results["figures"] = {n: results["figures"][n] for n in GOALS if n in results["figures"]}

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(out)
    print(_table(results))
    note = " (--quick: smoke-test sizes, not the figures)" if args.quick else ""
    print(f"total {results['total_wall_s']:.0f} s{note}; wrote {out}")
    return results


if __name__ == "__main__":
    main()
