"""``rewardlab run``, ``rewardlab report`` and ``rewardlab runs list``: experiments."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rewardlab.cli.app import app, console, err_console

Out = typer.Option(Path("runs"), help="runs root: the SQLite store and run directories")
runs_app = typer.Typer(no_args_is_help=True, help="The runs in a store.")
app.add_typer(runs_app, name="runs")


@app.command()
def run(spec: Path = typer.Argument(..., help="experiment spec (YAML)"),
        out: Path = Out,
        resume: str | None = typer.Option(None, "--resume", metavar="[RUN_ID]",
                                             help="continue a run, skipping finished trials: --resume for the latest "
                                                  "run of this spec, --resume RUN_ID for that one"),
        rerun_changed: bool = typer.Option(False, "--rerun-changed",
                                           help="with --resume: re-run finished trials whose program or settings changed"),
        workers: int | None = typer.Option(None, help="trials in parallel (default: the spec's)"),
        backend: str = typer.Option("local", help="local (worker processes) or ray (Ray tasks)"),
        address: str | None = typer.Option(None, help="ray: an existing cluster's address (default: start a local one)"),
        provider: str | None = typer.Option(None, help="override the provider of generated reward sources"),
        model: str | None = typer.Option(None, help="override the model of generated reward sources"),
        base_url: str | None = typer.Option(None, help="override the endpoint of generated reward sources")) -> None:
    """Run an experiment spec: every task x reward x algorithm x seed, then write its report."""
    from rewardlab.moe.studies import is_study_file

    if is_study_file(spec):  # a synthetic MoE convergence study (rewardlab.moe.studies), not a training run
        from rewardlab.moe.studies import run_study
        from rewardlab.paths import relative_path

        console.print(f"report: {relative_path(run_study(spec, out, log=console.print) / 'report.md')}")
        return
    from rewardlab.runs.runner import run_experiment

    summary = run_experiment(spec, out=out, resume=True if resume == "latest" else (resume or False), workers=workers,
                             backend=backend, console=console, address=address, rerun_changed=rerun_changed,
                             provider_overrides={"provider": provider, "model": model, "base_url": base_url})
    if summary.failed:
        err_console.print(f"error: {summary.failed} of {sum(summary.counts.values())} trials failed in run "
                          f"{summary.run_id}", markup=False, highlight=False)
        raise typer.Exit(1)


@app.command()
def report(run: str = typer.Argument(..., help="run id or run directory"), out: Path = Out) -> None:
    """(Re)write a run's report: tables and learning curves over seeds."""
    from rewardlab.paths import relative_path
    from rewardlab.runs.report import write_report

    console.print(f"report: {relative_path(write_report(run, out=out))}")


@runs_app.command("list")
def runs_list(out: Path = Out, spec: str | None = typer.Option(None, help="only runs of this spec name")) -> None:
    """Every run in the store, newest first, with its status and trial counts."""
    from rewardlab.errors import UserError
    from rewardlab.store import DB_NAME, RunStore, holder_alive

    db = out / DB_NAME
    if not db.is_file():
        raise UserError(f"no run store at {db}; pass --out to the folder that `rewardlab run` wrote to")
    table = Table("run", "spec", "created (UTC)", "status", "done", "failed", "pending", "note", box=None)
    with RunStore(db) as store:
        for r in store.list_runs(spec):
            counts = store.status_counts(r.id)
            status = r.status
            if status == "running" and not (r.holder_pid is not None and holder_alive(r)):
                status = "interrupted"  # its holder is gone (killed); --resume takes it over
            note = f"pid {r.holder_pid}" if r.status == "running" and status == "running" else (r.reason or "")
            if r.spec_name == "generate" and not sum(counts.values()):
                note = note or "a generation (see `rewardlab lineage`)"
            table.add_row(r.id, r.spec_name, r.created[:19].replace("T", " "), status, str(counts["done"]),
                          str(counts["failed"]), str(counts["pending"] + counts["running"]), note)
    console.print(table)
