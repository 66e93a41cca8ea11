"""The experiment runner: validate a spec, expand it into trials, train them on a backend, store every
outcome, write the report.

Layout on disk::

    <out>/rewardlab.sqlite                 the run store (all runs)
    <out>/<run id>/spec.yaml               the spec as run
    <out>/<run id>/generated/              copies of generated programs (the store has them)
    <out>/<run id>/trials/<trial dir>/     what the trainer writes: model, logs, error.txt on failure
    <out>/<run id>/report.md, curves_*.png

**Before anything is written** the spec, its cards (checked against their live envs), every trainer
setting and every reward program (read and statically checked) are validated, so a bad input costs
one line and leaves no run behind.

**One process per run.** The runner holds the run's lease in the store (pid, host, heartbeat) while
it works; a second ``run --resume`` of a held run refuses with one line. Only the runner writes the
store; trials run in worker processes (:mod:`~rewardlab.runs.backends.local`) or Ray tasks
(:mod:`~rewardlab.runs.backends.ray`).

**Runs end** ``done`` (every trial done), ``failed`` (some trial failed, or the run itself failed: the
reason is stored), or ``interrupted`` (Ctrl-C, SIGTERM); never ``running`` without a live holder.
``--resume [RUN_ID]`` continues one: ``done`` trials are kept, all others run again from a cleared
directory; a trial whose reward program, budget or settings changed since it finished is refused
(``--rerun-changed`` re-runs those).
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rewardlab.cards import EnvCard, load_card, read_text_file
from rewardlab.errors import GenerationInterrupted, UserError, one_line
from rewardlab.paths import describe_os_error, relative_path, safe_name
from rewardlab.program import RewardProgram
from rewardlab.runs.backends.base import Backend, TrialOutcome, TrialTask, describe_error
from rewardlab.runs.spec import ExperimentSpec, TrialSpec, load_spec
from rewardlab.sims.base import verify_card
from rewardlab.sources import (
    GeneratedSource,
    ResolvedReward,
    RewardSource,
    ShapedSource,
    as_inline,
    program_of,
    resolve_source,
)
from rewardlab.store import DB_NAME, LEASE_BEAT_S, NewTrial, RunRecord, RunStatus, RunStore, TrialRecord, holder_alive
from rewardlab.types import TrialResult

BACKENDS = ("local", "ray")
#: Rough training throughputs (env steps/s per worker, 2-core CPU machine, evaluations included) for a
#: run's first estimate, before this store has a finished trial of the same simulator and algorithm to
#: measure from: PPO on MuJoCo 1.6k steps/s (HalfCheetah, 4 envs), SAC and TD3 on MuJoCo 70-80, SAC on
#: MetaWorld 27 (experiments/text2reward_metaworld_cpu.yaml: 6k steps and 4 evaluations in 225 s).
DEFAULT_STEPS_PER_S = {("mujoco", "ppo"): 1600.0, ("mujoco", "sac"): 70.0, ("mujoco", "td3"): 80.0,
                       ("metaworld", "sac"): 27.0, ("metaworld", "td3"): 27.0}
#: What a trial costs besides its steps (process start, checks, evaluations), for the same estimate:
#: 1024-step PPO trials on InvertedPendulum took about 15 s each.
DEFAULT_TRIAL_OVERHEAD_S = 10.0


class RunInterrupted(UserError):
    """The run was stopped (Ctrl-C or SIGTERM); it is recorded ``interrupted`` and can be resumed."""


@dataclass
class RunSummary:
    """How a call of :func:`run_experiment` ended.

    :param counts: trials per status after this call
    :param ran: trials run by this call
    :param before: trials already done when it started
    :param report: the report written (None when writing it failed)
    """

    run_id: str
    run_dir: Path
    status: RunStatus
    counts: dict[str, int]
    ran: int = 0
    before: int = 0
    report: Path | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


def run_experiment(
    spec_path: str | Path,
    out: Path = Path("runs"),
    resume: bool | str = False,
    workers: int | None = None,
    backend: str = "local",
    console: Console | None = None,
    provider_overrides: dict[str, Any] | None = None,
    address: str | None = None,
    rerun_changed: bool = False,
    make_backend: Callable[[int], Backend] | None = None,
) -> RunSummary:
    """Run every trial of an experiment spec and write its report.

    :param spec_path: the experiment spec (YAML, see :mod:`rewardlab.runs.spec`)
    :param out: folder for the run store and run directories
    :param resume: ``True``: continue the latest run of this spec's name; a run id: continue that run;
        trials already ``done`` are not run again
    :param workers: trials trained in parallel (default: the spec's ``workers``)
    :param backend: ``local`` (worker processes on this machine) or ``ray``
    :param console: where progress and the summary go (a new rich console by default)
    :param provider_overrides: ``provider``/``model``/``base_url`` replacing those of every generated
        reward source of the spec
    :param address: the Ray cluster to use (``ray`` backend; default: a local one)
    :param rerun_changed: on resume, re-run finished trials whose program, budget or settings changed
    :param make_backend: builds the backend from a worker count (tests); default from ``backend``
    :raises UserError: one line for every bad input; :class:`RunInterrupted` when stopped
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; use --backend local or --backend ray")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if address is not None and backend != "ray":
        raise UserError("--address names a Ray cluster; use it with --backend ray")
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    spec_yaml = read_text_file(spec_path, "spec")
    console = console or Console()
    out = Path(out)
    trials = spec.trials()

    # -- validate everything before anything is written --------------------------------------------
    cards = {task: load_card(task) for task in spec.tasks}
    for card in cards.values():
        verify_card(card)
    from rewardlab.training import validate

    for card in cards.values():
        for algo in spec.algorithms:
            validate(card, spec.train_config(algo, spec.seeds[0]))
    resolved: dict[tuple[str, str], ResolvedReward] = {}
    for task, card in cards.items():
        for source in spec.rewards:
            if not _is_generated(source):
                resolved[(task, source.name)] = resolve_source(source, card)
            if isinstance(source, ShapedSource):  # a shaper the task or a learner cannot run: one line, no run
                from rewardlab.shaping.base import check_shaper_for

                for algo in spec.algorithms:
                    check_shaper_for(card, source.shaper.name, source.shaper.params, spec.trainer, algo)
    overrides = {k: v for k, v in (provider_overrides or {}).items() if v is not None}
    for source in spec.rewards:
        generated = _generated_part(source)
        if generated is not None:
            from rewardlab.text2reward.providers import check_provider

            try:
                check_provider(generated.generate.model_copy(update=overrides))
            except UserError as e:
                raise UserError(f"reward source {source.name!r}: {e}") from None
    n_workers = workers or spec.workers
    if make_backend is None:
        make_backend = _backend_factory(backend, address, out)
    # the backend starts before the run is recorded: a cluster that cannot start is one line, no run
    backend_instance = make_backend(n_workers)
    try:
        return _run(spec, trials, spec_path, spec_yaml, out, resume, rerun_changed, cards, resolved, overrides,
                    backend_instance, console)
    finally:
        backend_instance.shutdown(cancel=True)


def _run(spec: ExperimentSpec, trials: list[TrialSpec], spec_path: Path, spec_yaml: str, out: Path,
         resume: bool | str, rerun_changed: bool, cards: dict[str, EnvCard],
         resolved: dict[tuple[str, str], ResolvedReward], overrides: dict[str, Any], backend: Backend,
         console: Console) -> RunSummary:
    """The run itself, once everything is validated and the backend is up."""
    with RunStore(out / DB_NAME) as store:
        previous = store.get_run(resume) if isinstance(resume, str) else (
            store.latest_run(spec.name) if resume else None)
        run = _open_run(store, spec, spec_path, spec_yaml, resume, out, console)
        run_dir = out / run.id
        summary = RunSummary(run.id, run_dir, "running", {})
        status: RunStatus = "failed"
        reason: str | None = None
        started = False  # whether this call changed anything in the run (a refusal before that changes nothing)
        try:
            with _heartbeat(store.path, run.id), _sigterm_interrupts():
                _generate_sources(spec, cards, store, run.id, run_dir, out, overrides, console, resolved, backend)
                rows = _add_trials(store, run.id, trials, resolved, rerun_changed, console)
                started = True
                if run.spec_yaml != spec_yaml:
                    console.print(f"[yellow]the spec changed since {run.id} started; its trials are matched by key")
                    store.update_spec_yaml(run.id, spec_yaml)
                (run_dir / "spec.yaml").write_text(spec_yaml)
                todo = [(rows[t.key], t) for t in trials if rows[t.key].status != "done"]
                summary.before = len(trials) - len(todo)
                _note_extra(rows, trials, console)
                if summary.before:
                    console.print(f"{summary.before} of {len(trials)} trials already done; running the other {len(todo)}")
                if todo:
                    _print_estimate(store, todo, cards, min(backend.capacity, len(todo)), console)
                    _execute(store, todo, run_dir, backend, resolved, console)
                    summary.ran = len(todo)
            counts = store.status_counts(run.id)
            status = "done" if counts["done"] == sum(counts.values()) else "failed"
            if status == "failed":
                reason = f"{counts['failed']} of {sum(counts.values())} trials failed" if counts["failed"] else (
                    f"{counts['pending'] + counts['running']} trials did not run")
        except (KeyboardInterrupt, RunInterrupted, GenerationInterrupted) as e:
            status, reason = "interrupted", str(e) or "interrupted (Ctrl-C)"
            raise RunInterrupted(f"run {run.id} {reason}; continue it with: rewardlab run "
                                 f"{relative_path(spec_path)} --out {relative_path(out)} --resume {run.id}") from None
        except UserError as e:
            reason = one_line(str(e))
            if not started and previous is not None and previous.id == run.id and previous.status != "running":
                status, reason = previous.status, previous.reason  # a refused resume leaves the run as it was
            raise
        except SystemExit as e:  # rich exits when its output is closed (`rewardlab run ... | head`)
            status, reason = "interrupted", f"stopped: its output was closed (exit {e.code})"
            raise
        except BaseException as e:
            reason = describe_error(e)
            raise
        finally:
            summary.status = status
            try:
                store.reset_interrupted(run.id)
                store.set_run_status(run.id, status, reason)
                summary.counts = {str(k): v for k, v in store.status_counts(run.id).items()}
                summary.failures = [f"{t.key}: {t.error}" for t in store.trials(run.id, "failed")]
            except UserError as e:  # the store itself failed (full disk): keep the error that got us here
                console.print(f"[red]the run's end could not be recorded: {escape(one_line(str(e)))}")
    summary.report = _write_report(run.id, out, console)
    _print_summary(summary, spec_path, out, console)
    return summary


def _generated_part(source: RewardSource) -> GeneratedSource | None:
    """The generated source inside ``source`` (itself, or a shaped source's base), if any."""
    if isinstance(source, ShapedSource):
        return _generated_part(source.base)
    return source if isinstance(source, GeneratedSource) else None


def _is_generated(source: RewardSource) -> bool:
    return _generated_part(source) is not None


def _backend_factory(backend: str, address: str | None, out: Path) -> Callable[[int], Backend]:
    if backend == "ray":
        from rewardlab.runs.backends.ray import RayBackend, check_ray

        check_ray()  # a clear line now if ray is not installed, before the run is created
        return lambda n: RayBackend(n, address=address, out=out)
    from rewardlab.runs.backends.local import LocalBackend

    return lambda n: LocalBackend(n)


# -- the run and its lease ----------------------------------------------------------------------------
def _open_run(store: RunStore, spec: ExperimentSpec, spec_path: Path, spec_yaml: str, resume: bool | str,
              out: Path, console: Console) -> RunRecord:
    """The run to work on, its lease held by this process: the one to resume, or a new one."""
    if resume:
        run = store.get_run(resume) if isinstance(resume, str) else store.latest_run(spec.name)
        if run is None:
            if isinstance(resume, str):
                known = ", ".join(r.id for r in store.list_runs(spec.name)[:5]) or "none"
                raise UserError(f"no run {resume!r} in {store.path} (runs of spec {spec.name!r}: {known})")
            raise UserError(f"nothing to resume: no run of spec {spec.name!r} in {store.path}")
        if run.spec_name != spec.name:
            raise UserError(f"run {run.id} is a run of spec {run.spec_name!r}, not of {spec.name!r}")
        run = store.acquire_run(run.id)
        interrupted = store.reset_interrupted(run.id)
        console.print(f"resuming {run.id}" + (f" ({interrupted} interrupted trial(s) to redo)" if interrupted else ""))
        (out / run.id).mkdir(parents=True, exist_ok=True)
        return run
    for old in store.list_runs(spec.name):
        if old.status == "running" and old.holder_pid is not None and holder_alive(old):
            console.print(f"[yellow]note:[/] run {old.id} of this spec is still running (process {old.holder_pid} on "
                          f"{old.holder_host}); starting a second, separate run")
            break
        if old.status != "done":
            counts = store.status_counts(old.id)
            console.print(
                f"[yellow]note:[/] run {old.id} of this spec did not finish ({old.status}: {counts['done']} of "
                f"{sum(counts.values())} trials done); continue it with `rewardlab run {escape(relative_path(spec_path))} "
                f"--out {escape(relative_path(out))} --resume {old.id}`; starting a new run")
            break
    base = f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    for n in range(1, 1000):
        run_id = base if n == 1 else f"{base}-{n}"
        if store.get_run(run_id) is not None:
            continue
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / run_id).mkdir()  # atomic: a directory that exists is never reused
        except FileExistsError:
            continue
        except OSError as e:
            raise UserError(f"cannot create the run directory in {out}: {describe_os_error(e)}") from None
        console.print(f"new run {run_id}")
        return store.create_run(run_id, spec.name, spec_yaml, hold=True)
    raise UserError(f"cannot find a free run id for {base} in {out}")


