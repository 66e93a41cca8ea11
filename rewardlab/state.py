"""The batched *state view*: the ``self`` a reward program reads.

A card's fields are packed into one flat array per environment (``(B, D)`` for a batch). The view is
an object whose attributes are read-only slices of that array, shaped as the card says, so
``self.robot.ee_position`` is ``(B, 3)`` and ``self.goal_position`` is ``(B, 3)``. The same view class
serves a single environment (flat ``(D,)``), which is what scalar compat-mode programs see, and torch
tensors as well as numpy arrays.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable
from typing import Any

import numpy as np

from rewardlab.aliases import apply_aliases
from rewardlab.cards import EnvCard, FieldSpec
from rewardlab.errors import UserError, closest


class StateExtractor:
    """Turns observations (and, for ``sim`` fields, the simulator) into flat state vectors.

    Simulator fields are read per env (:meth:`sim_vector`) at step time, before any auto-reset, so
    that the terminal state is the one a reward sees; :meth:`batch` then gathers observation and
    simulator columns for the whole batch with one index.

    :param card: the env card whose fields to extract
    :param fields: dotted field names to extract (default: all); see :func:`fields_used_by`
    """

    def __init__(self, card: EnvCard, fields: Iterable[str] | None = None):
        self.card = card
        every = card.fields()
        wanted = set(every) if fields is None else set(fields)
        unknown = wanted - set(every)
        if unknown:
            raise UserError(f"env card {card.label} has no field {sorted(unknown)[0]!r}")
        self.fields: dict[str, FieldSpec] = {k: v for k, v in every.items() if k in wanted}
        self.offsets: dict[str, tuple[int, int]] = {}
        # per flat position: ("obs", field name) or ("sim", index); obs columns depend on the width of
        # the observation (``obs[-3:]``), so they are resolved per width in _index
        self._layout: list[tuple[str, str | int]] = []
        sim_sources: list[str] = []
        sim_size = 0
        pos = 0
        for name, spec in self.fields.items():
            self.offsets[name] = (pos, pos + spec.size)
            if spec.kind == "obs":
                self._layout.append(("obs", name))
            else:
                sim_sources.append(spec.source)
                self._layout += [("sim", sim_size + k) for k in range(spec.size)]
                sim_size += spec.size
            pos += spec.size
        self.dim = pos
        self.sim_dim = sim_size
        self.has_sim = bool(sim_sources)
        # One compiled function reads every simulator field: a step pays one call, not one per field.
        self._sim_fn = eval(  # noqa: S307 - card sources, checked by FieldSpec (attribute chains only)
            compile(f"lambda env, data, model, np: ({', '.join(sim_sources)},)", f"<card {card.id}>", "eval"),
            {"__builtins__": builtins},
        ) if sim_sources else None
        self._scalar_sim = all(spec.size == 1 and not spec.shape for spec in self.fields.values() if spec.kind == "sim")
        self._gather: dict[int, np.ndarray] = {}
        self.view_class = make_view_class(card, self.offsets)

    @classmethod
    def for_program(cls, card: EnvCard, source: str | None) -> StateExtractor:
        """An extractor of only what a program (None: the env's own reward) and the success rule read."""
        fields = set(fields_used_by(card, source)) if source is not None else set()
        rule = card.success_rule
        if rule is not None:
            fields |= rule.fields
        return cls(card, fields)

    def sim_vector(self, env: Any) -> np.ndarray:
        """Values of the simulator fields of one env, concatenated (float64)."""
        if self._sim_fn is None:
            return np.empty(0)
        base = getattr(env, "unwrapped", env)
        values = self._sim_fn(base, getattr(base, "data", None), getattr(base, "model", None), np)
        if self._scalar_sim:
            return np.array(values, dtype=np.float64)
        return np.concatenate([np.ravel(v) for v in values]).astype(np.float64, copy=False)

    def _index(self, obs_dim: int) -> np.ndarray:
        index = self._gather.get(obs_dim)
        if index is None:
            positions: list[int] = []
            for kind, ref in self._layout:
                if kind == "sim":
                    positions.append(obs_dim + int(ref))
                    continue
                spec = self.fields[str(ref)]
                try:
                    cols = spec.obs_columns(obs_dim)
                except IndexError:
                    raise UserError(f"env card {self.card.label}: {ref} source {spec.source} is outside the "
                                    f"{obs_dim}-d observation") from None
                if len(cols) != spec.size:
                    raise UserError(f"env card {self.card.label}: {ref} source {spec.source} gives {len(cols)} "
                                    f"values of the {obs_dim}-d observation; shape {spec.shape} needs {spec.size}")
                positions += cols
            index = np.array(positions, dtype=np.intp)
            self._gather[obs_dim] = index
        return index

    def batch(self, obs: np.ndarray, sim: np.ndarray | None = None) -> np.ndarray:
        """Flat states ``(B, D)`` from observations ``(B, ...)`` and simulator vectors ``(B, S)``.

        Each env's observation is flattened: a Discrete observation ``(B,)`` is one column, a Box
        ``(B, H, W)`` is ``H * W`` columns in C order.
        """
        obs = np.asarray(obs)
        if obs.ndim != 2:
            obs = obs.reshape(obs.shape[0], -1)
        source = np.concatenate((obs, sim), axis=1) if self.has_sim and sim is not None else obs
        return source.take(self._index(obs.shape[1]), axis=1)

    def view(self, flat: Any, obs: Any = None) -> StateView:
        """A read-only view over flat states ``(B, D)`` or ``(D,)`` (numpy or torch)."""
        if isinstance(flat, np.ndarray):
            flat.flags.writeable = False
        return self.view_class(flat, obs)


def obs_columns(obs: Any) -> np.ndarray:
    """One env's observation as float columns ``(O,)``. A structured observation (a Dict or Tuple
    space, text: the household env) has no array columns: ``(0,)``; its cards read every field through
    accessors, and ``obs[...]`` sources are refused for it when the card is checked."""
    if isinstance(obs, dict | tuple | str):
        return np.zeros(0)
    return np.asarray(obs, dtype=np.float64)


def fields_used_by(card: EnvCard, source: str) -> list[str]:
    """The card fields a program can read: those whose name appears as an attribute in its source.

    Sound because programs cannot reach attributes other than by ``x.name`` syntax (``getattr`` and
    friends are rejected by the sandbox), so unused fields need not be extracted every step.
    """
    try:
        tree = apply_aliases(ast.parse(source))  # self.env._get_pos_goal() reads goal_position
    except SyntaxError:
        return list(card.fields())
    names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    return [name for name in card.fields() if name.rsplit(".", 1)[-1] in names]


class StateView:
    """Base class of the generated views; attributes are read-only."""

    __slots__ = ("_flat", "_obs")
    #: every dimension of every field's shape (the generated classes fill it in)
    field_dims: frozenset[int] = frozenset()
    _flat: Any  # (B, D) or (D,), numpy or torch
    _obs: Any  # the raw observations, for (self, action, obs) programs, or None

    def __init__(self, flat: Any, obs: Any = None):
        object.__setattr__(self, "_flat", flat)
        object.__setattr__(self, "_obs", obs)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the state view is read-only: cannot set {name!r}")

    def __getattr__(self, name: str) -> Any:  # only reached for names the view does not have
        if name.startswith("_"):
            raise AttributeError(name)
        offered = sorted(k for k, v in vars(type(self)).items() if isinstance(v, property))
        close = closest(name, offered)
        hint = f"did you mean {close!r}? " if close else ""
        raise AttributeError(f"the state has no field {name!r} here; {hint}it has: {', '.join(offered)}")

    @property
    def batch_size(self) -> int:
        return 1 if self._flat.ndim == 1 else int(self._flat.shape[0])

    def row(self, i: int) -> StateView:
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


def _entity_getter(entity_cls: type[StateView]) -> Any:
    def get(self: StateView) -> StateView:
        return entity_cls(self._flat, self._obs)
    return get


def make_view_class(card: EnvCard, offsets: dict[str, tuple[int, int]]) -> type[StateView]:
    """Generate the view class for a card: one property per field, one sub-view per entity."""
    attrs: dict[str, Any] = {"__slots__": ()}
    attrs["field_dims"] = frozenset(d for spec in card.fields().values() for d in spec.shape)
    for name, value in card.entities.items():
        if isinstance(value, FieldSpec):
            if name in offsets:
                start, stop = offsets[name]
                attrs[name] = _field_property(start, stop, tuple(value.shape), value.doc)
            continue
        sub: dict[str, Any] = {"__slots__": ()}
        for fname, spec in value.items():
            if f"{name}.{fname}" in offsets:
                start, stop = offsets[f"{name}.{fname}"]
                sub[fname] = _field_property(start, stop, tuple(spec.shape), spec.doc)
        entity_cls = type(f"{name.title().replace('_', '')}View", (StateView,), sub)
        attrs[name] = property(_entity_getter(entity_cls))
    return type("EnvStateView", (StateView,), attrs)
