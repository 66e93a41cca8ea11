"""The typer app and the consoles every command module uses; :func:`option` builds an option from a
config model's field, so the CLI and the spec share one default and one line of help."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rewardlab: design, check and train dense reward functions for RL.")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width


def option(model: type[BaseModel], field: str, *flags: str, **kwargs: Any) -> Any:
    """A ``typer.Option`` whose default and help are those of ``model``'s ``field``."""
    info = model.model_fields[field]
    default = ... if info.is_required() else info.get_default(call_default_factory=True)
    return typer.Option(default, *flags, help=info.description, **kwargs)
