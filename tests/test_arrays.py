"""The array facade (the ``np`` of reward programs): every offered name behaves on torch inputs as
numpy does on numpy inputs (values, shapes, axis/keepdims, float64 for Python floats), and anything
not offered fails with a clear AttributeError."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from rewardlab.arrays import ALLOWED_NAMES, array_facade

NP = array_facade("numpy")
TORCH = array_facade("torch")

rng = np.random.default_rng(0)
X = rng.normal(size=(4, 3))                      # any real
P = np.abs(X) + 0.1                              # positive
U = np.clip(X / 3, -0.9, 0.9)                    # in (-1, 1)
I = rng.integers(-5, 6, size=(4, 3))  # noqa: E741 - integers, named like the other inputs
M = rng.integers(0, 2, size=(4, 3)).astype(bool)  # booleans
F = X.copy()
F[0, 0], F[1, 1], F[2, 2] = np.nan, np.inf, -np.inf
V, W = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
SQ = rng.normal(size=(3, 2))

Case = Callable[[Any, Callable[[np.ndarray], Any]], Any]

#: name -> calls, each written once against a facade `f` and a converter `a` (numpy array -> backend).
CASES: dict[str, list[Case]] = {
    "abs": [lambda f, a: f.abs(a(X)), lambda f, a: f.abs(a(I))],
    "absolute": [lambda f, a: f.absolute(a(X))],
    "sqrt": [lambda f, a: f.sqrt(a(P)), lambda f, a: f.sqrt(a(np.abs(I))), lambda f, a: f.sqrt(2.0)],
    "square": [lambda f, a: f.square(a(X)), lambda f, a: f.square(a(I))],
    "exp": [lambda f, a: f.exp(a(X)), lambda f, a: f.exp(-0.5)],
    "exp2": [lambda f, a: f.exp2(a(X))],
    "log": [lambda f, a: f.log(a(P))],
    "log1p": [lambda f, a: f.log1p(a(P))],
    "expm1": [lambda f, a: f.expm1(a(X))],
    "tanh": [lambda f, a: f.tanh(a(X)), lambda f, a: f.tanh(a(I))],
    "sin": [lambda f, a: f.sin(a(X))],
    "cos": [lambda f, a: f.cos(a(X))],
    "tan": [lambda f, a: f.tan(a(U))],
    "arcsin": [lambda f, a: f.arcsin(a(U))],
    "arccos": [lambda f, a: f.arccos(a(U))],
    "arctan": [lambda f, a: f.arctan(a(X))],
    "arctan2": [lambda f, a: f.arctan2(a(X), a(P)), lambda f, a: f.arctan2(a(I), 2)],
    "hypot": [lambda f, a: f.hypot(a(X), a(P)), lambda f, a: f.hypot(a(X), 0.5)],
    "sign": [lambda f, a: f.sign(a(X))],
    "clip": [lambda f, a: f.clip(a(X), -0.5, 0.5), lambda f, a: f.clip(a(X), None, 0.2),
             lambda f, a: f.clip(a(X), -0.1, a(P)), lambda f, a: f.clip(a(I), 0, 2),
             lambda f, a: f.clip(a(X), min=-0.3, max=0.3)],
    "minimum": [lambda f, a: f.minimum(a(X), 0.0), lambda f, a: f.minimum(a(X), a(P)), lambda f, a: f.minimum(0.25, a(X))],
    "maximum": [lambda f, a: f.maximum(a(X), a(P)), lambda f, a: f.maximum(a(X)[:, :1], a(X))],
    "where": [lambda f, a: f.where(a(X) > 0, a(X), 0.0), lambda f, a: f.where(a(M), 1.0, 0.0),
              lambda f, a: f.where(a(M), a(X), a(P))],
    "sum": [lambda f, a: f.sum(a(X)), lambda f, a: f.sum(a(X), axis=-1), lambda f, a: f.sum(a(X), axis=0, keepdims=True),
            lambda f, a: f.sum(a(X), axis=(0, 1)), lambda f, a: f.sum(a(M), axis=-1), lambda f, a: f.sum(a(X), -1),
            lambda f, a: f.sum(a(X), keepdims=True)],
    "mean": [lambda f, a: f.mean(a(X)), lambda f, a: f.mean(a(X), axis=0), lambda f, a: f.mean(a(X), axis=-1, keepdims=True),
             lambda f, a: f.mean(a(I), axis=1), lambda f, a: f.mean(a(M))],
    "max": [lambda f, a: f.max(a(X)), lambda f, a: f.max(a(X), axis=-1), lambda f, a: f.max(a(X), axis=0, keepdims=True),
            lambda f, a: f.max(a(M), axis=-1), lambda f, a: f.max(a(X), axis=(0, 1))],
    "min": [lambda f, a: f.min(a(X)), lambda f, a: f.min(a(X), axis=-1), lambda f, a: f.min(a(I), axis=0, keepdims=True)],
    "prod": [lambda f, a: f.prod(a(P)), lambda f, a: f.prod(a(P), axis=1), lambda f, a: f.prod(a(P), axis=(0, 1)),
             lambda f, a: f.prod(a(P), axis=0, keepdims=True)],
    "any": [lambda f, a: f.any(a(M)), lambda f, a: f.any(a(M), axis=-1), lambda f, a: f.any(a(X) > 1, axis=0, keepdims=True)],
    "all": [lambda f, a: f.all(a(M)), lambda f, a: f.all(a(M), axis=-1), lambda f, a: f.all(a(P) > 0, axis=0)],
    "argmax": [lambda f, a: f.argmax(a(X)), lambda f, a: f.argmax(a(X), axis=-1),
               lambda f, a: f.argmax(a(X), axis=0, keepdims=True)],
    "argmin": [lambda f, a: f.argmin(a(X)), lambda f, a: f.argmin(a(X), axis=1)],
    "cumsum": [lambda f, a: f.cumsum(a(X)), lambda f, a: f.cumsum(a(X), axis=0), lambda f, a: f.cumsum(a(X), axis=-1)],
    "floor": [lambda f, a: f.floor(a(X * 3))],
    "ceil": [lambda f, a: f.ceil(a(X * 3))],
    "round": [lambda f, a: f.round(a(X)), lambda f, a: f.round(a(X), 2), lambda f, a: f.round(a(X * 10), decimals=-1)],
    "power": [lambda f, a: f.power(a(P), 2), lambda f, a: f.power(a(P), a(X)), lambda f, a: f.power(a(P), 0.5)],
    "cross": [lambda f, a: f.cross(a(V), a(W)), lambda f, a: f.cross(a(V), a(W), axis=-1),
              lambda f, a: f.cross(a(V[0]), a(W[0]))],
    "dot": [lambda f, a: f.dot(a(V[0]), a(W[0])), lambda f, a: f.dot(a(X), a(SQ)), lambda f, a: f.dot(a(X), 2.0)],
    "isclose": [lambda f, a: f.isclose(a(X), a(X + 1e-9)), lambda f, a: f.isclose(a(X), 0.0, atol=0.5),
                lambda f, a: f.isclose(a(F), a(F), equal_nan=True)],
    "isfinite": [lambda f, a: f.isfinite(a(F))],
    "isnan": [lambda f, a: f.isnan(a(F)), lambda f, a: f.isnan(a(F) * 0.0)],
    "isinf": [lambda f, a: f.isinf(a(F)), lambda f, a: f.isinf(a(F) * 2.0)],
    "logical_and": [lambda f, a: f.logical_and(a(M), a(X) > 0)],
    "logical_or": [lambda f, a: f.logical_or(a(M), a(X) > 0)],
    "logical_not": [lambda f, a: f.logical_not(a(M))],
    "zeros_like": [lambda f, a: f.zeros_like(a(X)), lambda f, a: f.zeros_like(a(X), dtype=f.float32)],
    "ones_like": [lambda f, a: f.ones_like(a(X)), lambda f, a: f.ones_like(a(I))],
    "full_like": [lambda f, a: f.full_like(a(X), 2.5), lambda f, a: f.full_like(a(X), 1, dtype=f.float32)],
    "zeros": [lambda f, a: f.zeros((2, 3)), lambda f, a: f.zeros(3), lambda f, a: f.zeros(3, dtype=f.float32)],
    "ones": [lambda f, a: f.ones((2, 3)), lambda f, a: f.ones(4, dtype=f.float64)],
    "array": [lambda f, a: f.array([0.1, 0.2, 0.3]), lambda f, a: f.array(a(X)), lambda f, a: f.array([a(X)[0], a(X)[1]]),
              lambda f, a: f.array([[1, 2], [3, 4]]), lambda f, a: f.array([1, 2], dtype=f.float32),
              lambda f, a: f.array(0.5)],
    "asarray": [lambda f, a: f.asarray(a(X)), lambda f, a: f.asarray([0.1, 0.2]), lambda f, a: f.asarray(a(I), dtype=f.float64)],
    "stack": [lambda f, a: f.stack([a(X), a(P)]), lambda f, a: f.stack([a(X), a(P)], axis=-1),
              lambda f, a: f.stack([a(X[:, 0]), a(X[:, 1])], axis=1)],
    "concatenate": [lambda f, a: f.concatenate([a(X), a(P)]), lambda f, a: f.concatenate([a(X), a(P)], axis=1)],
    "deg2rad": [lambda f, a: f.deg2rad(a(X * 90))],
    "rad2deg": [lambda f, a: f.rad2deg(a(X))],
    "pi": [lambda f, a: f.pi], "e": [lambda f, a: f.e], "inf": [lambda f, a: f.inf],
    "float32": [lambda f, a: f.float32(1.1), lambda f, a: f.float32(a(X))],
    "float64": [lambda f, a: f.float64(1.1), lambda f, a: f.float64(a(X).sum())],
    "ndarray": [lambda f, a: isinstance(a(X), f.ndarray), lambda f, a: isinstance(1.0, f.ndarray),
                lambda f, a: isinstance(f.zeros(2), f.ndarray)],
    "linalg.norm": [lambda f, a: f.linalg.norm(a(X)), lambda f, a: f.linalg.norm(a(X), axis=-1),
                    lambda f, a: f.linalg.norm(a(X), axis=0, keepdims=True), lambda f, a: f.linalg.norm(a(X), ord=1, axis=-1),
                    lambda f, a: f.linalg.norm(a(X), ord=f.inf, axis=-1), lambda f, a: f.linalg.norm(a(I), axis=-1),
                    lambda f, a: f.linalg.norm(a(X), 2, -1)],
}


def as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def test_every_offered_name_has_parity_cases() -> None:
    assert set(CASES) == set(ALLOWED_NAMES) | {"linalg.norm"}


@pytest.mark.parametrize("name, i", [(n, i) for n, cases in CASES.items() for i in range(len(cases))])
def test_torch_facade_behaves_like_numpy(name: str, i: int) -> None:
    case = CASES[name][i]
    want = as_numpy(case(NP, lambda x: x.copy()))
    got_raw = case(TORCH, torch.as_tensor)
    got = as_numpy(got_raw)
    if isinstance(want.dtype, np.dtype) and name not in ("pi", "e", "inf", "ndarray"):
        assert isinstance(got_raw, torch.Tensor), f"{name} returned {type(got_raw).__name__}, not a tensor"
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype.kind == want.dtype.kind, (got.dtype, want.dtype)
    if want.dtype.kind == "f":
        assert got.dtype == want.dtype, (got.dtype, want.dtype)  # Python floats are float64, float32 stays float32
        np.testing.assert_allclose(got, want, rtol=1e-12 if want.dtype == np.float64 else 1e-6, atol=1e-12)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("facade", [NP, TORCH], ids=["numpy", "torch"])
@pytest.mark.parametrize("name", ["save", "load", "lib", "ctypeslib", "memmap", "fromfile", "frombuffer", "empty",
                                  "random", "linalg.inv", "linalg.solve"])
def test_names_not_offered_raise_a_clear_attribute_error(facade: Any, name: str) -> None:
    owner, attr = (facade.linalg, name.split(".")[1]) if "." in name else (facade, name)
    with pytest.raises(AttributeError) as info:
        getattr(owner, attr)
    text = str(info.value)
    assert f"np.{name} is not offered to reward programs" in text and "\n" not in text
    assert ("norm" in text) if "." in name else ("clip" in text and "linalg.norm" in text)


@pytest.mark.parametrize("facade", [NP, TORCH], ids=["numpy", "torch"])
def test_the_facade_is_read_only(facade: Any) -> None:
    with pytest.raises(AttributeError, match="read-only"):
        facade.sqrt = math.sqrt
    with pytest.raises(AttributeError, match="read-only"):
        facade.linalg.norm = None
    with pytest.raises(AttributeError, match="read-only"):
        del facade.clip
    if facade is TORCH:
        with pytest.raises(AttributeError, match="read-only"):
            facade.float32.x = 1


@pytest.mark.parametrize("facade", [NP, TORCH], ids=["numpy", "torch"])
def test_ndarray_cannot_be_constructed(facade: Any) -> None:
    # np.ndarray(shape) is np.empty: uninitialised memory
    with pytest.raises(TypeError, match="np.zeros"):
        facade.ndarray((16,))


def test_numpy_facade_hands_out_numpy_functions_themselves() -> None:
    for name in ALLOWED_NAMES:
        if name != "ndarray":
            assert getattr(NP, name) is getattr(np, name)
    assert NP.linalg.norm is np.linalg.norm


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="numpy or torch"):
        array_facade("jax")
