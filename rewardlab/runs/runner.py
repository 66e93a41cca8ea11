"""The trial runner: expand a spec into trials, train them in worker processes, store the outcomes,
write the report.

Layout on disk::

    <out>/rewardlab.sqlite                 the run store (all runs)
    <out>/<run id>/spec.yaml               the spec as run
    <out>/<run id>/trials/<trial dir>/     what train() writes: model, logs, error.txt on failure
    <out>/<run id>/report.md, curves_*.png

Trials run in ``spawn``-ed worker processes, one thread each; only this (the main) process writes to
the store. A trial is marked ``running`` when it is handed to a worker, so at most ``workers`` trials
are ``running`` at a time. A failing trial is marked ``failed`` with a one-line error and the run goes
on. ``resume=True`` continues the latest run of the same spec name: ``done`` trials are kept, all
others (interrupted, failed, new in the spec) are run again from a cleared directory.
"""

from __future__ import annotations

import json
from dataclasses import replace
import multiprocessing
import os
import shutil
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rewardlab.cards import load_card
from rewardlab.errors import UserError
from rewardlab.runs.report import final_value, write_report
from rewardlab.runs.spec import ExperimentSpec, TrialSpec, load_spec, safe_name
from rewardlab.runs.store import DB_NAME, RunStore, TrialRecord

BACKENDS = ("local", "ray")
# Thread counts pinned to one in workers: N trials on N cores, not N × all cores fighting.
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def run_experiment(
    spec_path: str | Path,
    out: Path = Path("runs"),
    resume: bool = False,
    workers: int | None = None,
    backend: str = "local",
    console: Console | None = None,
    provider_overrides: dict[str, Any] | None = None,
) -> Path:
    """Run every trial of an experiment spec and write its report; return the run directory.

    :param spec_path: the experiment spec (YAML, see :mod:`rewardlab.runs.spec`)
    :param out: folder for the run store and run directories
    :param resume: continue the latest run of this spec's name instead of starting a new one; trials
        already ``done`` are not run again
    :param workers: trials trained in parallel (default: the spec's ``workers``)
    :param backend: ``local`` (worker processes on this machine); ``ray`` is not available yet
    :param console: where progress and the summary go (a new rich console by default)
    :param provider_overrides: ``provider``/``model``/``base_url`` replacing those of every generated
        reward source of the spec
    """
    if backend == "ray":
        raise UserError("the ray backend is not available yet; use --backend local")
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; use --backend local")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    spec_yaml = spec_path.read_text()
    trials = spec.trials()
    console = console or Console()
    out = Path(out)

    with RunStore(out / DB_NAME) as store:
        run_id = _open_run(store, spec, spec_yaml, resume, console)
        run_dir = out / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "spec.yaml").write_text(spec_yaml)
        trials = _generate_sources(spec, trials, run_dir, out, provider_overrides or {}, console)
        store.add_trials(run_id, trials, _record_programs(store, trials))
        rows = {r.key: r for r in store.trials(run_id)}
        todo = [(rows[t.key], t) for t in trials if rows[t.key].status != "done"]
        already = len(trials) - len(todo)
        extra = [k for k, r in rows.items() if k not in {t.key for t in trials} and r.status != "done"]
        if extra:
            console.print(
                f"[yellow]{len(extra)} unfinished trial(s) of this run are no longer in the spec; left as they are"
            )
        if already:
            console.print(f"{already} of {len(trials)} trials already done; running the other {len(todo)}")

        started = time.monotonic()
        n_workers = min(workers or spec.workers, len(todo)) or 1
        if todo:
            resume_hint = f"rewardlab run {spec_path} --out {out} --resume"
            _execute(store, run_id, todo, run_dir, n_workers, console, resume_hint)

        counts = store.status_counts(run_id)
        store.set_run_status(run_id, "done" if counts["done"] == sum(counts.values()) else "failed")
    write_report(run_id, out=out)

    elapsed = time.monotonic() - started
    console.print(
        f"[bold]{run_id}[/]: {counts['done']} done, {counts['failed']} failed"
        + (f", {counts['pending'] + counts['running']} not run" if counts["pending"] + counts["running"] else "")
        + f" ({len(todo)} run now in {elapsed:.0f}s, {already} done before)"
    )
    if counts["failed"]:
        console.print(f"re-run the failed trials with: rewardlab run {spec_path} --out {out} --resume")
    return run_dir


