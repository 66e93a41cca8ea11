"""The feedback-balance probe of the README: seed 0's SFT model and exploration data (from the trainer's
cache after ``rewardlab run experiments/e2cl_household.yaml``, else recomputed, same result), E2CL's
final training with RATIO "True" feedback records per error for EPOCHS epochs, then 50 episodes per
held-out split with plain and with speculative inference: success, executability, how often the
feedback model fired, how often the proposal was really infeasible, how many corrections were accepted.

    python experiments/results/e2cl-household/probe_feedback.py RATIO EPOCHS      # e.g. 3 3
"""

from __future__ import annotations

import sys
import time

import numpy as np

from rewardlab.e2cl.agents import SeqAgent
from rewardlab.e2cl.exploration import collect_demos, expert_records
from rewardlab.e2cl.inference import run_episodes
from rewardlab.e2cl.sft import fit
from rewardlab.e2cl.tokenizer import Tokenizer
from rewardlab.e2cl.trainer import E2CLConfig, E2CLTrainer, _Stages, balance_feedback
from rewardlab.household.env import HouseholdEnv
from rewardlab.runtime import limit_threads
from rewardlab.training.evaluation import eval_seed


def main(ratio: float, epochs: int, seed: int = 0, steps: int = 6000) -> None:
    limit_threads()
    cfg = E2CLConfig(sft_epochs=14, finetune_epochs=3, teacher_free_episodes=128)  # the spec's settings
    stages, tok, trainer = _Stages(True), Tokenizer(), E2CLTrainer()
    sft_key = {"stage": "sft", "seed": seed, "demo_steps": steps, "max_steps": 30,
               **cfg.model_dump(exclude={"cache", "finetune_epochs", "teacher_free_episodes", "explore_temperature"})}
    demos = collect_demos(steps, seed, "train", 30)
    records = expert_records(demos, feedback=True)
    model = trainer._sft(tok, cfg, seed, [r for r in records if r.skill == "plan"], stages.path(sft_key))
    explore_key = {**sft_key, "stage": "explore", "teacher_free_episodes": 128, "explore_temperature": 1.0}
    explored, _ = trainer._explore(model, tok, cfg, seed, demos, 30, stages.path(explore_key))
    data, balance = balance_feedback(records + explored, ratio, seed)
    start = time.perf_counter()
    fit(model, tok, data, epochs, cfg.lr, cfg.batch_size, seed + 1)
    print(balance, f"final training {time.perf_counter() - start:.0f} s")
    agent = SeqAgent(model, tok)
    for split in ("unseen_compositions", "unseen_homes"):
        for speculative in (False, True):
            envs = [HouseholdEnv(split=split, max_steps=30) for _ in range(50)]
            st = run_episodes(agent, envs, [eval_seed(seed) + i for i in range(50)], speculative=speculative)
            print(split, "speculative" if speculative else "plain",
                  f"success {np.mean([s.success for s in st]):.2f}",
                  f"executability {np.mean([s.executability for s in st]):.3f}",
                  f"fired {sum(s.fired for s in st)}/{sum(s.steps for s in st)} steps",
                  f"proposal infeasible {sum(s.fired_right for s in st)}", f"accepted {sum(s.accepted for s in st)}",
                  f"accepted and executable {sum(s.accepted_right for s in st)}")


if __name__ == "__main__":
    main(float(sys.argv[1]), int(sys.argv[2]))
