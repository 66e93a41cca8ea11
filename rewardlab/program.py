"""Reward programs: source -> checked -> compiled callable over the batched state view.

A program defines ``compute_dense_reward(self, action)`` returning a total ``(B,)`` and optionally a
dict of named components ``(B,)`` each. Programs written per environment (Text2Reward style, scalar
``if`` logic, or the signature ``compute_dense_reward(self, action, obs)``) run in a *compat* mode that
loops over the batch, with a warning, since it is slow.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import math
import traceback
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rewardlab.aliases import compat_aliases
from rewardlab.arrays import StrictSlices, array_facade, backend_of
from rewardlab.cards import EnvCard, read_text_file
from rewardlab.errors import RewardProgramError, UserError, closest, one_line
from rewardlab.sandbox import MAX_SOURCE_BYTES, check_source, exec_program
from rewardlab.types import Array, Components, RewardOutput

if TYPE_CHECKING:
    from rewardlab.state import StateView

Backend = Literal["numpy", "torch"]
Mode = Literal["auto", "batched", "scalar"]

ENTRY = "compute_dense_reward"
_FILENAME = "<reward program>"


class CompatModeWarning(UserWarning):
    """A program runs per environment in a Python loop (slow); write it batched to avoid this."""


@dataclass
class RewardProgram:
    """A reward program's source, statically checked at construction.

    :param source: Python source defining ``compute_dense_reward``
    :param origin: where it came from (a file path, ``reference``, ``llm:<exchange id>``, ...)
    :param parent: sha256 of the program this one was derived from (feedback lineage), if any
    """

    source: str
    origin: str = "inline"
    parent: str | None = None
    params: tuple[str, ...] = field(init=False)
    doc: str | None = field(init=False)

    def __post_init__(self) -> None:
        report = check_source(self.source, ENTRY)
        self.params = report.signature
        self.doc = report.docstring
        self._tree = report.tree
        self._code = compile(report.tree, _FILENAME, "exec")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    @property
    def is_reference(self) -> bool:
        """True for the hand-written reference rewards (their docstring says so)."""
        return bool(self.doc and self.doc.lower().startswith("hand-written reference reward"))

    def bind(self, card: EnvCard | None = None, backend: Backend = "numpy", device: Any = None,
             mode: Mode = "auto", strict_slices: bool = False) -> CompiledReward:
        """Execute the module body in a restricted namespace and return the callable reward.

        :param card: the env card the program is for (kept for messages)
        :param backend: array backend of the inputs, ``numpy`` or ``torch``
        :param device: torch device for arrays the program creates
        :param mode: ``batched``, ``scalar`` (per-env compat loop) or ``auto`` (decided on the first call)
        :param strict_slices: numpy inputs refuse slices past their axes (:class:`~rewardlab.arrays.StrictSlices`);
            the sandbox trial's setting
        """
        if card is not None:
            check_fields(self._tree, card)
        facade = array_facade(backend, device)
        guards: list[tuple[Any, Any]] = []
        try:
            namespace = exec_program(self._code, facade, guards)
        except (RewardProgramError, MemoryError):
            raise
        except Exception as e:  # the module body itself failed (a bad constant, a failed import)
            raise _runtime_error(e) from None
        fn = namespace.get(ENTRY)
        if not isinstance(fn, types.FunctionType) or fn.__name__ != ENTRY or fn.__code__.co_filename != _FILENAME:
            raise RewardProgramError(
                "entry", f"{ENTRY} must stay the function the program defines (it was rebound at module level)")
        if len(self.params) == 3:  # Text2Reward's (self, action, obs) signature is per-env
            mode = "scalar"
            warnings.warn(
                f"reward program for {card.id if card is not None else 'this env'} takes (self, action, obs), the "
                "per-environment Text2Reward signature; running it in compat mode (a Python loop over the "
                "batch, slow). Write it as (self, action) with array ops to run batched.",
                CompatModeWarning, stacklevel=2,
            )
        return CompiledReward(fn, mode=mode, card_id=card.id if card is not None else None, backend=backend, guards=guards,
                              strict_slices=strict_slices)


def load_program(source_or_path: str | Path, origin: str | None = None) -> RewardProgram:
    """Load a program from a file path or from source text; raise :class:`UserError` if unreadable.

    :param source_or_path: a ``.py`` path, or the source itself (anything with a newline, or one
        line starting with ``def``/``import``/``from``)
    :param origin: override the recorded origin
    """
    text = str(source_or_path)
    if "\n" not in text and not text.lstrip().startswith(("def ", "import ", "from ")):
        path = Path(text)
        if not path.is_file():
            raise UserError(f"reward program file not found: {path}")
        try:
            size = path.stat().st_size
        except OSError as e:
            raise UserError(f"reward program {path} cannot be read: {e.strerror}") from None
        if size > MAX_SOURCE_BYTES:  # refused before reading: a 10 MB file is not a reward program
            raise RewardProgramError("size", f"{path} is {size} bytes; the limit is {MAX_SOURCE_BYTES}")
        text = read_text_file(path, "reward program")
        origin = origin or str(path)
    return RewardProgram(text, origin=origin or "inline")


def check_fields(tree: ast.Module, card: EnvCard) -> None:
    """Raise :class:`RewardProgramError` (rule ``unknown-field``) listing every ``self.X`` / ``self.X.Y``
    the program reads that the card does not have, each with a "did you mean", and the card's fields.

    Reads ``self`` in every function that takes a parameter of that name (the entry point and helpers
    written like methods); values handed to helpers under other names are checked when read.
    """
    entities = card.entities
    fields = [f"self.{name}" for name in card.fields()]
    unknown: dict[str, int | None] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"):
            continue
        name = node.attr
        if name not in entities:
            unknown.setdefault(f"self.{name}", getattr(node, "lineno", None))
    for node in ast.walk(tree):  # self.entity.field
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            entity = entities.get(node.value.attr)
            if isinstance(entity, dict) and node.attr not in entity:
                unknown.setdefault(f"self.{node.value.attr}.{node.attr}", getattr(node, "lineno", None))
    if not unknown:
        return
    described = []
    for name in unknown:
        close = closest(name, fields)
        if name == "self.env":  # Text2Reward's env accessors: only the aliased ones map to fields
            mapped = ", ".join(f"{expr} -> self.{field}" for expr, field in compat_aliases().items())
            described.append(f"self.env (the env is read through the card's fields; Text2Reward accessors "
                             f"mapped: {mapped or 'none'})")
        else:
            described.append(f"{name} (did you mean {close}?)" if close else name)
    raise RewardProgramError(
        "unknown-field", f"env card {card.label} has no {', '.join(described)}; its fields are "
        f"{', '.join(fields)}", min((line for line in unknown.values() if line is not None), default=None))


def _runtime_error(e: BaseException) -> RewardProgramError:
    """Turn an exception raised inside a program into a one-line rejection naming the program's line."""
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == _FILENAME:
            line = frame.lineno
    text = one_line(f"{type(e).__name__}: {e}")
    if (isinstance(e, ValueError) and "read-only" in text) or (isinstance(e, RuntimeError) and "inference tensor" in text):
        return RewardProgramError("read-only", "the program wrote into a read-only array (the state view, the "
                                  "action, obs and module-level constants are read-only; copy with np.array first)", line)
    if isinstance(e, RecursionError):
        return RewardProgramError("recursion", "maximum recursion depth exceeded", line)
    return RewardProgramError("runtime", text, line)


