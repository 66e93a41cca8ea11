"""What the review pages show, read through the run store's typed records (never SQL here).

A *training* is one trained policy of a program: a generation candidate's probe (its result summary is
stored with the candidate; the model lies in the generation run's directory), an experiment trial, or a
``rewardlab train`` run, which is not in the store: it is read from its directory ``<out>/train/<name>``
(:func:`train_runs`).
Paths served to the browser are always checked to lie inside the run's own directory
(:func:`inside_run`).
"""

from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from rewardlab.errors import UserError
from rewardlab.stats import SUCCESS_BOUNDS, Estimate, iqm_ci
from rewardlab.store import CandidateRecord, LineageNode, ProgramRecord, RunRecord, RunStore
from rewardlab.types import TrialResult


class NotFound(UserError):
    """An unknown run, program, job or file: the page answers 404 with this line."""


@dataclass
class Training:
    """One trained policy of a program.

    :param label: where it comes from, in words (``probe r0-s1 of generate-...``, ``trial ...``)
    :param run_id: the run whose directory holds it
    :param rel_dir: its directory relative to the run directory (``None``: nothing on disk)
    :param result: the stored training result (curve, final evaluation)
    :param card: the env card it trained on
    :param seed: its training seed
    """

    label: str
    run_id: str
    rel_dir: str | None
    result: TrialResult
    card: str
    seed: int
    has_model: bool = False
    #: why there is no video (the simulator cannot render here, or an earlier render failed); None: can try
    video_note: str | None = None
    #: ``train``: a ``rewardlab train`` run outside the store (its own URLs); ``store``: a stored run's
    source: str = "store"

    @property
    def key(self) -> str:
        return f"{self.run_id}/{self.rel_dir}" if self.rel_dir else self.run_id

    @property
    def curves_url(self) -> str:
        if self.source == "train":
            return f"/train/{quote(self.run_id)}/curves.svg"
        return f"/runs/{quote(self.run_id)}/curves/{quote(self.rel_dir or '')}.svg"

    @property
    def video_url(self) -> str:
        if self.source == "train":
            return f"/train/{quote(self.run_id)}/video.webm"
        return f"/runs/{quote(self.run_id)}/video/{quote(self.rel_dir or '')}.webm"

    def success(self) -> Estimate:
        """Final success rate over the evaluation episodes: IQM and 95% bootstrap interval."""
        values = [float(v) for v in self.result.eval.success if v is not None]
        return iqm_ci(values, bounds=SUCCESS_BOUNDS)

    def env_return(self) -> Estimate:
        """Final env return over the evaluation episodes: IQM and 95% bootstrap interval."""
        return iqm_ci([float(v) for v in self.result.eval.env_return if math.isfinite(v)])

    def program_return(self) -> Estimate:
        return iqm_ci([float(v) for v in self.result.eval.program_return if v is not None and math.isfinite(v)])


@dataclass
class ProgramView:
    """Everything the program page shows."""

    record: ProgramRecord
    parent: ProgramRecord | None
    tree: LineageNode
    candidates: list[CandidateRecord]
    trainings: list[Training] = field(default_factory=list)

    @property
    def preference(self) -> dict[str, Any] | None:
        """The latest trajectory preference check of the program (score, rho, per-term shares)."""
        for cand in reversed(self.candidates):
            if cand.checks and cand.checks.get("preference"):
                return preference_summary(cand.checks["preference"])
        return None


def preference_summary(report: dict[str, Any]) -> dict[str, Any]:
    """A stored preference report (:class:`rewardlab.checks.PreferenceReport`) with its ``score`` and each
    component's share of the expert's return (``shares``)."""
    from rewardlab.checks import preference_score

    nan = float("nan")
    rho, graded = report.get("rho", nan), report.get("rho_graded", nan)
    shares = {k: v.get("expert_share") for k, v in (report.get("scales") or {}).items() if isinstance(v, dict)}
    return {**report, "score": preference_score(nan if rho is None else rho, nan if graded is None else graded),
            "shares": shares}


def run_meta(run: RunRecord) -> dict[str, Any]:
    """A run's stored settings (a generation's config and purpose, a spec's YAML) as a dict."""
    try:
        meta = yaml.safe_load(run.spec_yaml) or {}
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def get_run(store: RunStore, run_id: str) -> RunRecord:
    run = store.get_run(run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r} in {store.path}")
    return run


def get_program(store: RunStore, program_id: str) -> ProgramRecord:
    """The program with this id (or a unique prefix of 6+ hex characters)."""
    if not (6 <= len(program_id) <= 64) or any(c not in "0123456789abcdef" for c in program_id):
        raise NotFound(f"no reward program {program_id!r}: ids are 6 to 64 hex characters")
    try:
        return store.find_program(program_id)
    except UserError as e:
        raise NotFound(str(e)) from None


