"""Mixture-of-experts policies for (multi-task) RL: routers (one class per paper), MoE layers, the SB3
features extractor and policy, and routing diagnostics.

- :mod:`rewardlab.moe.routers`: top-k (Switch/M6-T), expert prototyping, expert choice, normalized
  sigmoid (DeepSeekMoE), softmax and modified softmax, dense-to-sparse (EvoMoE), Tsallis hybrid
  (DynMoLE), Soft MoE, task attention (CARE);
- :mod:`rewardlab.moe.layers`: ``MoELayer``/``MoEMLP`` (dense-masked or grouped compute, shared experts);
- :mod:`rewardlab.moe.sb3`: ``MoEExtractor`` for any SB3 algorithm and the callback that logs diagnostics;
- :mod:`rewardlab.moe.diagnostics`: utilization, imbalance, drops, entropy, saturation, change rate, I(task; expert);
- :mod:`rewardlab.moe.summary`: the routing section of a run report (json only);
- :mod:`rewardlab.moe.studies`: the synthetic convergence studies (Mendes & Jiang; Nguyen et al.);
- :mod:`rewardlab.moe.multitask`: MT10 multi-head SAC vs MoE-SAC at matched parameter counts.

Imports torch; nothing here is loaded unless a policy, spec or command names it.
"""