class CompiledReward:
    """The callable reward: ``reward(view, action) -> (total (B,), {name: (B,)})``.

    The program sees private, read-only copies of the state, the action and the observation (torch
    tensors cannot be read-only: it gets inference-mode copies, which refuse in-place updates, and any
    change that slips past them is detected after the call), so it can neither corrupt the caller's
    arrays nor keep state in them. Checks every output: shape ``(B,)`` (scalars broadcast), real numeric
    dtype, finiteness, and the same component names on every call. Non-finite values raise
    :class:`RewardProgramError` naming the component; they are never zeroed.

    In ``auto`` mode the first batched call (B > 1) decides: a program that fails on a batch with the
    errors per-env code raises, or whose batched result differs from its result on single envs (e.g.
    ``np.linalg.norm(d)`` without ``axis`` reduces over the whole batch), runs in compat mode.

    :param fn: the program's ``compute_dense_reward``
    :param mode: ``auto``, ``batched`` or ``scalar``
    :param card_id: the card's id, for messages
    :param backend: ``numpy`` or ``torch``
    :param guards: ``(tensor, snapshot)`` pairs of module-level torch tensors, checked after each call
    :param strict_slices: numpy inputs are :class:`~rewardlab.arrays.StrictSlices` (slices past an axis raise)
    """

    def __init__(self, fn: Callable[..., Any], mode: Mode, card_id: str | None, backend: Backend,
                 guards: list[tuple[Any, Any]] | None = None, strict_slices: bool = False):
        if mode not in ("auto", "batched", "scalar"):
            raise ValueError(f"mode must be auto, batched or scalar, not {mode!r}")
        self.fn = fn
        self.mode = mode
        self.card_id = card_id
        self.backend = backend
        self.guards = list(guards or ())
        self.strict_slices = strict_slices
        self.component_names: tuple[str, ...] | None = None
        self._device: Any = None
        self._takes_obs = fn.__code__.co_argcount == 3
        #: why the program runs per env (None while batched or undecided), for progress lines
        self.compat_reason: str | None = "it takes (self, action, obs)" if self._takes_obs else None

    def __call__(self, view: StateView, action: Array, obs: Array | None = None) -> RewardOutput:
        batch = view.batch_size
        flat, raw_obs = view._flat, view._obs if obs is None else obs  # noqa: SLF001
        self._device = getattr(flat, "device", None)  # torch: where constant outputs are put
        if self._takes_obs and raw_obs is None:
            raise RewardProgramError("entry", f"{ENTRY}(self, action, obs) needs the raw observation, and this "
                                     "state view was built without one")
        private = [_private(x, self.strict_slices) for x in (flat, action, raw_obs)]
        pairs = [(p, o) for p, o in zip(private, (flat, action, raw_obs)) if p is not None]
        try:
            out = self._run(type(view)(private[0], private[2]), private[1], batch)
        except RewardProgramError as e:
            if e.rule != "read-only":  # that one already names the line
                self._check_untouched(pairs)
            raise
        self._check_untouched(pairs)
        return out

    def _run(self, view: StateView, action: Array, batch: int) -> RewardOutput:
        if self.mode == "auto":
            self._decide(*_probe_batch(view, action))
        if self.mode == "scalar":
            return self._scalar(view, action, batch)
        try:
            return self._validate(self.fn(view, action), batch)
        except (RewardProgramError, MemoryError):
            raise
        except Exception as e:
            raise _runtime_error(e) from None

    def _decide(self, view: StateView, action: Array) -> None:
        """Settle ``auto`` mode on a probe batch (see :func:`_probe_batch`): batched if the program runs
        on it and agrees with itself run on single envs, per-env if only the per-env loop runs it.

        Every way scalar code shows itself on a batch of more than one env fails or disagrees there:
        indexing a field (``pos[2]`` picks an env, not a coordinate), ``math.*``/``float()`` on arrays,
        ``if`` on arrays, Python ``sum``/``max`` over the batch, reductions without ``axis``.
        """
        batch = view.batch_size
        try:
            total, comps = self._validate(self.fn(view, action), batch)
        except MemoryError:
            raise
        except Exception as e:
            error = e if isinstance(e, RewardProgramError) else _runtime_error(e)
            if error.rule in ("read-only", "non-finite", "recursion"):
                raise error from None
            self._try_scalar(view, action, batch, error, looks_scalar=_looks_scalar(e) and error.rule != "output")
            return
        if not self._agrees_per_env(view, action, total, comps):
            self._try_scalar(view, action, batch, None, looks_scalar=True)
            return
        self.mode = "batched"

    def _try_scalar(self, view: StateView, action: Array, batch: int, batched_error: RewardProgramError | None,
                    looks_scalar: bool) -> None:
        """Run per env; on success switch to compat mode for good (with one warning). If the per-env
        loop fails too, the error shown is the per-env one when the batched failure looked like per-env
        code meeting a batch, else the batched one (a batched program with a bug, or a wrong shape)."""
        names, self.component_names = self.component_names, None
        try:
            self._scalar(view, action, batch)
        except RewardProgramError:
            self.component_names = names
            if batched_error is not None and not looks_scalar:
                raise batched_error from None
            raise
        self.mode = "scalar"
        self.compat_reason = "it indexes or converts single values (per-environment code)"
        warnings.warn(
            f"reward program for {self.card_id or 'this env'} is written per environment; running it in "
            "compat mode (a Python loop over the batch, slow). Write it with array ops to run batched.",
            CompatModeWarning, stacklevel=5,
        )

    def _agrees_per_env(self, view: StateView, action: Array, total: Array, comps: Components) -> bool:
        """Whether the batched result matches the program run on single envs (first and last)."""
        names = self.component_names
        for i in (0, view.batch_size - 1):
            try:
                t, c = self._validate(self.fn(view.row(i), action[i]), 1, scalar=True, names=False)
            except Exception:  # batched code need not run on one unbatched env (x[:, 0], axis=1)
                return True
            got = [t] + [c.get(k) for k in names or ()]
            want = [total[i]] + [comps[k][i] for k in names or ()]
            if set(c) != set(names or ()) or not all(_close(g, w) for g, w in zip(got, want)):
                return False
        return True

    def _scalar(self, view: StateView, action: Array, batch: int) -> RewardOutput:
        totals, comps_rows = [], []
        batched_input = view._flat.ndim > 1  # noqa: SLF001
        for i in range(batch):
            row = view.row(i) if batched_input else view
            args: tuple[Any, ...] = (row, action[i] if batched_input else action)
            if self._takes_obs:
                args += (row._obs,)  # the raw observation, for (self, action, obs) programs
            try:
                out = self.fn(*args)
            except MemoryError:
                raise
            except RewardProgramError:
                raise
            except Exception as e:
                raise _runtime_error(e) from None
            t, c = self._validate(out, 1, scalar=True, row=i if batched_input else None)
            totals.append(t)
            comps_rows.append(c)
        stack = _stacker(self.backend)
        total = stack(totals)
        names = self.component_names or ()
        return total, {k: stack([c[k] for c in comps_rows]) for k in names}

    def _validate(self, out: Any, batch: int, scalar: bool = False, row: int | None = None,
                  names: bool = True) -> RewardOutput:
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
            total, comps = out
        elif isinstance(out, tuple):
            raise RewardProgramError(
                "output", f"{ENTRY} returned a tuple of {len(out)}; return total or (total, {{name: value}})")
        else:
            total, comps = out, {}
        where = "" if row is None else f" (env {row})"
        total = self._as_vector(total, batch, "the total" + where, scalar)
        checked = {}
        for name, value in comps.items():
            if not isinstance(name, str):
                raise RewardProgramError("output", f"component names must be strings, got {one_line(repr(name), 60)}")
            checked[name] = self._as_vector(value, batch, f"component {name!r}" + where, scalar)
        if names:
            if self.component_names is None:
                self.component_names = tuple(checked)
            elif set(checked) != set(self.component_names):
                raise RewardProgramError(
                    "output", f"the components changed{where}: {sorted(checked)} after {sorted(self.component_names)}; "
                    "return the same components every time (0 where a term does not apply)")
        return total, checked

    def _as_vector(self, value: Any, batch: int, what: str, scalar: bool) -> Array:
        v: Any
        if self.backend == "torch":
            import torch

            try:
                if isinstance(value, torch.Tensor):
                    v = value
                elif isinstance(value, float | int) and not isinstance(value, bool):
                    v = torch.as_tensor(value, dtype=torch.float64, device=self._device)
                else:
                    v = torch.as_tensor(value, device=self._device)
            except Exception:
                raise RewardProgramError("output", f"{what} is a {type(value).__name__}, not a number or array") from None
            if v.is_complex():
                raise RewardProgramError("output", f"{what} has dtype {v.dtype}; a real number is needed")
            if not v.is_floating_point():
                v = v.to(torch.float64)
            elif v.is_inference():
                v = v.clone()  # a slice of the state view: hand the caller an ordinary tensor
            finite = bool(torch.isfinite(v).all())
        else:
            try:
                v = np.asarray(value)
            except Exception:
                raise RewardProgramError("output", f"{what} is a {type(value).__name__}, not a number or array") from None
            if v.dtype.kind not in "fiub":
                raise RewardProgramError("output", f"{what} has dtype {v.dtype}; a real number is needed")
            v = v.astype(np.float64, copy=False)
            finite = bool(np.isfinite(v).all())
        if scalar:
            if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != 1):
                raise RewardProgramError("output", f"{what} must be a scalar per env in compat mode, got shape {tuple(v.shape)}")
            v = v.reshape(())
        elif v.ndim == 0:
            v = v.expand(batch) if self.backend == "torch" else np.broadcast_to(v, (batch,))
        elif tuple(v.shape) != (batch,):
            raise RewardProgramError("output", f"{what} has shape {tuple(v.shape)}; expected ({batch},), one value per env")
        if not finite:
            raise RewardProgramError("non-finite", f"{what} is not finite (NaN or inf) for some states")
        return v

    def _check_untouched(self, pairs: list[tuple[Any, Any]]) -> None:
        """Torch only: the private inputs and module-level tensors still equal what they were."""
        if self.backend != "torch" and not self.guards:
            return
        import torch

        for i, (mine, original) in enumerate(pairs + self.guards):
            if isinstance(mine, torch.Tensor) and not _same(mine, original):
                what = "its inputs (state view, action, obs)" if i < len(pairs) else "a module-level constant"
                raise RewardProgramError("read-only", f"the program modified {what}; they are read-only")


