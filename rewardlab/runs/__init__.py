"""Experiments: specs (what to train), the run store (what happened), the runner and the report.

``rewardlab run SPEC`` is :func:`run_experiment`; ``rewardlab report RUN`` is :func:`write_report`.
"""

from rewardlab.runs.report import write_report
from rewardlab.runs.runner import run_experiment
from rewardlab.runs.spec import ExperimentSpec, TrialSpec, load_spec
from rewardlab.runs.store import RunStore

__all__ = ["ExperimentSpec", "RunStore", "TrialSpec", "load_spec", "run_experiment", "write_report"]