def inside_run(out: Path, run_id: str, relative: str) -> Path:
    """``out/run_id/relative`` resolved, refused unless it lies inside the run's directory.

    :raises NotFound: the path leaves the run directory (``..``, an absolute path, a link out) or is no file
    """
    root = (Path(out) / run_id).resolve()
    if not root.is_relative_to(Path(out).resolve()) or root == Path(out).resolve():
        raise NotFound(f"no run directory {run_id!r}")
    if "\x00" in relative or Path(relative).is_absolute():
        raise NotFound(f"{relative!r} is not a file of run {run_id}")
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise NotFound(f"{relative!r} is not a file of run {run_id}")
    return target


def run_trees(store: RunStore, run_id: str) -> list[LineageNode]:
    """The lineage trees of every program a generation run met (each tree from its root, once)."""
    roots: dict[str, LineageNode] = {}
    for cand in store.candidates(run_id):
        if cand.program_id is None:
            continue
        root = store.lineage(cand.program_id)[-1]
        if root.id not in roots:
            roots[root.id] = store.lineage_tree(root.id)
    return list(roots.values())


def candidate_dir(store: RunStore, cand: CandidateRecord, out: Path) -> str | None:
    """A probe's directory relative to its run directory (from the stored model path, else the loop's
    naming: ``r<round>-s<sample>``, ``refine-s<sample>``)."""
    if cand.probe and cand.probe.get("model_path"):
        path = Path(cand.probe["model_path"]).resolve().parent
        root = (Path(out) / cand.run_id).resolve()
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    run = store.get_run(cand.run_id)
    purpose = run_meta(run).get("purpose") if run else None
    return f"refine-s{cand.sample}" if purpose == "refine" else f"r{cand.round}-s{cand.sample}"


def program_view(store: RunStore, program_id: str, out: Path) -> ProgramView:
    """The program page's content: code, parent, lineage tree, candidates, trainings."""
    from rewardlab.review.video import has_model

    record = get_program(store, program_id)
    parent = store.get_program(record.parent_id) if record.parent_id else None
    cands = store.candidates(program_id=record.id)
    view = ProgramView(record, parent, store.lineage_tree(record.id), cands)
    for cand in cands:
        if not cand.probe:
            continue
        run = store.get_run(cand.run_id)
        meta = run_meta(run) if run else {}
        rel = candidate_dir(store, cand, out)
        result = TrialResult.model_validate(cand.probe)
        algo = result.algo or meta.get("probe_algo") or ""
        view.trainings.append(Training(
            f"probe {rel} of {cand.run_id}" + (f" ({algo}, {result.steps} steps)" if algo else f" ({result.steps} steps)"),
            cand.run_id, rel, result if result.algo else result.model_copy(update={"algo": algo}),
            str(meta.get("card_id") or record.card_id or ""), int(meta.get("seed", 0) or 0),
            has_model(Path(out) / cand.run_id / rel) if rel else False,
            video_note(str(meta.get("card_id") or record.card_id or ""), Path(out) / cand.run_id / rel if rel else None)))
    for run in store.list_runs():
        if run.spec_name == "generate":
            continue
        for trial in store.trials(run.id):
            if trial.program_id != record.id or trial.result is None:
                continue
            rel = _trial_rel_dir(out, run.id, trial.dir)
            view.trainings.append(Training(
                f"trial {trial.key} of {run.id}", run.id, rel, trial.result, trial.task, trial.seed,
                has_model(Path(out) / run.id / rel) if rel else False,
                video_note(trial.task, Path(out) / run.id / rel if rel else None)))
    for train in train_runs(out):  # `rewardlab train --reward FILE` runs of this very program
        if train.result.reward_sha256 == record.id:
            training = train.training()
            training.label = f"rewardlab train run {train.name}"
            view.trainings.append(training)
    return view


def _trial_rel_dir(out: Path, run_id: str, trial_dir: str | None) -> str | None:
    if not trial_dir:
        return None
    root = (Path(out) / run_id).resolve()
    path = Path(trial_dir) if Path(trial_dir).is_absolute() else (Path(out) / run_id / "trials" / trial_dir)
    path = path.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else None


