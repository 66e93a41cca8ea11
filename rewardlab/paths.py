"""File-system names: one safe-name function, and run directories that are never overwritten."""

from __future__ import annotations

import os
import re
from pathlib import Path

from rewardlab.errors import UserError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def cache_dir() -> Path:
    """Where rewardlab caches what is slow to recompute (sampled states, trajectories, card checks):
    ``$REWARDLAB_CACHE``, else ``~/.cache/rewardlab``."""
    return Path(os.environ.get("REWARDLAB_CACHE", Path.home() / ".cache" / "rewardlab"))


def safe_name(text: str) -> str:
    """``text`` as a file name: runs of characters other than letters, digits, ``_ . -`` become ``_``
    (``metaworld/drawer-open-v3`` -> ``metaworld_drawer-open-v3``)."""
    return _UNSAFE.sub("_", text).strip("_") or "_"


def new_directory(parent: str | Path, name: str) -> Path:
    """Create and return ``parent/name``, or ``parent/name-2``, ``-3``, ... when it exists: a run
    directory is never reused, so nothing a finished run wrote is ever overwritten.

    ``mkdir`` without ``exist_ok`` is atomic, so two processes never get the same directory.

    :param parent: the folder to create it in (created when missing)
    :param name: the preferred name (made safe with :func:`safe_name`)
    :raises UserError: the parent cannot be written (read-only, full disk, not a folder)
    """
    parent = Path(parent)
    base = safe_name(name)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            path = parent / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path
    except OSError as e:
        raise UserError(f"cannot create a run directory in {parent}: {describe_os_error(e)}") from None
    raise UserError(f"{parent} already holds 10,000 directories named {base}-N; pick another name")


def describe_os_error(error: OSError) -> str:
    """An ``OSError`` in words, without the chained traceback (``No space left on device: 'runs/x'``)."""
    what = error.strerror or type(error).__name__
    where = f": {error.filename!r}" if error.filename else ""
    return f"{what}{where}"


def relative_path(path: str | Path, start: str | Path | None = None) -> str:
    """``path`` relative to ``start`` (default: the working directory) when it lies below it or near
    it, else as given; reports name paths the reader can use where they run them."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(start or Path.cwd()).resolve())
    except ValueError:  # another drive (Windows)
        return str(path)


def shown_path(path: str | Path) -> str:
    """``path`` as a console line should name it: relative to the working directory when it lies below
    it, else absolute (``/tmp/x.json``, never ``../x.json``, which sent users looking in the wrong place).
    Files meant to be read from elsewhere (a report's "regenerate" line) use :func:`relative_path`."""
    full = Path(path).resolve()
    try:
        return str(full.relative_to(Path.cwd().resolve()))
    except ValueError:  # outside the working directory
        return str(full)
