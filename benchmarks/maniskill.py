"""ManiSkill3 rollout throughput with a reward program on the simulator's device.

    python -m benchmarks.maniskill [--task PickCube-v1] [--pairs 10] [--steps 200] [--out FILE]

(a) ``program_over_env``: steps/s of the GPU trainer's rollout step (:class:`rewardlab.sims.maniskill.
    ManiSkillBatch`: physics, state read on the device, partial resets) with the card's hand-written
    reference program as the reward (``TorchStateReader`` + the program on the torch ``np`` facade) ÷
    steps/s of the same step with the env's own dense reward, in the same process on the same device.
    Arms alternate in pairs (order flipped every pair); the figure is the median pair ratio with its
    IQR. Goal >= 0.95. On a machine without CUDA this runs ManiSkill's ``physx_cpu`` backend with one
    env, so the program's share of a step is measured against slow CPU physics.
(b) ``gpu_steps_per_s``: absolute env steps/s with the program reward at 1k, 4k and 16k envs on
    ``physx_cuda`` (goal >= 100k steps/s on PickCube). Without CUDA these are recorded as
    ``"not measured: no GPU"``, never estimated.

Actions are uniform random on the device; the policy's cost is not part of either figure.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import datetime as _dt
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results_maniskill.json"
GPU_SIZES = (1024, 4096, 16384)
GOALS = {"program_over_env": 0.95, "gpu_steps_per_s_pickcube": 100_000}
NO_GPU = "not measured: no GPU"


def _arm(card: Any, program: Any, num_envs: int, device: str, seed: int) -> tuple[Any, Any]:
    """The rollout step of one arm: ``(batch env, reward function)``."""
    from rewardlab.sims.maniskill import ManiSkillBatch
    from rewardlab.state import StateExtractor
    from rewardlab.training.gpu import DeviceReward

    extractor = StateExtractor.for_program(card, program.source if program is not None else None)
    env = ManiSkillBatch(card, extractor, num_envs=num_envs, device=device)
    env.reset(seed=seed)
    return env, DeviceReward(card, extractor, program, sparse=False, device=device)


def _steps_per_s(env: Any, reward: Any, steps: int, device: str) -> float:
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    actions = [torch.rand((env.num_envs, env.act_dim), generator=gen, device=device) * 2 - 1 for _ in range(8)]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        _, states, env_reward, _, _, success = env.step(actions[i % 8])
        r, _ = reward(states, actions[i % 8], env_reward, success)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    float(r.sum())  # the reward was computed, not queued
    return env.num_envs * steps / (time.perf_counter() - start)


def measure_ratio(task: str, pairs: int, steps: int, num_envs: int, device: str) -> dict[str, Any]:
    """Figure (a): paired program/env throughput ratios on one device."""
    from rewardlab.cards import load_card
    from rewardlab.program import load_program

    card = load_card(f"maniskill/{task}")
    program = load_program(card.reference_reward_path())
    env_arm = _arm(card, None, num_envs, device, 0)
    prog_arm = _arm(card, program, num_envs, device, 0)
    _steps_per_s(*env_arm, max(steps // 5, 5), device)  # warm-up both
    _steps_per_s(*prog_arm, max(steps // 5, 5), device)
    env_rates, prog_rates, ratios = [], [], []
    for pair in range(pairs):
        order = (env_arm, prog_arm) if pair % 2 == 0 else (prog_arm, env_arm)
        rates = {id(arm): _steps_per_s(*arm, steps, device) for arm in order}
        env_rates.append(rates[id(env_arm)])
        prog_rates.append(rates[id(prog_arm)])
        ratios.append(rates[id(prog_arm)] / rates[id(env_arm)])
    for env, _ in (env_arm, prog_arm):
        env.close()
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return {"task": task, "device": device, "num_envs": num_envs, "steps_per_arm": steps, "pairs": pairs,
            "median": statistics.median(ratios), "iqr": [q[0], q[2]], "goal": GOALS["program_over_env"],
            "met": statistics.median(ratios) >= GOALS["program_over_env"],
            "env_reward_steps_per_s_median": statistics.median(env_rates),
            "program_reward_steps_per_s_median": statistics.median(prog_rates), "ratios": ratios,
            "env_reward_steps_per_s": env_rates, "program_reward_steps_per_s": prog_rates}


def measure_gpu(task: str, steps: int) -> dict[str, Any]:
    """Figure (b): env steps/s with the program reward at each of :data:`GPU_SIZES` on CUDA."""
    from rewardlab.cards import load_card
    from rewardlab.program import load_program

    card = load_card(f"maniskill/{task}")
    program = load_program(card.reference_reward_path())
    out: dict[str, Any] = {}
    for n in GPU_SIZES:
        env, reward = _arm(card, program, n, "cuda", 0)
        _steps_per_s(env, reward, 10, "cuda")
        out[str(n)] = _steps_per_s(env, reward, steps, "cuda")
        env.close()
    return out


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count(), "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        from importlib.metadata import version

        info["mani_skill"] = version("mani_skill")
        info["sapien"] = version("sapien")
    except Exception:  # noqa: BLE001 - versions are a record, not a requirement
        pass
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from rewardlab.runtime import limit_threads

    limit_threads()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.maniskill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="PickCube-v1", help="ManiSkill card task (maniskill/<task>)")
    parser.add_argument("--pairs", type=int, default=10, help="alternating program/env pairs for figure (a)")
    parser.add_argument("--steps", type=int, default=200, help="batched steps per arm and pair")
    parser.add_argument("--gpu-steps", type=int, default=200, help="batched steps per size for figure (b)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for name in ("pairs", "steps", "gpu_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    import importlib.util

    if importlib.util.find_spec("mani_skill") is None:
        result: dict[str, Any] = {"program_over_env": "not measured: mani-skill not installed",
                                  "gpu_steps_per_s": "not measured: mani-skill not installed"}
    else:
        import torch

        gpu = torch.cuda.is_available()
        device = "cuda" if gpu else "cpu"
        result = {"program_over_env": measure_ratio(args.task, args.pairs, args.steps, GPU_SIZES[0] if gpu else 1, device),
                  "gpu_steps_per_s": measure_gpu(args.task, args.gpu_steps) if gpu else {str(n): NO_GPU for n in GPU_SIZES}}
    result["goals"] = GOALS
    result["machine"] = machine()
    result["when"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if not isinstance(vv, list)}
                      for k, v in result.items()}, indent=1))
    return result


if __name__ == "__main__":
    main()
