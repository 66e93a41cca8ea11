"""Reward programs: source -> checked -> compiled callable over the batched state view.

A program defines ``compute_dense_reward(self, action)`` returning a total ``(B,)`` and optionally a
dict of named components ``(B,)`` each. Programs written per environment (Text2Reward style, scalar
``if`` logic, or the signature ``compute_dense_reward(self, action, obs)``) run in a *compat* mode that
loops over the batch, with a warning, since it is slow.
"""

from __future__ import annotations

import hashlib
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rewardlab.arrays import array_facade, backend_of
from rewardlab.errors import RewardProgramError, UserError
from rewardlab.sandbox import check_source, exec_program

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
        self._code = compile(report.tree, _FILENAME, "exec")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    @property
    def is_reference(self) -> bool:
        """True for the hand-written reference rewards (their docstring says so)."""
        return bool(self.doc and self.doc.lower().startswith("hand-written reference reward"))

    def bind(self, card: Any = None, backend: str = "numpy", device: Any = None, mode: str = "auto") -> "CompiledReward":
        """Execute the module body in a restricted namespace and return the callable reward.

        :param card: the env card the program is for (kept for messages)
        :param backend: array backend of the inputs, ``numpy`` or ``torch``
        :param device: torch device for arrays the program creates
        :param mode: ``batched``, ``scalar`` (per-env compat loop) or ``auto`` (decided on the first call)
        """
        facade = array_facade(backend, device)
        try:
            namespace = exec_program(self._code, facade)
        except RewardProgramError:
            raise
        except Exception as e:  # the module body itself failed (a bad constant, a failed import)
            raise _runtime_error(e) from None
        fn = namespace[ENTRY]
        if len(self.params) == 3:
            mode = "scalar"  # Text2Reward's (self, action, obs) signature is per-env
        return CompiledReward(fn, mode=mode, card_id=getattr(card, "id", None), backend=backend)


def load_program(source_or_path: str | Path, origin: str | None = None) -> RewardProgram:
    """Load a program from a file path or from source text; raise :class:`UserError` if unreadable.

    :param source_or_path: a ``.py`` path, or the source itself (anything containing a newline)
    :param origin: override the recorded origin
    """
    text = str(source_or_path)
    if "\n" not in text:
        path = Path(text)
        if not path.is_file():
            raise UserError(f"reward program file not found: {path}")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read reward program {path}: {e}") from None
        origin = origin or str(path)
    return RewardProgram(text, origin=origin or "inline")


def _runtime_error(e: BaseException) -> RewardProgramError:
    """Turn an exception raised inside a program into a one-line rejection naming the program's line."""
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == _FILENAME:
            line = frame.lineno
    return RewardProgramError("runtime", f"{type(e).__name__}: {e}", line)


