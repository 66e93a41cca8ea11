"""The ``np`` that reward programs see: an allow-list of array functions, not the numpy module.

A module object would hand untrusted code ``np.save``, ``np.load``, ``np.lib`` and ``np.ctypeslib``, and
through them files and native code. :class:`ArrayFacade` holds only the functions below, bound either
to numpy (CPU vector envs) or to torch (GPU envs) with numpy's names, argument conventions (``axis=``,
``keepdims=``) and dtype rules (Python floats are float64), so one program runs on both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

#: Names a reward program may use as ``np.<name>`` (plus ``np.linalg.norm``).
ALLOWED_NAMES: tuple[str, ...] = (
    "abs", "absolute", "sqrt", "square", "exp", "exp2", "log", "log1p", "expm1", "tanh", "sin", "cos",
    "tan", "arcsin", "arccos", "arctan", "arctan2", "hypot", "sign", "clip", "minimum", "maximum",
    "where", "sum", "mean", "max", "min", "prod", "any", "all", "argmax", "argmin", "cumsum", "floor",
    "ceil", "round", "power", "cross", "dot", "isclose", "isfinite", "isnan", "isinf", "logical_and", "logical_or",
    "logical_not", "zeros_like", "ones_like", "full_like", "zeros", "ones", "array", "asarray", "stack",
    "concatenate", "deg2rad", "rad2deg", "pi", "e", "inf", "float32", "float64", "ndarray",
)


class ArrayFacade:
    """A read-only namespace of array functions (see :data:`ALLOWED_NAMES`).

    :param functions: name -> function or constant
    :param backend: ``numpy`` or ``torch``, for messages
    :param prefix: how programs spell it (``np`` or ``np.linalg``), for messages
    """

    __slots__ = ("_functions", "_backend", "_prefix")

    def __init__(self, functions: dict[str, Any], backend: str, prefix: str = "np"):
        object.__setattr__(self, "_functions", functions)
        object.__setattr__(self, "_backend", backend)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._functions[name]
        except KeyError:
            raise AttributeError(f"{self._prefix}.{name} is not offered to reward programs ({self.offers()})") from None

    def offers(self) -> str:
        """What this facade holds, in words: ``"np is an allow-list ...; it offers: abs, ..."``."""
        offered = ", ".join(sorted(k for k in self._functions if k != "linalg"))
        what = "array functions" if self._prefix.startswith("np") else "names"
        return (f"the {self._prefix} in a reward program is an allow-list of {what}, not the module; "
                f"{self._prefix} offers: {offered}" + (", linalg.norm" if "linalg" in self._functions else ""))

    def offered(self) -> frozenset[str]:
        """The names a program may take from this facade (``from numpy import NAME``)."""
        return frozenset(self._functions)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._prefix} is read-only in reward programs")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{self._prefix} is read-only in reward programs")

    def __dir__(self) -> list[str]:
        return sorted(self._functions)

    def __repr__(self) -> str:
        return f"<rewardlab array facade over {self._backend}>"


class _ArrayTypeMeta(type):
    """``np.ndarray`` for ``isinstance`` only: constructing one would hand out uninitialised memory
    (``np.ndarray(shape)`` is ``np.empty``) or alias a read-only buffer."""

    _array_type: type

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls._array_type)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("np.ndarray(...) is not offered to reward programs; use np.zeros, np.ones or np.array")


def _array_type(array_type: type) -> type:
    return _ArrayTypeMeta("ndarray", (), {"_array_type": array_type, "__slots__": ()})


class TorchDType:
    """``np.float32`` / ``np.float64`` on torch: callable like numpy's scalar types (``np.float32(x)``)
    and accepted as ``dtype=`` by the facade's functions."""

    __slots__ = ("_dtype",)
    _dtype: Any

    def __init__(self, dtype: Any):
        object.__setattr__(self, "_dtype", dtype)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("np dtypes are read-only in reward programs")

    def __call__(self, x: Any) -> Any:
        import torch

        return torch.as_tensor(np.asarray(x)).to(self._dtype) if not isinstance(x, torch.Tensor) else x.to(self._dtype)

    def __repr__(self) -> str:
        return f"np.{str(self._dtype).removeprefix('torch.')}"


