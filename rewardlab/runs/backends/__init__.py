"""Where trials run: :mod:`~rewardlab.runs.backends.local` (worker processes on this machine) and
:mod:`~rewardlab.runs.backends.ray` (Ray tasks on a local or existing cluster), behind
:class:`~rewardlab.runs.backends.base.Backend`."""