def experiment_trainings(store: RunStore, run_id: str, out: Path) -> list[Training]:
    """An experiment run's finished trials as trainings, in the run's order."""
    from rewardlab.review.video import has_model

    found = []
    for trial in store.trials(run_id):
        if trial.result is None:
            continue
        rel = _trial_rel_dir(out, run_id, trial.dir)
        path = Path(out) / run_id / rel if rel else None
        found.append(Training(f"{trial.task} · {trial.reward} · {trial.algo} · seed {trial.seed}", run_id, rel,
                              trial.result, trial.task, trial.seed, has_model(path) if path else False,
                              video_note(trial.task, path)))
    return found


def seed_summary(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """Per (task, reward, algo) of an experiment run: final success and env return over seeds, IQM with a
    95% stratified-bootstrap interval (:func:`rewardlab.stats.iqm_ci`)."""
    groups: dict[tuple[str, str, str], list[TrialResult]] = {}
    for trial in store.trials(run_id):
        if trial.result is not None:
            groups.setdefault((trial.task, trial.reward, trial.algo), []).append(trial.result)
    rows = []
    for (task, reward, algo), results in groups.items():
        success = [s for r in results if (s := r.final("success")) is not None]
        returns = [v for r in results if (v := r.final("env_return")) is not None]
        rows.append({"task": task, "reward": reward, "algo": algo, "seeds": len(results),
                     "success": iqm_ci(success, bounds=SUCCESS_BOUNDS).format() if success else "—",
                     "env_return": iqm_ci(returns).format(1) if returns else "—"})
    return rows


def diff_lines(old: str, new: str, old_name: str, new_name: str) -> str:
    """A unified diff of two programs (empty when they are the same)."""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=old_name, tofile=new_name))


