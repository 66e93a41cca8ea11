"""Experiments: specs (what to train), the runner and its backends, and the report.

``rewardlab run SPEC`` is :func:`~rewardlab.runs.runner.run_experiment`; ``rewardlab report RUN`` is
:func:`~rewardlab.runs.report.write_report`. Names are imported on first use, so importing a light
part (the spec) does not load the runner, the plots and scipy.
"""

from __future__ import annotations

from rewardlab.registry import lazy_exports

_LAZY = {
    "ExperimentSpec": "rewardlab.runs.spec",
    "TrialSpec": "rewardlab.runs.spec",
    "load_spec": "rewardlab.runs.spec",
    "run_experiment": "rewardlab.runs.runner",
    "write_report": "rewardlab.runs.report",
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_exports("rewardlab.runs", _LAZY)
