"""``rewardlab check``: the static policy and the sandbox trial of a reward program."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rewardlab.cli.app import app, console, err_console, option
from rewardlab.config import CheckConfig, validate_config


@app.command()
def check(reward: Path = typer.Argument(..., help="reward program file"),
          env: str = typer.Option(..., "--env", help="card id (or card YAML) the program is for"),
          states: int = option(CheckConfig, "states"),
          seed: int = option(CheckConfig, "seed")) -> None:
    """Static check + sandbox trial of a reward program; prints the verdict, the cost of one batched
    call, and component statistics."""
    from rewardlab.cards import load_card
    from rewardlab.checks import check_program
    from rewardlab.errors import UserError
    from rewardlab.sims import verify_card

    config = validate_config(CheckConfig, {"states": states, "seed": seed}, "rewardlab check",
                             {"states": "--states", "seed": "--seed"})
    card = load_card(env)
    if not reward.is_file():
        raise UserError(f"reward program file not found: {reward}")
    verify_card(card)
    report = check_program(reward, card, n_states=config.states, seed=config.seed)
    if not report.ok:
        where = f" line {report.line}" if report.line else ""
        err_console.print(f"REJECTED [{report.rule}]{where}: {report.message}", markup=False, highlight=False, style="red")
        raise typer.Exit(1)
    console.print(f"[green]OK[/green] {reward} on {card.id}: runs {report.mode} over {config.states} sampled states "
                  f"in {report.seconds:.2f} s (sandbox process)")
    if report.mode == "scalar":
        console.print("[yellow]warning:[/] the program is written per environment (scalar code, or the "
                      "(self, action, obs) signature): it runs in compat mode, a Python loop over the batch; "
                      "write it with array operations to run batched", highlight=False)
    if report.us_per_call is not None and report.batch:
        console.print(f"cost: {report.us_per_call:.0f} us per call on {report.batch} states "
                      f"({report.us_per_call / report.batch:.2f} us per state)")
    table = Table("term", "mean", "std", "min", "max", box=None)
    for name, s in [("total", report.total), *report.components.items()]:
        table.add_row(name, *(f"{s[k]:.4g}" for k in ("mean", "std", "min", "max")))
    console.print(table)
