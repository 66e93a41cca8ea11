"""The ``rewardlab`` command line (typer + rich); also ``python -m rewardlab``.

One module per command group, each a thin layer over the library: :mod:`~rewardlab.cli.envs`
(``envs list|show``), :mod:`~rewardlab.cli.check`, :mod:`~rewardlab.cli.train`,
:mod:`~rewardlab.cli.runs` (``run``, ``report``, ``runs list``), :mod:`~rewardlab.cli.generate`
(``generate``, ``refine``, ``lineage``), :mod:`~rewardlab.cli.memory`, :mod:`~rewardlab.cli.export`
(``export``, ``play``, ``robustness``, ``randomize feasible|propose``) and :mod:`~rewardlab.cli.review`
(``review``: the review web page).

Exit codes: 0 success; 1 a rejected program (``check``), failed trials (``run``) or no program passed
(``generate``); 2 a user error (a bad card, spec, flag, reward program or file: one line on stderr,
never a traceback); 70 an internal error (a bug: its traceback, then one line); 130 interrupted.
"""

from __future__ import annotations

import sys

from rewardlab.runtime import limit_threads, one_line_warnings

limit_threads(torch_too=False)  # before numpy/torch load; see rewardlab.runtime

from rewardlab.cli import check, e2cl, envs, export, generate, memory, review, runs, train  # noqa: E402,F401  (register commands)
from rewardlab.cli.app import app, console, err_console  # noqa: E402
from rewardlab.errors import UserError  # noqa: E402

__all__ = ["app", "console", "err_console", "main"]

#: Exit code of an internal error (BSD's EX_SOFTWARE), distinct from 1 (a verdict: rejected, failed) and 2.
INTERNAL_ERROR = 70


def _optional_resume_value(argv: list[str]) -> list[str]:
    """``--resume`` takes an optional run id: alone (last, or before another option or the spec file)
    it means the latest run of the spec. click has no optional option values, so the bare form is
    spelt out here as ``--resume=latest``."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--resume":
            following = out[i + 1] if i + 1 < len(out) else None
            if following is None or following.startswith("-") or following.endswith((".yaml", ".yml")):
                out[i] = "--resume=latest"
    return out


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (130 when interrupted)."""
    from rewardlab.runs.runner import RunInterrupted

    one_line_warnings(lambda line: err_console.print(line, markup=False, highlight=False))
    try:
        app(args=_optional_resume_value(sys.argv[1:]), prog_name="rewardlab")
    except RunInterrupted as e:
        err_console.print(f"interrupted: {e}", markup=False, highlight=False)
        sys.exit(130)
    except UserError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as e:  # a bug, not the user's input: the traceback is for the report
        import traceback

        traceback.print_exc()
        err_console.print(f"internal error: {type(e).__name__} (a bug in rewardlab, not in your input; please "
                          f"report it with the traceback above)", markup=False, highlight=False)
        sys.exit(INTERNAL_ERROR)