@contextmanager
def _heartbeat(db: Path, run_id: str) -> Iterator[None]:
    """Refresh the run's lease every :data:`~rewardlab.store.LEASE_BEAT_S` from a thread with its own
    connection, so a long generation or a long trial never lets it go stale."""
    stop = threading.Event()

    def beat() -> None:
        try:
            with RunStore(db) as store:
                while not stop.wait(LEASE_BEAT_S):
                    store.heartbeat(run_id)
        except UserError:
            pass  # the store became unwritable: the main thread will say so when it next writes

    thread = threading.Thread(target=beat, daemon=True, name="lease-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


#: Signals that stop a run like Ctrl-C, and how the stored reason says it.
STOP_REASONS = {signal.SIGTERM: "was terminated (SIGTERM)", signal.SIGHUP: "lost its terminal (SIGHUP)"}


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (and SIGHUP: a closed terminal) stop the run like Ctrl-C: recorded ``interrupted``,
    workers stopped, one line."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise RunInterrupted(STOP_REASONS.get(signal.Signals(signum), f"was stopped by signal {signum}"))

    previous = {sig: signal.signal(sig, handler) for sig in STOP_REASONS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- sources, programs, trials ----------------------------------------------------------------------------
def _generate_sources(spec: ExperimentSpec, cards: dict[str, EnvCard], store: RunStore, run_id: str, run_dir: Path,
                      out: Path, overrides: dict[str, Any], console: Console,
                      resolved: dict[tuple[str, str], ResolvedReward], backend: Backend | None = None) -> None:
    """Run the generation loop once per (task, generated source); the program it picks is recorded in
    the store, so a resumed run reuses it instead of generating again."""
    from rewardlab.text2reward.loop import generate_program


    def generate(source: GeneratedSource, card: EnvCard) -> RewardProgram:
        known = store.generated_source(run_id, source.name, card.id)
        if known is not None:
            record = store.get_program(known.program_id)
            if record is not None:
                return RewardProgram(record.source, origin=f"generated:{known.generation}", parent=record.parent_id)
        settings = source.generate.model_copy(update=overrides)
        console.print(f"generating {source.name} for {card.id} ({settings.provider})")
        program, generation = generate_program(source.model_copy(update={"generate": settings}), card, out, console,
                                               backend)
        pid = store.add_program(program.source, origin=program.origin, card_id=card.id, parent_id=program.parent)
        store.set_generated_source(run_id, source.name, card.id, pid, generation)
        copy = run_dir / "generated" / safe_name(source.name) / f"{safe_name(card.id)}.py"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(program.source)  # for people to read; runs read the store
        return program

    for task, card in cards.items():
        for source in spec.rewards:
            if _is_generated(source):
                resolved[(task, source.name)] = resolve_source(source, card, generate)


def _fingerprint(trial: TrialSpec) -> str:
    """What must not change under a finished trial: its training settings, and a shaper's parameters."""
    shaper = trial.reward.shaper.model_dump() if isinstance(trial.reward, ShapedSource) else None
    return json.dumps({"config": trial.config.model_dump(mode="json"), "shaper": shaper}, sort_keys=True)


def _add_trials(store: RunStore, run_id: str, trials: list[TrialSpec], resolved: dict[tuple[str, str], ResolvedReward],
                rerun_changed: bool, console: Console) -> dict[str, TrialRecord]:
    """Record every program and add the spec's trials; refuse (or, with ``rerun_changed``, reset) finished
    trials whose program or settings changed since they ran."""
    program_ids: dict[tuple[str, str], str | None] = {}
    for (task, name), reward in resolved.items():
        program = program_of(reward)
        program_ids[(task, name)] = None if program is None else store.add_program(
            program.source, origin=_origin(program), card_id=task, parent_id=program.parent)
    new = {
        t.key: NewTrial(t.key, t.task, t.reward_name, t.algo, t.seed, steps=t.steps, trainer=t.config.trainer,
                        program_id=program_ids[(t.task, t.reward_name)], config_json=_fingerprint(t),
                        source_json=json.dumps(t.reward.model_dump(mode="json")))
        for t in trials
    }
    rows = {r.key: r for r in store.trials(run_id)}
    changed: list[str] = []
    replace: list[tuple[int, NewTrial]] = []
    for key, row in rows.items():
        if key not in new:
            continue
        want = new[key]
        differs = []
        if row.program_id != want.program_id:
            differs.append(f"program {(row.program_id or 'env')[:8]} -> {(want.program_id or 'env')[:8]}")
        if row.steps is not None and row.steps != want.steps:
            differs.append(f"budget {row.steps} -> {want.steps} steps")
        elif row.config_json is not None and row.config_json != want.config_json:
            differs.append("training settings")
        if not differs:
            continue
        if row.status == "done" and not rerun_changed:
            changed.append(f"{key} ({', '.join(differs)})")
        else:
            replace.append((row.id, want))
    if changed:  # refused before anything is changed
        raise UserError(f"run {run_id}: {len(changed)} finished trial(s) would mix with changed settings, first "
                        f"{changed[0]}; re-run them with --rerun-changed, or start a new run (without --resume)")
    for trial_id, want in replace:
        store.replace_trial(trial_id, want)
    store.add_trials(run_id, [want for key, want in new.items() if key not in rows])
    return {r.key: r for r in store.trials(run_id)}


def _origin(program: RewardProgram) -> str:
    if program.origin.startswith("reference"):
        return "reference"
    if program.origin.startswith("generated:"):
        return program.origin
    return "file"


def _note_extra(rows: dict[str, TrialRecord], trials: list[TrialSpec], console: Console) -> None:
    wanted = {t.key for t in trials}  # a set once: linear, whatever the number of seeds
    extra = sum(1 for key, row in rows.items() if key not in wanted and row.status != "done")
    if extra:
        console.print(f"[yellow]{extra} unfinished trial(s) of this run are no longer in the spec; left as they are")


def _print_estimate(store: RunStore, todo: list[tuple[TrialRecord, TrialSpec]], cards: dict[str, EnvCard],
                    n_workers: int, console: Console) -> None:
    """The run's expected duration, from this store's finished trials of the same simulator and
    algorithm when there are any, else from :data:`DEFAULT_STEPS_PER_S`."""
    measured: dict[tuple[str, str], list[float]] = {}
    for run in store.list_runs()[:20]:
        for t in store.trials(run.id, "done"):
            if t.result is not None and t.result.wall_s > 0 and t.task in cards:
                measured.setdefault((cards[t.task].simulator, t.algo), []).append(t.result.steps / t.result.wall_s)
    seconds, guessed = 0.0, False
    for _, trial in todo:
        rates = measured.get((cards[trial.task].simulator, trial.algo))
        if rates:
            rate = sorted(rates)[len(rates) // 2]
        else:
            rate, guessed = DEFAULT_STEPS_PER_S.get((cards[trial.task].simulator, trial.algo), 100.0), True
        seconds += trial.steps / rate + (0.0 if rates else DEFAULT_TRIAL_OVERHEAD_S)
    seconds /= max(n_workers, 1)
    steps = sum(t.steps for _, t in todo)
    basis = "a rough default throughput" if guessed else "the throughput of this store's finished trials"
    text = f"{len(todo)} trials, {steps:,} steps on {n_workers} worker(s): about {_duration(seconds)} (from {basis})"
    console.print(("[yellow]" if seconds > 86_400 else "") + text)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    years = seconds / 31_557_600
    return f"{seconds / 86_400:,.0f} days" if years < 2 else f"{years:,.0f} years"


# -- executing trials ----------------------------------------------------------------------------
def _execute(
    store: RunStore,
    todo: list[tuple[TrialRecord, TrialSpec]],
    run_dir: Path,
    backend: Backend,
    resolved: dict[tuple[str, str], ResolvedReward],
    console: Console,
) -> None:
    """Run ``todo`` on ``backend``, at most its capacity at a time, recording each outcome as it arrives.
    On any exception (Ctrl-C, SIGTERM, a full disk) running tasks are stopped before it propagates."""
    queue = deque(todo)
    rows = {row.id: (row, trial) for row, trial in todo}
    columns = (TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("trials", total=len(todo))
        try:
            while queue or backend.in_flight():
                while queue and backend.in_flight() < backend.capacity:
                    row, trial = queue.popleft()
                    trial_dir = run_dir / "trials" / trial.dir_name
                    try:
                        if trial_dir.exists():  # a partial directory of an interrupted or failed try
                            shutil.rmtree(trial_dir)
                        trial_dir.mkdir(parents=True)
                    except OSError as e:
                        store.mark_failed(row.id, f"cannot prepare the trial directory: {describe_os_error(e)}")
                        progress.console.print(f"[red]failed[/] {escape(trial.key)}: {escape(describe_os_error(e))}")
                        progress.advance(bar)
                        continue
                    source = as_inline(resolved[(trial.task, trial.reward_name)], trial.reward_name)
                    store.mark_running(row.id, trial_dir)
                    backend.submit(TrialTask(row.id, trial.key, trial.task, source, trial.config, str(trial_dir)))
                for task, outcome in backend.wait(timeout=1.0):
                    row, trial = rows[task.trial_id]
                    _record_outcome(store, row, trial, outcome, progress.console, Path(task.trial_dir))
                    progress.advance(bar)
            backend.wait(timeout=0)  # a stop signal a backend held during its last call is raised now
        except BaseException:
            backend.shutdown(cancel=True)
            raise


def _record_outcome(store: RunStore, row: TrialRecord, trial: TrialSpec, outcome: TrialOutcome,
                    console: Console, trial_dir: Path | None = None) -> None:
    if outcome.result is not None:
        store.mark_done(row.id, outcome.result, curve_metrics(outcome.result))
        designed = trial_dir / "designed_reward.py" if trial_dir is not None else None
        if designed is not None and designed.is_file() and isinstance(trial.reward, ShapedSource):
            # a shaper's designed reward (EXPRD) is a program like any other: stored, with its base as parent
            store.add_program(designed.read_text(), origin=f"shaper:{trial.reward.shaper.name}", card_id=trial.task,
                              parent_id=row.program_id)
        console.print(f"[green]done[/]   {escape(trial.key)}  {_describe_result(outcome.result)}")
        return
    error = outcome.error or "the trial ended without a result or an error"
    store.mark_failed(row.id, error)
    console.print(f"[red]failed[/] {escape(trial.key)}: {escape(error)}")


def curve_metrics(result: TrialResult) -> list[tuple[int, str, float]]:
    """A result's learning curve as metric rows ``(step, name, value)``: every number of every curve
    point (``return_env``, ``return_program``, ``success``, ``length``) except ``None``s, and every
    component as ``component/<name>``."""
    rows = []
    for point in result.curve:
        for name in ("return_env", "return_program", "success", "length"):
            value = getattr(point, name)
            if value is not None:
                rows.append((point.step, name, float(value)))
        for name, value in point.components.items():
            rows.append((point.step, f"component/{name}", float(value)))
    return rows


def _describe_result(result: TrialResult) -> str:
    """One line on a finished trial: final evaluation returns, success and wall time."""
    parts = []
    for name, label in (("env_return", "env return"), ("program_return", "program return"), ("success", "success")):
        value = result.final(name)
        if value is not None:
            parts.append(f"{label} {value:.2f}")
    parts.append(f"{result.wall_s:.0f}s")
    if result.reward_cost.get("fraction", 0.0) > 1.0:
        parts.append(f"[yellow]reward cost {result.reward_cost['fraction']:.1f}x the env step[/]")
    return ", ".join(parts)


def _write_report(run_id: str, out: Path, console: Console) -> Path | None:
    from rewardlab.runs.report import write_report

    try:
        return write_report(run_id, out=out)
    except (UserError, OSError) as e:
        console.print(f"[yellow]the report could not be written: {escape(one_line(str(e)))}")
        return None


def _print_summary(summary: RunSummary, spec_path: Path, out: Path, console: Console) -> None:
    c = summary.counts
    unfinished = c.get("pending", 0) + c.get("running", 0)
    console.print(
        f"[bold]{summary.run_id}[/]: {c.get('done', 0)} done, {c.get('failed', 0)} failed"
        + (f", {unfinished} not run" if unfinished else "")
        + f" ({summary.ran} run now, {summary.before} done before)"
    )
    if summary.report is not None:
        console.print(f"report: {relative_path(summary.report)}")
    if summary.failed:
        console.print(f"re-run the failed trials with: rewardlab run {escape(relative_path(spec_path))} --out "
                      f"{escape(relative_path(out))} --resume {summary.run_id}")
