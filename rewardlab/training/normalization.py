"""A trained trial's frozen observation normalisation (SB3's ``VecNormalize`` statistics), read without
torch or stable-baselines3: export folds it into the ONNX graph, and code that calls ``policy.predict``
on raw env observations (the E2CL feasibility variant) applies it first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ObsNormalization:
    """VecNormalize's observation statistics: ``clip((obs - mean) / sqrt(var + eps), -clip, clip)``."""

    mean: np.ndarray
    var: np.ndarray
    epsilon: float
    clip: float

    def apply(self, obs: np.ndarray) -> np.ndarray:
        """As SB3's ``VecNormalize.normalize_obs`` computes it (float64)."""
        return np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip, self.clip)


def load_normalization(trial_dir: Path) -> ObsNormalization | None:
    """The trial's frozen observation statistics (``vecnormalize.pkl``), or None when it trained without."""
    path = trial_dir / "vecnormalize.pkl"
    if not path.is_file():
        return None
    import pickle

    with path.open("rb") as f:
        vn = pickle.load(f)  # noqa: S301 - the trial's own file, written by SB3's VecNormalize.save
    if not getattr(vn, "norm_obs", True):
        return None
    rms = vn.obs_rms
    return ObsNormalization(np.asarray(rms.mean, float), np.asarray(rms.var, float), float(vn.epsilon), float(vn.clip_obs))
