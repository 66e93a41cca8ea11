"""Process set-up shared by every entry point: the CLI, worker processes, Ray tasks, benchmarks, CI."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

#: Thread-count variables of the BLAS/OpenMP runtimes under numpy and torch.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(torch_too: bool = True) -> None:
    """One thread per process for torch and the BLAS/OpenMP runtimes.

    With two threads per process and any other load on 2 cores, SB3 training slows 15-100x (measured,
    see README); N trials in N processes use the cores instead. The variables only take effect in a
    process that has not loaded numpy/torch yet, so entry points call this first; ``torch_too`` also
    sets torch's intra-op threads (importing torch, about a second) for processes that train.

    :param torch_too: also call ``torch.set_num_threads(1)``
    """
    for name in THREAD_VARS:
        os.environ[name] = "1"
    if torch_too:
        import torch

        torch.set_num_threads(1)


def one_line_warnings(show: Callable[[str], None] | None = None) -> None:
    """Show each distinct warning once, as ``warning: <one line>`` (Python's default prints the source
    line too, and repeats a warning raised from several places); for entry points and workers.

    :param show: where the line goes (default: standard error)
    """
    import sys
    import warnings

    shown: set[str] = set()
    out = show or (lambda line: print(line, file=sys.stderr, flush=True))

    def showwarning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        text = " ".join(str(message).split())
        if text not in shown:
            shown.add(text)
            out(f"warning: {text}")

    warnings.showwarning = showwarning
