"""The diagnosis probe of the README's "What changed" table: SFT on STEPS expert steps for EPOCHS epochs
(seed 0), then on each held-out split the planner's teacher-forced next step against the expert's on
about 400 held-out steps (right / invalid template / wrong verb / wrong object) and 40 plain rollouts.

    python experiments/results/e2cl-household/probe.py STEPS EPOCHS D_MODEL LAYERS   # e.g. 6000 16 64 2
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from rewardlab.e2cl.agents import SeqAgent
from rewardlab.e2cl.exploration import collect_demos, expert_records
from rewardlab.e2cl.inference import run_episodes
from rewardlab.e2cl.model import ModelConfig, Seq2Seq
from rewardlab.e2cl.sft import fit
from rewardlab.e2cl.tokenizer import Tokenizer
from rewardlab.household.env import HouseholdEnv
from rewardlab.household.world import Feedback, parse_action
from rewardlab.runtime import limit_threads


def main(steps: int, epochs: int, d: int, layers: int) -> None:
    limit_threads()
    tok = Tokenizer()
    start = time.perf_counter()
    records = expert_records(collect_demos(steps, 0, "train", 30), feedback=False)
    torch.manual_seed(0)
    model = Seq2Seq(len(tok), tok.pad, tok.bos, tok.eos, ModelConfig(d_model=d, layers=layers, ff=2 * d))
    fit(model, tok, records, epochs, 2e-3, 32, 0)
    print(f"trained in {time.perf_counter() - start:.0f} s")
    agent = SeqAgent(model, tok)
    for split in ("unseen_compositions", "unseen_homes"):
        held_out = collect_demos(400, 99, split, 30)
        contexts = [c for demo in held_out for c, _ in demo.steps]
        expert = [s for demo in held_out for _, s in demo.steps]
        kinds = dict.fromkeys(("right", "invalid", "verb", "object"), 0)
        for got, want in zip(agent.plan(contexts), expert, strict=True):
            a, b = parse_action(got), parse_action(want)
            kind = ("right" if got == want else "invalid" if isinstance(a, Feedback)
                    else "verb" if isinstance(b, Feedback) or a.verb != b.verb else "object")
            kinds[kind] += 1
        envs = [HouseholdEnv(split=split, max_steps=30) for _ in range(40)]
        stats = run_episodes(agent, envs, [10_000 + i for i in range(40)], speculative=False)
        print(split, {k: round(v / len(expert), 3) for k, v in kinds.items()}, f"steps {len(expert)}",
              f"success {np.mean([s.success for s in stats]):.3f}",
              f"executability {np.mean([s.executability for s in stats]):.3f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:5]))