#: Types of the values a facade holds besides functions, modules and plain numbers.
FACADE_TYPES: tuple[type, ...] = (TorchDType, _ArrayTypeMeta)


def _numpy_functions() -> dict[str, Any]:
    fns: dict[str, Any] = {name: getattr(np, name) for name in ALLOWED_NAMES}
    fns["ndarray"] = _array_type(np.ndarray)
    fns["linalg"] = ArrayFacade({"norm": np.linalg.norm}, "numpy", "np.linalg")
    return fns


# Unary functions whose numpy result is floating for integer input (torch would give float32).
_FLOAT_RESULT = frozenset({
    "sqrt", "exp", "exp2", "log", "log1p", "expm1", "tanh", "sin", "cos", "tan", "arcsin", "arccos",
    "arctan", "deg2rad", "rad2deg",
})


def _torch_functions(device: Any = None) -> dict[str, Any]:
    import torch

    def dt(dtype: Any) -> Any:
        """numpy-style dtype arguments (np.float32, float, int, bool) as torch dtypes."""
        if dtype is None or isinstance(dtype, torch.dtype):
            return dtype
        if isinstance(dtype, TorchDType):
            return dtype._dtype  # noqa: SLF001
        return {float: torch.float64, int: torch.int64, bool: torch.bool}.get(dtype) or torch.from_numpy(
            np.zeros(0, dtype=dtype)).dtype

    def has_tensor(x: Any) -> bool:
        return isinstance(x, torch.Tensor) or (isinstance(x, list | tuple) and any(has_tensor(v) for v in x))

    def t(x: Any, like: Any = None) -> Any:
        """A tensor for ``x``, with numpy's dtype rules: Python scalars take ``like``'s float dtype
        (numpy's weak scalars), other Python floats become float64."""
        if isinstance(x, torch.Tensor):
            return x
        dev = like.device if isinstance(like, torch.Tensor) else device
        if isinstance(x, list | tuple) and has_tensor(x):
            return torch.stack([t(v, like) for v in x])
        if (isinstance(like, torch.Tensor) and like.is_floating_point() and isinstance(x, int | float)
                and not isinstance(x, bool)):
            return torch.as_tensor(x, dtype=like.dtype, device=dev)
        return torch.as_tensor(np.asarray(x), device=dev)

    def pair(a: Any, b: Any) -> tuple[Any, Any]:
        ref = a if isinstance(a, torch.Tensor) else b if isinstance(b, torch.Tensor) else None
        a, b = t(a, ref), t(b, ref)
        common = torch.promote_types(a.dtype, b.dtype)
        return a.to(common), b.to(common)

    def as_float(x: Any) -> Any:
        x = t(x)
        return x if x.is_floating_point() or x.is_complex() else x.to(torch.float64)

    def reduce(fn: Callable[..., Any], floating: bool = False) -> Callable[..., Any]:
        def wrapped(x: Any, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
            x = as_float(x) if floating else t(x)
            if axis is None:
                out = fn(x.reshape(-1), dim=0)
                return out.reshape((1,) * x.ndim) if keepdims else out
            if isinstance(axis, tuple) and fn is torch.prod:  # prod takes one dim at a time
                for a in sorted((a % x.ndim for a in axis), reverse=True):
                    x = torch.prod(x, dim=a, keepdim=True)
                return x if keepdims else x.squeeze(tuple(a % x.ndim for a in axis))
            return fn(x, dim=axis, keepdim=keepdims)
        return wrapped

    def extremum(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
            x = t(x)
            if x.dtype == torch.bool:  # amax/amin have no bool kernel
                return reduce(fn)(x.to(torch.uint8), axis, keepdims).bool()
            return reduce(fn)(x, axis, keepdims)
        return wrapped

    def boolean(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda x, axis=None, keepdims=False: reduce(fn)(t(x).bool(), axis, keepdims)

    def arg(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
            x = t(x)
            if axis is None:
                out = fn(x.reshape(-1))
                return out.reshape((1,) * x.ndim) if keepdims else out
            return fn(x, dim=axis, keepdim=keepdims)
        return wrapped

    def binary(fn: Callable[..., Any], floating: bool = False) -> Callable[..., Any]:
        def wrapped(a: Any, b: Any) -> Any:
            a, b = pair(a, b)
            if floating and not a.is_floating_point():
                a, b = a.to(torch.float64), b.to(torch.float64)
            return fn(a, b)
        return wrapped

    def unary(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _FLOAT_RESULT:
            return lambda x: fn(as_float(x))
        return lambda x: fn(t(x))

    def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
        x = as_float(x)
        o = 2 if ord is None else ord
        if axis is None:
            out = torch.linalg.vector_norm(x.reshape(-1), ord=o)
            return out.reshape((1,) * x.ndim) if keepdims else out
        return torch.linalg.vector_norm(x, ord=o, dim=axis, keepdim=keepdims)

    def clip(x: Any, a_min: Any = None, a_max: Any = None, *, min: Any = None, max: Any = None) -> Any:
        x = t(x)
        lo = a_min if a_min is not None else min
        hi = a_max if a_max is not None else max
        lo = None if lo is None else t(lo, x)
        hi = None if hi is None else t(hi, x)
        return torch.clamp(x, lo, hi)

    def where(cond: Any, a: Any, b: Any) -> Any:
        a, b = pair(a, b)
        return torch.where(t(cond).bool(), a, b)

    def cumsum(x: Any, axis: int | None = None) -> Any:
        x = t(x)
        return torch.cumsum(x.reshape(-1), 0) if axis is None else torch.cumsum(x, axis)

    def isclose(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> Any:
        a, b = pair(a, b)
        return torch.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)

    def zeros_like(x: Any, dtype: Any = None) -> Any:
        return torch.zeros_like(t(x), dtype=dt(dtype))

    def ones_like(x: Any, dtype: Any = None) -> Any:
        return torch.ones_like(t(x), dtype=dt(dtype))

    def full_like(x: Any, fill: Any, dtype: Any = None) -> Any:
        return torch.full_like(t(x), fill, dtype=dt(dtype))

    def array(x: Any, dtype: Any = None) -> Any:
        out = t(x)
        if out is x:
            out = x.clone()  # np.array copies (and the copy is writable, like numpy's)
        return out.to(dt(dtype)) if dtype is not None else out

    def asarray(x: Any, dtype: Any = None) -> Any:
        out = t(x)
        return out.to(dt(dtype)) if dtype is not None else out

    def stack(seq: Any, axis: int = 0) -> Any:
        return torch.stack([t(v) for v in seq], dim=axis)

    def concatenate(seq: Any, axis: int = 0) -> Any:
        return torch.cat([t(v) for v in seq], dim=axis)

    def cross(a: Any, b: Any, axis: int = -1) -> Any:
        a, b = pair(a, b)
        return torch.linalg.cross(a, b, dim=axis)

    def dot(a: Any, b: Any) -> Any:
        a, b = pair(a, b)
        if a.ndim == 0 or b.ndim == 0:
            return a * b
        return torch.dot(a, b) if a.ndim == 1 and b.ndim == 1 else torch.matmul(a, b)

    def zeros(shape: Any, dtype: Any = None) -> Any:
        return torch.zeros(shape, dtype=dt(dtype) or torch.float64, device=device)

    def ones(shape: Any, dtype: Any = None) -> Any:
        return torch.ones(shape, dtype=dt(dtype) or torch.float64, device=device)

    def rnd(x: Any, decimals: int = 0) -> Any:
        return torch.round(t(x), decimals=decimals)

    unaries = {
        "abs": torch.abs, "absolute": torch.abs, "sqrt": torch.sqrt, "square": torch.square,
        "exp": torch.exp, "exp2": torch.exp2, "log": torch.log, "log1p": torch.log1p, "expm1": torch.expm1,
        "tanh": torch.tanh, "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "arcsin": torch.asin,
        "arccos": torch.acos, "arctan": torch.atan, "sign": torch.sign, "floor": torch.floor,
        "ceil": torch.ceil, "isfinite": torch.isfinite, "isnan": torch.isnan, "isinf": torch.isinf,
        "logical_not": torch.logical_not,
        "deg2rad": torch.deg2rad, "rad2deg": torch.rad2deg,
    }
    fns: dict[str, Any] = {k: unary(k, f) for k, f in unaries.items()}
    fns.update(
        arctan2=binary(torch.atan2, floating=True), hypot=binary(torch.hypot, floating=True),
        minimum=binary(torch.minimum), maximum=binary(torch.maximum), power=binary(torch.pow),
        logical_and=binary(torch.logical_and), logical_or=binary(torch.logical_or), clip=clip, where=where,
        sum=reduce(torch.sum), mean=reduce(torch.mean, floating=True), max=extremum(torch.amax),
        min=extremum(torch.amin), prod=reduce(torch.prod), any=boolean(torch.any), all=boolean(torch.all),
        argmax=arg(torch.argmax), argmin=arg(torch.argmin), cumsum=cumsum, round=rnd, cross=cross, dot=dot,
        isclose=isclose, zeros_like=zeros_like, ones_like=ones_like, full_like=full_like, zeros=zeros,
        ones=ones, array=array, asarray=asarray, stack=stack, concatenate=concatenate, pi=math.pi, e=math.e,
        inf=math.inf, float32=TorchDType(torch.float32), float64=TorchDType(torch.float64),
        ndarray=_array_type(torch.Tensor),
    )
    assert set(fns) == set(ALLOWED_NAMES), set(ALLOWED_NAMES) ^ set(fns)
    fns["linalg"] = ArrayFacade({"norm": norm}, "torch", "np.linalg")
    return fns


_NUMPY_FACADE: ArrayFacade | None = None


class StrictSlices(np.ndarray):
    """A numpy array whose slices must lie inside its axes: ``obs[39:42]`` on 39 entries raises
    :class:`IndexError` instead of silently selecting nothing (numpy clips slice bounds; a reward built on
    an empty or cut slice is 0 or wrong, and looks fine). Arrays computed from it keep the check.

    The sandbox trial (what ``check`` and generation run) hands programs these; training does not (the
    per-call cost), so a program that passed the trial needs no check there. Integer indices are
    checked by numpy already.
    """

    def __getitem__(self, key: Any) -> Any:
        _check_slice_bounds(key, self.shape)
        return super().__getitem__(key)


def _check_slice_bounds(key: Any, shape: tuple[int, ...]) -> None:
    """:raises IndexError: a slice in ``key`` starts or stops outside its axis (negative steps: not checked)"""
    keys = key if isinstance(key, tuple) else (key,)
    consumed = sum(_axes_taken(k) for k in keys)
    axis = 0
    for k in keys:
        if k is Ellipsis:
            axis += len(shape) - consumed
            continue
        if k is None:
            continue
        if isinstance(k, slice) and axis < len(shape) and (k.step is None or k.step > 0):
            n = shape[axis]
            start, stop = k.start, k.stop
            bad = ((start is not None and not -n <= start < n and not (start == n and stop == n))
                   or (stop is not None and not -n <= stop <= n))
            if bad:
                text = f"{'' if start is None else start}:{'' if stop is None else stop}"
                empty = start is not None and (start >= n or start < -n)
                raise IndexError(f"slice [{text}] on axis {axis} of an array of shape {tuple(shape)} reaches past "
                                 f"its {n} entries (numpy would silently {'select nothing' if empty else 'cut it short'})")
        axis += _axes_taken(k)


def _axes_taken(k: Any) -> int:
    """How many axes one index takes: none for ``None``/``...``, a boolean mask its ``ndim``, else one."""
    if k is None or k is Ellipsis:
        return 0
    return int(k.ndim) if isinstance(k, np.ndarray) and k.dtype == np.bool_ else 1


def array_facade(backend: str = "numpy", device: Any = None) -> ArrayFacade:
    """The facade over numpy or torch.

    :param backend: ``numpy`` or ``torch``
    :param device: torch device for arrays the program creates (``np.zeros``); default CPU
    """
    global _NUMPY_FACADE
    if backend == "numpy":
        if _NUMPY_FACADE is None:
            _NUMPY_FACADE = ArrayFacade(_numpy_functions(), "numpy")
        return _NUMPY_FACADE
    if backend == "torch":
        return ArrayFacade(_torch_functions(device), "torch")
    raise ValueError(f"unknown array backend {backend!r}; expected numpy or torch")


def backend_of(x: Any) -> str:
    """``torch`` for torch tensors, else ``numpy``."""
    return "torch" if type(x).__module__.startswith("torch") else "numpy"
