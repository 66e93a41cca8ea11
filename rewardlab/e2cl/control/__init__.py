"""E2CL's continuous-control variant (:mod:`~rewardlab.e2cl.control.feasibility`): a learned feasibility
model and corrector as a wrapper around an SB3 policy under action-feasibility feedback."""