def _private(x: Any, strict_slices: bool = False) -> Any:
    """A read-only copy of an input array for the program (torch: an inference-mode copy)."""
    if x is None:
        return None
    if isinstance(x, np.ndarray | list | tuple):
        x = np.array(x)
        if strict_slices:
            x = x.view(StrictSlices)
        x.flags.writeable = False
        return x
    if type(x).__module__.startswith("torch"):
        import torch

        with torch.inference_mode():
            return x.clone()
    return x


def _same(a: Any, b: Any) -> bool:
    import torch

    if torch.equal(a, b):
        return True
    if not a.is_floating_point() or a.shape != b.shape:
        return False
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())  # NaN states are not changes


def _close(a: Any, b: Any) -> bool:
    a, b = float(a), float(b)
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) or (math.isnan(a) and math.isnan(b))


def _probe_batch(view: StateView, action: Array) -> tuple[StateView, Array]:
    """The batch ``auto`` mode decides on: the caller's own if it has two or more envs and its size is no
    field's dimension, else the caller's rows cycled to ``P`` envs, where ``P >= 5`` is no field's
    dimension, so per-env code cannot pass by coincidence (``pos[2]`` is an index error on a batch of 1
    and a row of the right shape on a batch of 3).

    :param view: the state view of the call (``(B, D)`` or one env's ``(D,)``)
    :param action: its actions, ``(B, ...)``
    :return: a view of ``P`` envs and their actions
    """
    flat, obs = view._flat, view._obs  # noqa: SLF001
    if flat.ndim == 1:  # one env, unbatched
        flat, action = flat[None], action[None]
        obs = None if obs is None else obs[None]
    batch, dims = flat.shape[0], type(view).field_dims | {flat.shape[-1]}
    if batch >= 2 and batch not in dims and view._flat.ndim == 2:  # noqa: SLF001
        return view, action  # the caller's own batch already tells the two apart
    size = next(p for p in itertools.count(5) if p not in dims)
    index: Any = np.arange(size) % batch
    if backend_of(flat) == "torch":
        import torch

        index = torch.as_tensor(index, device=flat.device)
    return type(view)(flat[index], None if obs is None else obs[index]), action[index]


