"""CPU cost of one ExpAdaRD redesign on LINEK: the learner-aware weights and the HiGHS LP, averaged over 200
random learner policies. Run from the repository root:

    .venv/bin/python experiments/results/thesis-expadard-paper/lp_timing.py

Prints milliseconds per redesign and what 100,020 redesigns (10 runs × 50,010 episodes / 5) cost.
"""

from __future__ import annotations

import time

import numpy as np

from rewardlab.shaping.expadard import AdaptiveDesignLP, state_features
from rewardlab.shaping.teachers import Teacher
from rewardlab.sims.gridworld import linek


def main(n: int = 200) -> None:
    mdp = linek()
    lp = AdaptiveDesignLP(Teacher.solve(mdp), state_features("linek", mdp))
    rng = np.random.default_rng(0)
    policies = [rng.dirichlet(np.ones(mdp.n_actions), size=mdp.n_states) for _ in range(n)]
    start = time.process_time()
    weights = [lp.informativeness_weights(p) for p in policies]
    per_weights = (time.process_time() - start) / n
    start = time.process_time()
    for c in weights:
        lp.solve(c)
    per_lp = (time.process_time() - start) / n
    total = per_weights + per_lp
    print(f"per redesign (CPU): weights {per_weights * 1e3:.2f} ms, LP {per_lp * 1e3:.2f} ms; "
          f"100,020 redesigns: {total * 100020:.0f} s of CPU")


if __name__ == "__main__":
    main()