# -- run bookkeeping -----------------------------------------------------------------------------
def _open_run(store: RunStore, spec: ExperimentSpec, spec_yaml: str, resume: bool, console: Console) -> str:
    """The run to work on: the latest one of this spec (resume) or a new one."""
    if resume:
        run = store.latest_run(spec.name)
        if run is None:
            raise UserError(f"nothing to resume: no run of spec {spec.name!r} in {store.path}")
        interrupted = store.reset_interrupted(run.id)
        if run.spec_yaml != spec_yaml:
            console.print(f"[yellow]the spec changed since {run.id} started; its trials are matched by key")
            store.update_spec_yaml(run.id, spec_yaml)
        store.set_run_status(run.id, "running")
        console.print(f"resuming {run.id}" + (f" ({interrupted} interrupted trial(s) to redo)" if interrupted else ""))
        return run.id
    base = f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    run_id, n = base, 1
    while store.get_run(run_id) is not None or (store.path.parent / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    store.create_run(run_id, spec.name, spec_yaml)
    console.print(f"new run {run_id}")
    return run_id


def _generate_sources(spec: ExperimentSpec, trials: list[TrialSpec], run_dir: Path, out: Path,
                      overrides: dict[str, Any], console: Console) -> list[TrialSpec]:
    """Run the generation loop once per (task, generated source) and point its trials at the best
    program. Generated programs are kept in ``<run dir>/generated/``, so a resumed run reuses them."""
    from rewardlab.text2reward.loop import GenerationConfig, generate

    sources = {r.name: r for r in spec.rewards if r.generate is not None}
    resolved: dict[tuple[str, str], str] = {}
    out_trials = []
    for trial in trials:
        source = sources.get(trial.reward_name)
        if source is None:
            out_trials.append(trial)
            continue
        key = (trial.task, trial.reward_name)
        if key not in resolved:
            path = run_dir / "generated" / safe_name(trial.reward_name) / f"{safe_name(trial.task)}.py"
            if not path.is_file():
                settings = {**source.generate.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
                console.print(f"generating {trial.reward_name} for {trial.task} ({settings['provider']})")
                result = generate(GenerationConfig(card_id=trial.task, **settings), out=out)
                if result.best_program_id is None:
                    raise UserError(f"generation of {trial.reward_name} for {trial.task} gave no program that passed "
                                    f"the checks (run {result.run_id}); see `rewardlab lineage` or the run store")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text((result.run_dir / "best_reward.py").read_text())
            resolved[key] = str(path.resolve())
        out_trials.append(replace(trial, reward=resolved[key]))
    return out_trials


def _record_programs(store: RunStore, trials: list[TrialSpec]) -> dict[str, str | None]:
    """Store the source of every reward program the trials train on; return program id per trial key."""
    ids: dict[str, str | None] = {}
    by_source: dict[tuple[str, str], str | None] = {}
    for t in trials:
        if (t.task, t.reward) not in by_source:
            by_source[(t.task, t.reward)] = _record_program(store, t)
        ids[t.key] = by_source[(t.task, t.reward)]
    return ids


def _record_program(store: RunStore, trial: TrialSpec) -> str | None:
    if trial.reward == "env":
        return None
    path = load_card(trial.task).reference_reward_path() if trial.reward == "reference" else Path(trial.reward)
    if path is None:
        raise UserError(f"{trial.task} has no hand-written reference reward beside its card")
    try:
        source = path.read_text()
    except OSError as e:
        raise UserError(f"reward program {path} cannot be read: {e.strerror}") from None
    origin = "reference" if trial.reward == "reference" else "file"
    return store.add_program(source, origin=origin, card_id=trial.task)


# -- executing trials ----------------------------------------------------------------------------
def _execute(
    store: RunStore,
    run_id: str,
    todo: list[tuple[TrialRecord, TrialSpec]],
    run_dir: Path,
    n_workers: int,
    console: Console,
    resume_hint: str,
    work: Callable[[TrialSpec, str], dict[str, Any]] | None = None,
) -> None:
    """Train ``todo`` in ``n_workers`` processes, recording each outcome as it arrives.

    :param work: what a worker runs per trial (default :func:`_run_trial`); must be importable by
        name in a fresh process, and return ``{"result": dict}`` or ``{"error": str}``
    """
    work = work or _run_trial
    queue = deque(todo)
    in_flight: dict[Future[dict[str, Any]], tuple[TrialRecord, TrialSpec]] = {}
    columns = (TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with _single_threaded_children(), Progress(*columns, console=console) as progress:
        bar = progress.add_task("trials", total=len(todo))
        executor = _new_executor(n_workers)
        try:
            while queue or in_flight:
                while queue and len(in_flight) < n_workers:
                    row, trial = queue.popleft()
                    trial_dir = run_dir / "trials" / trial.dir_name
                    if trial_dir.exists():  # a partial directory from an interrupted or failed try
                        shutil.rmtree(trial_dir)
                    trial_dir.mkdir(parents=True)
                    try:
                        future = executor.submit(work, trial, str(trial_dir))
                    except BrokenProcessPool:
                        # the pool broke before wait() saw the dead worker's future: retry the trial later
                        queue.appendleft((row, trial))
                        if not in_flight:
                            executor.shutdown(wait=False, cancel_futures=True)
                            executor = _new_executor(n_workers)
                        break
                    store.mark_running(row.id, trial_dir)
                    in_flight[future] = (row, trial)
                if not in_flight:
                    continue
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                broken = False
                for future in finished:
                    row, trial = in_flight.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken = True
                        outcome = {"error": "its worker process died (killed or crashed, e.g. out of memory)"}
                    except Exception as e:  # e.g. a result that could not be pickled back
                        outcome = {"error": _one_line(e)}
                    _record_outcome(store, row, trial, outcome, progress.console)
                    progress.advance(bar)
                if broken:  # every trial still in flight died with the pool: record them, start afresh
                    lost = {"error": "its worker was stopped when another worker process died"}
                    for row, trial in in_flight.values():
                        _record_outcome(store, row, trial, lost, progress.console)
                        progress.advance(bar)
                    in_flight.clear()
                    executor.shutdown(wait=False, cancel_futures=True)
                    executor = _new_executor(n_workers)
        except BaseException:  # Ctrl-C or a bug here: no trial may stay 'running'
            executor.shutdown(wait=False, cancel_futures=True)
            store.reset_interrupted(run_id)
            console.print(f"[yellow]interrupted; continue with: {escape(resume_hint)}")
            raise
        executor.shutdown(wait=True)


def _record_outcome(
    store: RunStore, row: TrialRecord, trial: TrialSpec, outcome: dict[str, Any], console: Console
) -> None:
    if "error" not in outcome:
        result = outcome["result"]
        try:
            json.dumps(result)
            metrics = curve_metrics(result)
        except (TypeError, ValueError, KeyError) as e:
            outcome = {"error": f"train() returned a result that cannot be stored: {type(e).__name__}: {e}"}
        else:
            store.mark_done(row.id, result, metrics)
            console.print(f"[green]done[/]   {escape(trial.key)}  {_describe_result(result)}")
            return
    store.mark_failed(row.id, outcome["error"])
    console.print(f"[red]failed[/] {escape(trial.key)}: {escape(outcome['error'])}")


def curve_metrics(result: dict[str, Any]) -> list[tuple[int, str, float]]:
    """A result's learning curve as metric rows ``(step, name, value)``: every number of every curve
    point (``return_env``, ``return_program``, ``success``, ``length``, ...) except ``None``s."""
    rows = []
    for point in result.get("curve", []):
        step = int(point["step"])
        for name, value in point.items():
            if name != "step" and isinstance(value, (int, float)):  # bools (success flags) count as numbers
                rows.append((step, name, float(value)))
        for name, value in (point.get("components") or {}).items():
            rows.append((step, f"component/{name}", float(value)))
    return rows


def _describe_result(result: dict[str, Any]) -> str:
    """One line on a finished trial: final evaluation returns and wall time."""
    parts = []
    for name, label in (("return_env", "env return"), ("return_program", "program return"), ("success", "success")):
        value = final_value(result, name)
        if value is not None:
            parts.append(f"{label} {value:.2f}")
    if result.get("wall_s") is not None:
        parts.append(f"{result['wall_s']:.0f}s")
    return ", ".join(parts)


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Set the thread-count variables to 1 while workers are spawned (they read them at import),
    and restore the parent's environment afterwards."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARS}
    os.environ.update({name: "1" for name in _THREAD_VARS})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _new_executor(n_workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=n_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


# -- inside a worker process -----------------------------------------------------------------------
def _init_worker(parent_pid: int) -> None:
    """Worker set-up: one thread for torch, and exit when the main process dies (e.g. SIGKILL), so an
    orphan never keeps writing into a trial directory that a resumed run is re-using."""
    for name in _THREAD_VARS:
        os.environ[name] = "1"
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os._exit(1)


def _run_trial(trial: TrialSpec, trial_dir: str) -> dict[str, Any]:
    """Train one trial; return ``{"result": dict}`` or ``{"error": one line}`` (exceptions are turned
    into text here: not every exception survives pickling back to the main process)."""
    try:
        from rewardlab.training import train

        result = train(
            trial.task,
            trial.reward,
            trial.algo,
            trial.steps,
            trial.seed,
            Path(trial_dir),
            eval_episodes=trial.eval_episodes,
            eval_every=trial.eval_every,
        )
        return {"result": result.to_dict()}
    except Exception as e:  # the trial fails, the run goes on
        Path(trial_dir, "error.txt").write_text(traceback.format_exc())
        return {"error": _one_line(e)}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if isinstance(error, UserError) and text else f"{type(error).__name__}: {text}".rstrip(": ")