def _looks_scalar(e: BaseException) -> bool:
    """Errors that per-env (scalar) code raises when handed a batch."""
    if isinstance(e, IndexError):  # `pos[2]` indexing the batch axis, not a coordinate
        return "axis 0" in str(e) or "dimension 0" in str(e)
    text = str(e)
    return any(s in text for s in (
        "truth value of an array", "only length-1 arrays", "only 0-dimensional arrays",
        "one element can be converted", "Boolean value of Tensor", "expected (",
        "must be a scalar", "can only convert an array of size 1",
        "only one element tensors", "cannot be converted to Scalar",  # torch's float(t), t.item()
    ))


def _stacker(backend: str) -> Callable[[list[Any]], Any]:
    if backend == "torch":
        import torch

        return lambda xs: torch.stack(xs) if xs else torch.empty(0)
    return lambda xs: np.asarray(xs, dtype=np.float64)


def reference_program(card: EnvCard) -> RewardProgram:
    """The hand-written reference reward stored beside a card.

    :raises UserError: the card has none
    """
    path = card.reference_reward_path()
    if path is None:
        expected = card.path.with_suffix(".py") if card.path else "?"
        raise UserError(f"{card.id} has no hand-written reference reward (expected {expected})")
    return load_program(path, origin=f"reference:{card.id}")


__all__ = ["RewardProgram", "CompiledReward", "CompatModeWarning", "load_program", "reference_program", "backend_of"]