class CompiledReward:
    """The callable reward: ``reward(view, action) -> (total (B,), {name: (B,)})``.

    Checks every output: shape ``(B,)`` (scalars broadcast), real numeric dtype, and finiteness.
    Non-finite values raise :class:`RewardProgramError` naming the component; they are never zeroed.
    """

    def __init__(self, fn: Callable[..., Any], mode: str, card_id: str | None, backend: str):
        if mode not in ("auto", "batched", "scalar"):
            raise ValueError(f"mode must be auto, batched or scalar, not {mode!r}")
        self.fn = fn
        self.mode = mode
        self.card_id = card_id
        self.backend = backend
        self.component_names: tuple[str, ...] | None = None

    def __call__(self, view: Any, action: Any, obs: Any = None) -> tuple[Any, dict[str, Any]]:
        batch = view.batch_size
        if self.mode == "scalar":
            return self._scalar(view, action, batch)
        try:
            out = self.fn(view, action)
            total, comps = self._validate(out, batch)
        except (ValueError, TypeError, RewardProgramError) as e:
            if self.mode == "auto" and batch > 1 and _looks_scalar(e):
                warnings.warn(
                    f"reward program for {self.card_id or 'this env'} is written per environment; running it in "
                    "compat mode (a Python loop over the batch, slow). Write it with array ops to run batched.",
                    CompatModeWarning, stacklevel=2,
                )
                self.mode = "scalar"
                return self._scalar(view, action, batch)
            raise e if isinstance(e, RewardProgramError) else _runtime_error(e) from None
        except RecursionError:
            raise RewardProgramError("recursion", "maximum recursion depth exceeded") from None
        except MemoryError:
            raise
        except Exception as e:
            raise _runtime_error(e) from None
        if self.mode == "auto" and batch > 1:
            self.mode = "batched"
        return total, comps

    def _scalar(self, view: Any, action: Any, batch: int) -> tuple[Any, dict[str, Any]]:
        totals, comps_rows = [], []
        batched_input = view._flat.ndim > 1  # noqa: SLF001
        for i in range(batch):
            row = view.row(i) if batched_input else view
            args = (row, action[i] if batched_input else action)
            if self.fn.__code__.co_argcount == 3:
                args += (row._obs,)  # noqa: SLF001 - the raw observation, for (self, action, obs) programs
            try:
                out = self.fn(*args)
            except RecursionError:
                raise RewardProgramError("recursion", "maximum recursion depth exceeded") from None
            except MemoryError:
                raise
            except RewardProgramError:
                raise
            except Exception as e:
                raise _runtime_error(e) from None
            t, c = self._validate(out, 1, scalar=True)
            totals.append(t)
            comps_rows.append(c)
        stack = _stacker(self.backend)
        total = stack(totals)
        names = comps_rows[0].keys() if comps_rows else ()
        return total, {k: stack([c[k] for c in comps_rows]) for k in names}

    def _validate(self, out: Any, batch: int, scalar: bool = False) -> tuple[Any, dict[str, Any]]:
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
            total, comps = out
        elif isinstance(out, tuple):
            raise RewardProgramError("output", f"{ENTRY} returned a tuple of {len(out)}; return total or (total, {{name: value}})")
        else:
            total, comps = out, {}
        total = self._as_vector(total, batch, "the total", scalar)
        checked = {}
        for name, value in comps.items():
            if not isinstance(name, str):
                raise RewardProgramError("output", f"component names must be strings, got {name!r}")
            checked[name] = self._as_vector(value, batch, f"component {name!r}", scalar)
        if self.component_names is None:
            self.component_names = tuple(checked)
        return total, checked

    def _as_vector(self, value: Any, batch: int, what: str, scalar: bool) -> Any:
        if self.backend == "torch":
            import torch

            v = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
            if v.dtype == torch.bool or not (v.is_floating_point() or v.dtype in (torch.int32, torch.int64)):
                if v.dtype != torch.bool:
                    raise RewardProgramError("output", f"{what} has dtype {v.dtype}; a real number is needed")
            v = v.to(torch.float32) if not v.is_floating_point() else v
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


def _looks_scalar(e: BaseException) -> bool:
    """Errors that per-env (scalar) code raises when handed a batch."""
    text = str(e)
    return any(s in text for s in (
        "truth value of an array", "only length-1 arrays", "only 0-dimensional arrays",
        "one element can be converted", "Boolean value of Tensor", "expected (",
        "must be a scalar", "can only convert an array of size 1",
    ))


def _stacker(backend: str) -> Callable[[list[Any]], Any]:
    if backend == "torch":
        import torch

        return lambda xs: torch.stack(xs) if xs else torch.empty(0)
    return lambda xs: np.asarray(xs, dtype=np.float64)


def reference_program(card: Any) -> RewardProgram:
    """The hand-written reference reward stored beside a card."""
    path = card.reference_reward_path()
    if path is None:
        raise UserError(f"{card.id} has no hand-written reference reward (expected {card.path.with_suffix('.py') if card.path else '?'})")
    return load_program(path, origin=f"reference:{card.id}")


__all__ = ["RewardProgram", "CompiledReward", "CompatModeWarning", "load_program", "reference_program", "backend_of"]
