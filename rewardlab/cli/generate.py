"""``rewardlab generate``, ``refine`` and ``lineage``: Text2Reward generation, human feedback, lineage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.text import Text
from rich.tree import Tree

from rewardlab.cli.app import app, console, err_console, option
from rewardlab.config import GenerationConfig, validate_config
from rewardlab.store import LineageNode

G = GenerationConfig
Out = typer.Option(Path("runs"), help="runs root: the SQLite store and run directories")
Workers = typer.Option(2, min=1, max=64, help="worker processes that train probes side by side")


def _config(source: str, **values: object) -> GenerationConfig:
    flags = {name: "--" + name.replace("_", "-") for name in GenerationConfig.model_fields}
    flags["use_memory"] = "--memory"
    return validate_config(GenerationConfig, values, source, flags)


def _print_generation(r: object, out: Path) -> None:
    from rewardlab.paths import relative_path
    from rewardlab.text2reward.loop import GenerationResult

    assert isinstance(r, GenerationResult)
    if r.best_program_id:
        score = f"score {r.best_score:.3g}" if r.best_score is not None else "not scored"
        best = f"{r.best_program_id[:12]} ({score})"
    else:
        best = "none passed the checks" if r.status != "interrupted" else "none yet"
    probes = f"; probes: {r.probe_steps} steps in {r.probe_wall_s:.0f} s" if r.probe_steps else ""
    console.print(f"run {r.run_id}: {r.candidates} candidates, {r.rejected} rejected after retries, "
                  f"{r.first_attempt_failures} failed at first; {r.tokens} tokens{probes}; {r.stopped}", markup=False)
    console.print(f"best reward: {best}", markup=False)
    for line in r.warnings:
        err_console.print(f"warning: {line}", markup=False, highlight=False)
    if r.best_program_id:
        console.print(f"  saved as {relative_path(r.run_dir / 'best_reward.py')}; refine with: rewardlab refine "
                      f"{r.best_program_id[:12]} --feedback \"...\"", markup=False)
    if r.status == "interrupted":
        where = "" if out == Path("runs") else f" --out {relative_path(out)}"
        err_console.print(f"interrupted: finished work is kept; continue with: rewardlab generate --resume {r.run_id}"
                          f"{where}", markup=False, highlight=False)
        raise typer.Exit(1)
    if r.status == "failed":
        err_console.print(f"no reward program passed the checks ({r.stopped}); see: rewardlab lineage, or the "
                          "candidates in the run store", markup=False, highlight=False)
        raise typer.Exit(1)


@app.command()
def generate(env: str | None = typer.Option(None, "--env", help="card id (not with --resume)"),
             resume: str | None = typer.Option(
                 None, "--resume", help="continue an interrupted generation run (RUN, or alone: the latest); "
                 "only --base-url, --api-key, --timeout and --max-retries may change"),
             instruction: str | None = option(G, "instruction"),
             provider: str = option(G, "provider"), model: str | None = option(G, "model"),
             base_url: str | None = option(G, "base_url"), api_key: str | None = option(G, "api_key"),
             samples: int = option(G, "samples"), rounds: int = option(G, "rounds"), few_shot: int = option(G, "few_shot"),
             temperature: float = option(G, "temperature"), max_tokens: int = option(G, "max_tokens"),
             token_budget: int | None = option(G, "token_budget"), fix_attempts: int = option(G, "fix_attempts"),
             probe_steps: int = option(G, "probe_steps"), probe_algo: str | None = option(G, "probe_algo"),
             final_steps: int = option(G, "final_steps"), eval_episodes: int = option(G, "eval_episodes"),
             success_target: float | None = option(G, "success_target"),
             memory: bool = option(G, "use_memory", "--memory/--no-memory"),
             timeout: float = option(G, "timeout_s", "--timeout"), max_retries: int = option(G, "max_retries"),
             replay_run: str | None = option(G, "replay_run"), seed: int = option(G, "seed"),
             workers: int = Workers, out: Path = Out) -> None:
    """Generate reward programs with an LLM: sample, check, rank, probe-train, reflect, repeat."""
    from rewardlab.errors import UserError
    from rewardlab.text2reward.loop import generate as run_generation

    cfg = _config("rewardlab generate", instruction=instruction, provider=provider, model=model, base_url=base_url,
                  api_key=api_key, samples=samples, rounds=rounds, few_shot=few_shot, temperature=temperature,
                  max_tokens=max_tokens, token_budget=token_budget, fix_attempts=fix_attempts, probe_steps=probe_steps,
                  probe_algo=probe_algo, final_steps=final_steps, eval_episodes=eval_episodes,
                  success_target=success_target, use_memory=memory, timeout_s=timeout, max_retries=max_retries,
                  replay_run=replay_run, seed=seed)
    if resume is not None:
        if env is not None:
            raise UserError("--resume continues a run with its own task; leave out --env")
        resume = _latest_unfinished(out) if resume == "latest" else resume
        console.print(f"resuming {resume}", markup=False, highlight=False)
    elif env is None:
        raise UserError("name the task: --env CARD (or continue a run: --resume RUN)")
    with _probe_workers(workers) as backend:
        _print_generation(run_generation(env, cfg, out=out, console=console, resume=resume, backend=backend), out)


@contextmanager
def _probe_workers(workers: int) -> Iterator[Any]:
    """The worker processes probes train in (the runner's local pool), stopped at the end."""
    from rewardlab.runs.backends.local import LocalBackend

    backend = LocalBackend(workers)
    try:
        yield backend
    finally:
        backend.shutdown(cancel=True)


def _latest_unfinished(out: Path) -> str:
    from rewardlab.errors import UserError
    from rewardlab.store import DB_NAME, RunStore

    if not (out / DB_NAME).is_file():
        raise UserError(f"no run store at {out / DB_NAME}; pass --out to where your runs are")
    with RunStore(out / DB_NAME) as store:
        for run in store.list_runs("generate"):
            if run.status != "done":
                return run.id
    raise UserError(f"no unfinished generation run in {out / DB_NAME}")


@app.command()
def refine(reward_id: str = typer.Argument(..., help="reward program id (or a unique prefix)"),
           feedback: str = typer.Option(..., help="what should change, in words"),
           observed: str | None = typer.Option(None, help="what the trained agent was seen doing"),
           tag: list[str] = typer.Option([], "--tag", help="a short label put before the feedback "
                                         "(e.g. 'too slow', 'hacks the reward', 'wrong stage'); repeatable"),
           provider: str | None = typer.Option(None, help="openai, replay or offline (default: the provider of the "
                                               "generation run that made the program, else offline)"),
           model: str | None = option(G, "model"),
           base_url: str | None = option(G, "base_url"), api_key: str | None = option(G, "api_key"),
           samples: int = typer.Option(1, help="revisions to ask for"),
           probe_steps: int | None = typer.Option(None, help="training steps of each revision's probe (default: "
                                                  "the parent's generation run's, else 20000; 0: the checks alone)"),
           timeout: float | None = typer.Option(None, "--timeout", help="seconds per HTTP attempt"),
           max_retries: int | None = typer.Option(None, help="retries of a failed request"),
           seed: int | None = typer.Option(None, help="seed of requests and probes"), workers: int = Workers,
           out: Path = Out) -> None:
    """Revise a stored reward program from human feedback; the new version's parent is REWARD_ID."""
    from pydantic import ValidationError

    from rewardlab.config import describe_validation_error
    from rewardlab.errors import UserError
    from rewardlab.store import DB_NAME, RunStore
    from rewardlab.text2reward.loop import refine as run_refine
    from rewardlab.text2reward.loop import refine_settings

    if not (out / DB_NAME).is_file():
        raise UserError(f"no run store at {out / DB_NAME}; pass --out to where your runs are")
    with RunStore(out / DB_NAME) as store:
        record = store.find_program(reward_id)
        try:
            cfg, note = refine_settings(store, record.id, provider=provider, model=model, base_url=base_url,
                                        api_key=api_key, samples=samples, probe_steps=probe_steps, timeout_s=timeout,
                                        max_retries=max_retries, seed=seed)
        except ValidationError as e:
            raise UserError(f"rewardlab refine: {describe_validation_error(e)}") from None
    console.print(f"refining with {note}", markup=False, highlight=False)
    with _probe_workers(workers) as backend:
        _print_generation(run_refine(record.id, feedback, cfg, observed=observed, out=out, console=console,
                                     backend=backend, tags=tag), out)


@app.command()
def lineage(reward_id: str = typer.Argument(..., help="reward program id (or a unique prefix)"), out: Path = Out) -> None:
    """Show a reward program's family tree (its ancestors' root and every revision) with scores."""
    from rewardlab.errors import UserError
    from rewardlab.store import DB_NAME, RunStore

    db = out / DB_NAME
    if not db.is_file():
        raise UserError(f"no run store at {db}; pass --out to where your runs are")
    with RunStore(db) as store:
        target = store.find_program(reward_id)
        root = store.lineage_tree(target.id)

    def label(node: LineageNode) -> Text:
        text = f"{node.program.id[:12]}  {node.program.origin}  {node.status}"
        text += f"  score {node.best_score:.3g}" if node.best_score is not None else ""
        text += f"  ({node.last_error})" if node.last_error and node.status == "rejected" else ""
        return Text(text + ("  <- this one" if node.program.id == target.id else ""))

    def grow(tree: Tree, node: LineageNode) -> None:
        for child in node.children:
            grow(tree.add(label(child)), child)

    tree = Tree(label(root))
    grow(tree, root)
    console.print(tree)
