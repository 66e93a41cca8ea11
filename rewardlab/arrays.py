"""The ``np`` that reward programs see: an allow-list of array functions, not the numpy module.

A module object would hand untrusted code ``np.save``, ``np.load``, ``np.lib`` and ``np.ctypeslib``, and
through them files and native code. :class:`ArrayFacade` holds only the functions below, bound either
to numpy (CPU vector envs) or to torch (GPU envs) with numpy's names and argument conventions
(``axis=``), so one program runs on both.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

#: Names a reward program may use as ``np.<name>`` (plus ``np.linalg.norm``).
ALLOWED_NAMES: tuple[str, ...] = (
    "abs", "absolute", "sqrt", "square", "exp", "exp2", "log", "log1p", "expm1", "tanh", "sin", "cos",
    "tan", "arcsin", "arccos", "arctan", "arctan2", "hypot", "sign", "clip", "minimum", "maximum",
    "where", "sum", "mean", "max", "min", "prod", "any", "all", "argmax", "argmin", "cumsum", "floor",
    "ceil", "round", "power", "cross", "dot", "isclose", "isfinite", "logical_and", "logical_or",
    "logical_not", "zeros_like", "ones_like", "full_like", "zeros", "ones", "array", "asarray", "stack",
    "concatenate", "deg2rad", "rad2deg", "pi", "e", "inf", "float32", "float64", "ndarray",
)


class ArrayFacade:
    """A read-only namespace of array functions (see :data:`ALLOWED_NAMES`).

    :param functions: name -> function or constant
    :param backend: ``numpy`` or ``torch``, for messages
    """

    __slots__ = ("_functions", "_backend")

    def __init__(self, functions: dict[str, Any], backend: str):
        object.__setattr__(self, "_functions", functions)
        object.__setattr__(self, "_backend", backend)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._functions[name]
        except KeyError:
            raise AttributeError(
                f"np.{name} is not offered to reward programs (the np in a reward program is an allow-list "
                f"of array functions: {', '.join(sorted(k for k in self._functions if k != 'linalg'))}, linalg.norm)"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("np is read-only in reward programs")

    def __repr__(self) -> str:
        return f"<rewardlab array facade over {self._backend}>"


def _numpy_functions() -> dict[str, Any]:
    fns: dict[str, Any] = {name: getattr(np, name) for name in ALLOWED_NAMES}
    fns["linalg"] = ArrayFacade({"norm": np.linalg.norm}, "numpy.linalg")
    return fns


def _torch_functions(device: Any = None) -> dict[str, Any]:
    import torch

    def t(x: Any, like: Any = None) -> Any:
        if isinstance(x, torch.Tensor):
            return x
        dtype = like.dtype if isinstance(like, torch.Tensor) and like.is_floating_point() else None
        return torch.as_tensor(x, dtype=dtype, device=like.device if isinstance(like, torch.Tensor) else device)

    def reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(x: Any, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
            x = t(x)
            if axis is None:
                return fn(x.reshape(-1), dim=0)
            return fn(x, dim=axis, keepdim=keepdims)
        return wrapped

    def boolean(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda x, axis=None, keepdims=False: reduce(fn)(t(x).bool(), axis, keepdims)

    def arg(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(x: Any, axis: int | None = None) -> Any:
            x = t(x)
            return fn(x.reshape(-1)) if axis is None else fn(x, dim=axis)
        return wrapped

    def binary(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(a: Any, b: Any) -> Any:
            ref = a if isinstance(a, torch.Tensor) else b
            return fn(t(a, ref), t(b, ref))
        return wrapped

    def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
        x = t(x)
        if axis is None:
            return torch.linalg.vector_norm(x.reshape(-1), ord=2 if ord is None else ord)
        return torch.linalg.vector_norm(x, ord=2 if ord is None else ord, dim=axis, keepdim=keepdims)

    def clip(x: Any, a_min: Any = None, a_max: Any = None) -> Any:
        x = t(x)
        a_min = None if a_min is None else t(a_min, x)
        a_max = None if a_max is None else t(a_max, x)
        return torch.clamp(x, a_min, a_max)

    def where(cond: Any, a: Any, b: Any) -> Any:
        ref = a if isinstance(a, torch.Tensor) else b if isinstance(b, torch.Tensor) else t(cond)
        return torch.where(t(cond).bool(), t(a, ref), t(b, ref))

    def cumsum(x: Any, axis: int | None = None) -> Any:
        x = t(x)
        return torch.cumsum(x.reshape(-1), 0) if axis is None else torch.cumsum(x, axis)

    def isclose(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-8) -> Any:
        ref = a if isinstance(a, torch.Tensor) else b
        return torch.isclose(t(a, ref), t(b, ref), rtol=rtol, atol=atol)

    def full_like(x: Any, fill: Any) -> Any:
        return torch.full_like(t(x), fill)

    def array(x: Any, dtype: Any = None) -> Any:
        if isinstance(x, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in x):
            return torch.stack([t(v) for v in x]).to(dtype) if dtype else torch.stack([t(v) for v in x])
        return torch.as_tensor(x, dtype=dtype, device=device)

    def stack(seq: Any, axis: int = 0) -> Any:
        return torch.stack([t(v) for v in seq], dim=axis)

    def concatenate(seq: Any, axis: int = 0) -> Any:
        return torch.cat([t(v) for v in seq], dim=axis)

    def cross(a: Any, b: Any, axis: int = -1) -> Any:
        return torch.linalg.cross(t(a), t(b, a), dim=axis)

    def dot(a: Any, b: Any) -> Any:
        a, b = t(a), t(b, a)
        return torch.dot(a, b) if a.ndim == 1 and b.ndim == 1 else torch.matmul(a, b)

    def zeros(shape: Any, dtype: Any = None) -> Any:
        return torch.zeros(shape, dtype=dtype or torch.float64, device=device)

    def ones(shape: Any, dtype: Any = None) -> Any:
        return torch.ones(shape, dtype=dtype or torch.float64, device=device)

    def rnd(x: Any, decimals: int = 0) -> Any:
        return torch.round(t(x), decimals=decimals)

    unary = {
        "abs": torch.abs, "absolute": torch.abs, "sqrt": torch.sqrt, "square": torch.square,
        "exp": torch.exp, "exp2": torch.exp2, "log": torch.log, "log1p": torch.log1p, "expm1": torch.expm1,
        "tanh": torch.tanh, "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "arcsin": torch.asin,
        "arccos": torch.acos, "arctan": torch.atan, "sign": torch.sign, "floor": torch.floor,
        "ceil": torch.ceil, "isfinite": torch.isfinite, "logical_not": torch.logical_not,
        "deg2rad": torch.deg2rad, "rad2deg": torch.rad2deg, "zeros_like": torch.zeros_like,
        "ones_like": torch.ones_like,
    }
    fns: dict[str, Any] = {k: (lambda f: lambda x: f(t(x)))(f) for k, f in unary.items()}
    fns.update(
        arctan2=binary(torch.atan2), hypot=binary(torch.hypot), minimum=binary(torch.minimum),
        maximum=binary(torch.maximum), power=binary(torch.pow), logical_and=binary(torch.logical_and),
        logical_or=binary(torch.logical_or), clip=clip, where=where,
        sum=reduce(torch.sum), mean=reduce(torch.mean), max=reduce(torch.amax), min=reduce(torch.amin),
        prod=reduce(torch.prod), any=boolean(torch.any), all=boolean(torch.all),
        argmax=arg(torch.argmax), argmin=arg(torch.argmin), cumsum=cumsum, round=rnd, cross=cross, dot=dot,
        isclose=isclose, full_like=full_like, zeros=zeros, ones=ones, array=array, asarray=array,
        stack=stack, concatenate=concatenate, pi=math.pi, e=math.e, inf=math.inf,
        float32=torch.float32, float64=torch.float64, ndarray=torch.Tensor,
    )
    assert set(fns) == set(ALLOWED_NAMES), set(ALLOWED_NAMES) ^ set(fns)
    fns["linalg"] = ArrayFacade({"norm": norm}, "torch.linalg")
    return fns


_NUMPY_FACADE: ArrayFacade | None = None


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
