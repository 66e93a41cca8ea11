"""Curated scipy for reward programs: distances and rotations, as allow-list facades, never the modules.

Text2Reward's published programs import ``from scipy.spatial.distance import cdist``, ``from
scipy.spatial import distance`` and ``from scipy.spatial.transform import Rotation``. A program gets
these names and nothing else of scipy (no file readers, no ``LowLevelCallable``, no random draws):

- ``scipy.spatial.distance``: :data:`DISTANCE_NAMES` (pairwise ``cdist``/``pdist``/``squareform`` and
  the vector metrics);
- ``scipy.spatial.transform.Rotation``: the ``from_*`` constructors and ``identity``; the rotations
  they return offer :data:`ROTATION_METHODS`, ``inv()``, ``*``, ``len`` and indexing.

They take numpy arrays: scipy has no torch kernels, so a program running on torch state (a GPU
simulator) gets one clear error naming the function and what to use instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rewardlab.arrays import ArrayFacade

#: ``scipy.spatial.distance`` names a program may use.
DISTANCE_NAMES: tuple[str, ...] = (
    "cdist", "pdist", "squareform", "euclidean", "sqeuclidean", "cityblock", "chebyshev", "cosine",
    "minkowski", "correlation", "braycurtis", "canberra",
)
#: Constructors of ``Rotation`` a program may call (``random`` is left out: rewards are deterministic).
ROTATION_CONSTRUCTORS: tuple[str, ...] = (
    "from_quat", "from_euler", "from_matrix", "from_rotvec", "from_mrp", "identity", "align_vectors",
)
#: Methods of a rotation a program may call; ``inv`` and ``*`` return rotations too.
ROTATION_METHODS: tuple[str, ...] = (
    "as_quat", "as_euler", "as_matrix", "as_rotvec", "as_mrp", "apply", "magnitude", "approx_equal", "single",
)

#: The modules a program may import from scipy, and the names each offers.
MODULES: dict[str, tuple[str, ...]] = {
    "scipy": ("spatial",),
    "scipy.spatial": ("distance", "transform"),
    "scipy.spatial.distance": DISTANCE_NAMES,
    "scipy.spatial.transform": ("Rotation",),
}


def _numpy_only(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` refusing torch tensors with one line (scipy would fail deep inside, or copy to the CPU)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if type(value).__module__.startswith("torch"):
                raise TypeError(f"{name} takes numpy arrays, and this program runs on torch tensors (a GPU "
                                "simulator's state); use the np facade instead (e.g. np.linalg.norm(a - b, axis=-1))")
        return fn(*args, **kwargs)

    call.__name__ = name.rsplit(".", 1)[-1]
    return call


class RotationValue:
    """A rotation (or a stack of them) handed to a program: the allow-listed methods of scipy's
    ``Rotation``, nothing that draws random numbers or reaches scipy's internals.

    :param rotation: the ``scipy.spatial.transform.Rotation`` it wraps
    """

    __slots__ = ("_rotation",)
    _rotation: Any

    def __init__(self, rotation: Any):
        object.__setattr__(self, "_rotation", rotation)

    def __getattr__(self, name: str) -> Any:
        if name in ROTATION_METHODS:
            return _numpy_only(f"Rotation.{name}", getattr(self._rotation, name))
        raise AttributeError(f"a Rotation offers {', '.join(ROTATION_METHODS)}, inv(), *, len() and indexing; "
                             f"not {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("rotations are read-only in reward programs")

    def inv(self) -> RotationValue:
        return RotationValue(self._rotation.inv())

    def __mul__(self, other: RotationValue) -> RotationValue:
        if not isinstance(other, RotationValue):
            return NotImplemented
        return RotationValue(self._rotation * other._rotation)

    def __len__(self) -> int:
        return len(self._rotation)

    def __getitem__(self, index: Any) -> RotationValue:
        return RotationValue(self._rotation[index])

    def __repr__(self) -> str:
        return f"<Rotation of {1 if self._rotation.single else len(self._rotation)}>"


def _rotation_class() -> ArrayFacade:
    from scipy.spatial.transform import Rotation

    def constructor(name: str) -> Callable[..., Any]:
        make = _numpy_only(f"Rotation.{name}", getattr(Rotation, name))
        if name == "align_vectors":  # returns (rotation, rssd[, sensitivity])
            def align(*a: Any, **k: Any) -> tuple[Any, ...]:
                rotation, *rest = make(*a, **k)
                return (RotationValue(rotation), *rest)
            return align
        return lambda *a, **k: RotationValue(make(*a, **k))

    return ArrayFacade({n: constructor(n) for n in ROTATION_CONSTRUCTORS}, "scipy", "Rotation")


def scipy_modules() -> dict[str, ArrayFacade]:
    """The facades a program imports as ``scipy``, ``scipy.spatial``, ``scipy.spatial.distance`` and
    ``scipy.spatial.transform`` (imports scipy's spatial package: about 0.2 s the first time)."""
    from scipy.spatial import distance

    dist = ArrayFacade({n: _numpy_only(f"scipy.spatial.distance.{n}", getattr(distance, n)) for n in DISTANCE_NAMES},
                       "scipy", "scipy.spatial.distance")
    transform = ArrayFacade({"Rotation": _rotation_class()}, "scipy", "scipy.spatial.transform")
    spatial = ArrayFacade({"distance": dist, "transform": transform}, "scipy", "scipy.spatial")
    return {"scipy": ArrayFacade({"spatial": spatial}, "scipy", "scipy"), "scipy.spatial": spatial,
            "scipy.spatial.distance": dist, "scipy.spatial.transform": transform}
