"""rewardlab: a workbench for designing dense reward functions for reinforcement learning."""

from rewardlab.errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "__version__"]