def highlight_python(code: str) -> str:
    """``code`` as HTML with pygments' syntax classes (:func:`highlight_css` styles them)."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return highlight(code, PythonLexer(), HtmlFormatter(cssclass="code", linenos="table"))


def highlight_diff(diff: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import DiffLexer

    return highlight(diff, DiffLexer(), HtmlFormatter(cssclass="code diff"))


def highlight_css() -> str:
    from pygments.formatters import HtmlFormatter

    return str(HtmlFormatter(style="friendly").get_style_defs(".code"))


@dataclass(frozen=True)
class VideoSource:
    """What a rollout video is rendered from."""

    trial_dir: Path
    card: str
    algo: str
    seed: int
    simulator: str | None = None


def _trainings_of_run(store: RunStore, out: Path, run_id: str) -> list[Training]:
    run = get_run(store, run_id)
    if run.spec_name != "generate":
        return experiment_trainings(store, run_id, out)
    meta = run_meta(run)
    found = []
    for cand in store.candidates(run_id):
        if cand.probe:
            result = TrialResult.model_validate(cand.probe)
            algo = result.algo or meta.get("probe_algo") or ""
            found.append(Training(f"probe of {cand.program_id}", run_id, candidate_dir(store, cand, out),
                                  result.model_copy(update={"algo": algo}), str(meta.get("card_id") or ""),
                                  int(meta.get("seed", 0) or 0)))
    return found


def stored_result(store: RunStore, out: Path, run_id: str, rel_dir: str) -> TrialResult:
    """The stored training result (a probe's or a trial's) whose directory is ``rel_dir`` in the run.

    :raises NotFound: the run has no training there
    """
    for training in _trainings_of_run(store, out, run_id):
        if training.rel_dir == rel_dir:
            return training.result
    raise NotFound(f"run {run_id} has no training in {rel_dir!r}")


def video_source(store: RunStore, out: Path, run_id: str, rel_dir: str) -> VideoSource:
    """The model, card, algorithm and seed of the training in ``rel_dir`` (checked to lie in the run).

    :raises NotFound: no such training, or it left no model (probes off, a failed trial)
    """
    from rewardlab.review.video import has_model

    for training in _trainings_of_run(store, out, run_id):
        if training.rel_dir == rel_dir:
            trial_dir = inside_run(out, run_id, rel_dir)
            if not has_model(trial_dir) or not training.result.algo:
                raise NotFound(f"the training in {rel_dir!r} of run {run_id} left no model to render")
            return VideoSource(trial_dir, training.card, training.result.algo, training.seed,
                               card_simulator(training.card))
    raise NotFound(f"run {run_id} has no training in {rel_dir!r}")


@functools.lru_cache(maxsize=256)
def card_simulator(card_id: str) -> str | None:
    """The simulator of the card ``card_id`` (``None``: the card cannot be loaded here)."""
    from rewardlab.cards import load_card

    try:
        return load_card(card_id).simulator
    except (UserError, OSError, ValueError):
        return None


def video_note(card_id: str, trial_dir: Path | None) -> str | None:
    """Why a training has no rollout video on this machine, in one line, decided without rendering: the
    card's simulator cannot render here (:func:`rewardlab.review.video.render_problem`) or an earlier render
    of it failed (its marker file); ``None``: a video can be tried."""
    from rewardlab.review.video import FAILED_NAME, cached_failure, render_problem

    simulator = card_simulator(card_id)
    if simulator is None:
        return f"the env card {card_id!r} cannot be loaded here, so its policy cannot be run"
    problem = render_problem(simulator)
    if problem is not None:
        return problem
    failed = cached_failure(trial_dir) if trial_dir is not None else None
    return f"{failed} (delete {FAILED_NAME} in the trial directory to try again)" if failed else None


#: What each kind of run is called on the pages (a run's kind: :func:`run_kind`).
RUN_KINDS = {"generate": "Generation run", "refine": "Refine run", "experiment": "Experiment run",
             "randomize": "Domain randomisation proposal", "train": "Training run"}


def run_kind(run: RunRecord) -> str:
    """``generate``, ``refine``, ``randomize`` or ``experiment`` (any spec's name) for a stored run."""
    if run.spec_name == "generate":
        return "refine" if run_meta(run).get("purpose") == "refine" else "generate"
    if run.spec_name == "randomize":
        return "randomize"
    return "experiment"


@dataclass
class TrainRun:
    """A ``rewardlab train`` run: a directory ``<out>/train/<name>/`` with ``result.json`` (and
    ``model.zip``, ``train.yaml``); it is not in the run store.

    :param settings: ``train.yaml`` (card, reward, algo, seed, budget); for runs made before it was
        written, what the directory name says (``<card>-<reward>-<algo>-<seed>``)
    """

    name: str
    path: Path
    result: TrialResult
    settings: dict[str, Any]
    created: str

    @property
    def card(self) -> str:
        return str(self.settings.get("card_id") or "")

    def training(self) -> Training:
        seed = int(self.settings.get("seed", 0) or 0)
        from rewardlab.review.video import has_model

        label = (f"{self.card or '?'} · {self.settings.get('reward', '?')} · {self.result.algo or '?'} · seed {seed}")
        return Training(label, self.name, ".", self.result, self.card, seed, has_model(self.path),
                        video_note(self.card, self.path) if self.card else "the run does not say which env card it "
                        "trained on, so its policy cannot be run", source="train")

    def files(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.is_file())


TRAIN_DIR = "train"


def _train_settings(path: Path) -> dict[str, Any]:
    settings_file = path / "train.yaml"
    if settings_file.is_file():
        try:
            settings = yaml.safe_load(settings_file.read_text()) or {}
            if isinstance(settings, dict):
                return settings
        except yaml.YAMLError:
            pass
    # made before train.yaml existed: <safe card id>-<reward>-<algo>-<seed>[-n]; a card id is found by its
    # safe name (the one part that may hold dashes of its own)
    from rewardlab.cards import card_index
    from rewardlab.paths import safe_name

    for card_id in sorted(card_index(), key=len, reverse=True):
        prefix = safe_name(card_id) + "-"
        if path.name.startswith(prefix):
            rest = path.name[len(prefix):].split("-")
            found: dict[str, Any] = {"card_id": card_id}
            if len(rest) >= 3 and rest[-1].isdigit() and rest[-2].isdigit():
                rest = rest[:-1]  # a -2, -3 suffix of a reused name
            if len(rest) >= 3 and rest[-1].isdigit():
                found.update(reward="-".join(rest[:-2]), algo=rest[-2], seed=int(rest[-1]))
            return found
    return {}


def train_runs(out: Path) -> list[TrainRun]:
    """Every finished ``rewardlab train`` run under ``out/train`` (a directory with ``result.json``),
    newest first; unreadable results are skipped."""
    from datetime import datetime, timezone

    root = Path(out) / TRAIN_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        result_file = path / "result.json"
        if path.is_symlink() or not result_file.is_file():
            continue
        try:
            result = TrialResult.model_validate_json(result_file.read_text())
        except (ValueError, OSError):
            continue
        stamp = datetime.fromtimestamp(result_file.stat().st_mtime, tz=timezone.utc).isoformat()
        found.append(TrainRun(path.name, path, result, _train_settings(path), stamp))
    return sorted(found, key=lambda r: r.created, reverse=True)


def get_train_run(out: Path, name: str) -> TrainRun:
    """The train run ``out/train/<name>`` (also given as ``train/<name>`` or a path ending in it).

    :raises NotFound: no such finished run
    """
    name = Path(name.rstrip("/")).name
    for run in train_runs(out):
        if run.name == name:
            return run
    raise NotFound(f"no train run {name!r} in {Path(out) / TRAIN_DIR} (a directory with result.json)")
