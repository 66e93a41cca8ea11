"""The batched *state view*: the ``self`` a reward program reads.

A card's fields are packed into one flat array per environment (``(B, D)`` for a batch). The view is
an object whose attributes are read-only slices of that array, shaped as the card says, so
``self.robot.ee_position`` is ``(B, 3)`` and ``self.goal_position`` is ``(B, 3)``. The same view class
serves a single environment (flat ``(D,)``), which is what scalar compat-mode programs see, and torch
tensors as well as numpy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardlab.cards import EnvCard, FieldSpec, eval_source
from rewardlab.errors import UserError


class StateExtractor:
    """Turns observations (and, for ``sim`` fields, the simulator) into flat state vectors.

    Observation fields are gathered for the whole batch with one fancy index; simulator fields are
    read per env (:meth:`sim_vector`) at step time, before any auto-reset, so that the terminal state
    is the one a reward sees.

    :param card: the env card whose fields to extract
    """

    def __init__(self, card: EnvCard):
        self.card = card
        self.fields: dict[str, FieldSpec] = card.fields()
        self.offsets: dict[str, tuple[int, int]] = {}
        obs_pos: list[int] = []
        obs_cols: list[int] = []
        sim_pos: list[int] = []
        self._sim_code = []
        pos = 0
        for name, spec in self.fields.items():
            self.offsets[name] = (pos, pos + spec.size)
            if spec.kind == "obs":
                cols = spec.obs_columns()
                if len(cols) != spec.size:
                    raise UserError(
                        f"env card {card.id}: {name} source {spec.source} gives {len(cols)} values, "
                        f"shape {spec.shape} needs {spec.size}"
                    )
                obs_pos += range(pos, pos + spec.size)
                obs_cols += cols
            else:
                sim_pos += range(pos, pos + spec.size)
                self._sim_code.append(compile(spec.source, f"<card {card.id}: {name}>", "eval"))
            pos += spec.size
        self.dim = pos
        self.obs_pos = np.asarray(obs_pos, dtype=np.intp)
        self.obs_cols = np.asarray(obs_cols, dtype=np.intp)
        self.sim_pos = np.asarray(sim_pos, dtype=np.intp)
        self.has_sim = bool(self._sim_code)
        self.view_class = make_view_class(card, self.offsets)

    def sim_vector(self, env: Any) -> np.ndarray:
        """Values of every simulator field of one env, concatenated (float64)."""
        parts = [np.ravel(eval_source(code, env)) for code in self._sim_code]
        return np.concatenate(parts).astype(np.float64) if parts else np.empty(0)

    def batch(self, obs: np.ndarray, sim: np.ndarray | None = None) -> np.ndarray:
        """Flat states ``(B, D)`` from observations ``(B, O)`` and simulator vectors ``(B, S)``."""
        obs = np.asarray(obs)
        out = np.empty((obs.shape[0], self.dim), dtype=np.float64)
        out[:, self.obs_pos] = obs[:, self.obs_cols]
        if self.has_sim:
            out[:, self.sim_pos] = sim
        return out

    def view(self, flat: Any, obs: Any = None) -> "StateView":
        """A read-only view over flat states ``(B, D)`` or ``(D,)`` (numpy or torch)."""
        if isinstance(flat, np.ndarray):
            flat.flags.writeable = False
        return self.view_class(flat, obs)


class StateView:
    """Base class of the generated views; attributes are read-only."""

    __slots__ = ("_flat", "_obs")

    def __init__(self, flat: Any, obs: Any = None):
        object.__setattr__(self, "_flat", flat)
        object.__setattr__(self, "_obs", obs)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the state view is read-only: cannot set {name!r}")

    @property
    def batch_size(self) -> int:
        return 1 if self._flat.ndim == 1 else int(self._flat.shape[0])

    def row(self, i: int) -> "StateView":
        """The view of environment ``i`` alone (used by scalar compat-mode programs)."""
        obs = None if self._obs is None else self._obs[i]
        return type(self)(self._flat[i], obs)


def _field_property(start: int, stop: int, shape: tuple[int, ...], doc: str) -> property:
    if not shape:
        def get(self: StateView) -> Any:
            return self._flat[..., start]
    else:
        def get(self: StateView) -> Any:
            flat = self._flat
            return flat[..., start:stop].reshape(tuple(flat.shape[:-1]) + shape)
    return property(get, doc=doc)


def make_view_class(card: EnvCard, offsets: dict[str, tuple[int, int]]) -> type[StateView]:
    """Generate the view class for a card: one property per field, one sub-view per entity."""
    attrs: dict[str, Any] = {"__slots__": ()}
    for name, value in card.entities.items():
        if isinstance(value, FieldSpec):
            start, stop = offsets[name]
            attrs[name] = _field_property(start, stop, tuple(value.shape), value.doc)
            continue
        sub: dict[str, Any] = {"__slots__": ()}
        for fname, spec in value.items():
            start, stop = offsets[f"{name}.{fname}"]
            sub[fname] = _field_property(start, stop, tuple(spec.shape), spec.doc)
        entity_cls = type(f"{name.title().replace('_', '')}View", (StateView,), sub)
        attrs[name] = property(lambda self, _c=entity_cls: _c(self._flat, self._obs))
    return type("EnvStateView", (StateView,), attrs)
