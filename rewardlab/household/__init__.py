"""A household environment of rewardlab's own, for E2CL (VirtualHome's simulator is a downloaded binary):

- :mod:`~rewardlab.household.world`: homes, objects with states and relations, 25 templated verbs with
  preconditions and natural-language feedback;
- :mod:`~rewardlab.household.tasks`: task templates, compositions and the three splits;
- :mod:`~rewardlab.household.planner`: the expert planner, from any state;
- :mod:`~rewardlab.household.env`: :class:`HouseholdEnv` (gymnasium), registered as simulator ``household``.
"""

from __future__ import annotations

from rewardlab.household.env import HouseholdEnv
from rewardlab.household.planner import expert_plan, next_expert_step
from rewardlab.household.tasks import SPLITS, Task, parse_task, split_homes, split_tasks
from rewardlab.household.world import ENTITIES, OBJECTS, ROOMS, VERBS, Action, Feedback, World, generate_home

__all__ = ["ENTITIES", "OBJECTS", "ROOMS", "SPLITS", "VERBS", "Action", "Feedback", "HouseholdEnv", "Task", "World",
           "expert_plan", "generate_home", "next_expert_step", "parse_task", "split_homes", "split_tasks"]
