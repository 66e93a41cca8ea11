"""What the runner hands a backend and gets back (defined with the trainers, in
:mod:`rewardlab.training.tasks`, so the generation loop's probes use the same pool)."""

from rewardlab.training.tasks import Backend, TrialOutcome, TrialTask, describe_error, run_trial_task

__all__ = ["Backend", "TrialOutcome", "TrialTask", "describe_error", "run_trial_task"]
