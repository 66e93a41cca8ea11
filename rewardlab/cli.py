"""The ``rewardlab`` command line (typer + rich); also ``python -m rewardlab``.

User errors (a bad card, spec, flag, reward program or a missing file) print one line and exit 2;
a rejected reward program in ``check`` exits 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load: see training.limit_threads

import typer
from rich.console import Console
from rich.table import Table

from rewardlab.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rewardlab: design, check and train dense reward functions for RL.")
envs_app = typer.Typer(no_args_is_help=True, help="List and show env cards.")
app.add_typer(envs_app, name="envs")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width


@envs_app.command("list")
def envs_list() -> None:
    """List every env card with its simulator and instruction."""
    from rewardlab.cards import list_cards

    table = Table("id", "simulator", "steps", "success", "instruction", box=None)
    table.columns[0].no_wrap = True
    for card in list_cards():
        table.add_row(card.id, card.simulator, str(card.episode_steps), card.success or "-", card.instruction)
    console.print(table)


@envs_app.command("show")
def envs_show(env_id: str = typer.Argument(..., help="card id, e.g. metaworld/drawer-open-v3, or a YAML path"),
              live: bool = typer.Option(False, help="also check the card against the live env")) -> None:
    """Print a card and its class-stub rendering (what an LLM sees)."""
    from rewardlab.cards import load_card, render_stubs

    card = load_card(env_id)
    console.rule(f"[bold]{card.id}[/bold]  ({card.path})")
    console.print(card.path.read_text() if card.path else card.model_dump_json(indent=2), markup=False, highlight=False)
    console.rule("class stubs")
    console.print(render_stubs(card), markup=False, highlight=False)
    ref = card.reference_reward_path()
    console.print(f"\nhand-written reference reward: {ref or 'none'}")
    if live:
        from rewardlab.sims import make_env

        card.check_live(make_env(card, seed=0))
        console.print("[green]card matches the live env[/green]")


@app.command()
def check(reward: Path = typer.Argument(..., help="reward program file"),
          env: str = typer.Option(..., "--env", help="card id the program is for"),
          states: int = typer.Option(256, help="sampled states to run it on"),
          seed: int = typer.Option(0, help="seed of the sampling rollouts")) -> None:
    """Static check + sandbox trial of a reward program; prints the verdict and component statistics."""
    from rewardlab.cards import load_card
    from rewardlab.checks import check_program

    card = load_card(env)
    if not reward.is_file():
        raise UserError(f"reward program file not found: {reward}")
    report = check_program(reward, card, n_states=states, seed=seed)
    if not report.ok:
        where = f" line {report.line}" if report.line else ""
        err_console.print(f"REJECTED [{report.rule}]{where}: {report.message}", markup=False, highlight=False, style="red")
        raise typer.Exit(1)
    console.print(f"[green]OK[/green] {reward} on {card.id}: runs {report.mode} over {states} sampled states "
                  f"in {report.seconds:.2f} s (sandbox process)")
    table = Table("term", "mean", "std", "min", "max", box=None)
    for name, s in [("total", report.total), *report.components.items()]:
        table.add_row(name, *(f"{s[k]:.4g}" for k in ("mean", "std", "min", "max")))
    console.print(table)


@app.command()
def train(env: str = typer.Option(..., "--env", help="card id"),
          reward: str = typer.Option("reference", help="env|builtin (the env's own), reference, or a program file"),
          algo: str = typer.Option("ppo", help="ppo, sac or td3"),
          steps: int = typer.Option(50_000, help="environment steps"),
          seed: int = typer.Option(0),
          eval_episodes: int = typer.Option(5, help="deterministic evaluation episodes"),
          out: Path = typer.Option(Path("runs/train"), help="run directory")) -> None:
    """Train one agent and evaluate it under the env's reward and the program's."""
    from rich.progress import BarColumn, Progress, TimeRemainingColumn

    from rewardlab.training import train as train_agent

    run_dir = out / f"{env.replace('/', '_')}-{Path(reward).stem}-{algo}-{seed}"
    with Progress("[progress.description]{task.description}", BarColumn(), "{task.completed}/{task.total}",
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(f"{algo} on {env}", total=steps)
        result = train_agent(env, reward, algo, steps, seed, run_dir, eval_episodes=eval_episodes,
                             progress=lambda done, total: bar.update(task, completed=min(done, total)))
    ev = result.eval
    table = Table("episodes", "env return", "program return", "success", box=None)
    mean = lambda xs: "-" if not xs or xs[0] is None else f"{sum(map(float, xs)) / len(xs):.4g}"  # noqa: E731
    table.add_row(str(len(ev["env_return"])), mean(ev["env_return"]), mean(ev["program_return"]), mean(ev["success"]))
    console.print(table)
    console.print(f"model, TensorBoard logs and result.json in {run_dir}")


@app.command()
def run(spec: Path = typer.Argument(..., help="experiment spec (YAML)"),
        out: Path = typer.Option(Path("runs"), help="runs root: the SQLite store and run directories"),
        resume: bool = typer.Option(False, "--resume", help="continue the latest run of this spec, skipping finished trials"),
        workers: Optional[int] = typer.Option(None, help="worker processes (default: the spec's, 2)"),
        backend: str = typer.Option("local", help="local worker processes (ray: later)")) -> None:
    """Run an experiment spec: every task x reward x algorithm x seed, then write its report."""
    from rewardlab.runs.runner import run_experiment

    run_dir = run_experiment(spec, out=out, resume=resume, workers=workers, backend=backend, console=console)
    console.print(f"report: {run_dir / 'report.md'}")


@app.command()
def report(run: str = typer.Argument(..., help="run id or run directory"),
           out: Path = typer.Option(Path("runs"), help="runs root")) -> None:
    """(Re)write a run's report: tables with mean and 95% CI over seeds, learning-curve plots."""
    from rewardlab.runs.report import write_report

    console.print(f"report: {write_report(run, out=out)}")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except UserError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
