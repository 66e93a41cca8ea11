"""The generation loop: Text2Reward's prompts, Eureka's search, checked before any training.

Each round asks the provider for ``samples`` programs. Every candidate goes through:

1. code extraction and the static policy, then the sandbox trial on sampled states; a failing candidate
   gets its error fed back (with correction-memory examples) for up to ``fix_attempts`` retries;
2. the trajectory preference check (scripted experts, perturbed, random and idle trajectories), which
   ranks candidates before any training;
3. a short training probe; its success rate (else env return) is the candidate's score.

The best candidate of a round and a reflection on its training (per-component statistics, success
rate, episode lengths) seed the next round. Budgets: tokens, training steps per probe, early stop at a
success target. Every program is stored with its parent (lineage), every exchange in the run store, so
``--provider replay`` re-runs a finished generation exactly, with no network.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rewardlab.cards import EnvCard, load_card
from rewardlab.checks import check_program, preference_score, trajectory_preference_check
from rewardlab.config import GenerationConfig
from rewardlab.errors import GenerationInterrupted, RewardProgramError, UserError, one_line
from rewardlab.llm.base import LLMError, LLMProvider, LLMReply, LLMRequest
from rewardlab.llm.log import ExchangeLog
from rewardlab.llm.replay import ReplayProvider
from rewardlab.paths import safe_name
from rewardlab.program import CompatModeWarning, RewardProgram
from rewardlab.rollouts import Trajectory, collect_trajectories
from rewardlab.sims.base import verify_card
from rewardlab.sources import GeneratedSource
from rewardlab.store import DB_NAME, RunStatus, RunStore
from rewardlab.text2reward.extract import extract_program
from rewardlab.text2reward.prompts import PromptBuilder, TrainingStats
from rewardlab.text2reward.providers import make_provider
from rewardlab.text2reward.retrieval import Example, retrieve_examples
from rewardlab.types import TrialResult

if TYPE_CHECKING:
    from rewardlab.training.tasks import Backend

__all__ = ["DB_NAME", "FEEDBACK_TAGS", "FeedbackRecord", "GenerationConfig", "GenerationResult", "Generator",
           "feedback_history", "generate", "generate_program", "refine", "refine_settings"]

#: Tags a reviewer may attach to feedback (the review page's check boxes); they go into the prompt before
#: the free text, and are stored with it.
FEEDBACK_TAGS = ("too slow", "hacks the reward", "wrong stage", "unstable", "ignores the task")

@dataclass
class Candidate:
    """One checked program of a generation run."""

    row: int
    program_id: str
    source: str
    round: int
    sample: int
    preference: dict[str, Any] | None = None
    probe: TrialResult | None = None
    score: float | None = None


@dataclass
class GenerationResult:
    """What a generation run produced."""

    run_id: str
    run_dir: Path
    best_program_id: str | None
    best_score: float | None
    candidates: int
    rejected: int
    first_attempt_failures: int
    fixes: list[int] = field(default_factory=list)  # attempts each fixed candidate needed
    tokens: int = 0
    stopped: str = ""
    status: str = "done"  # done, failed (nothing passed the checks) or interrupted (resume it)
    probe_steps: int = 0  # training steps all probes of the run took together
    probe_wall_s: float = 0.0
    best_preference: float | None = None  # the best program's preference-check score (-1..1)
    warnings: list[str] = field(default_factory=list)  # about the best program, one line each

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d


class _BudgetSpent(Exception):
    """The token budget ran out: finish with what there is."""


class Generator:
    """Runs one generation (see the module docstring); :func:`generate` is the usual entry."""

    def __init__(self, card: EnvCard | str | None, config: GenerationConfig, store: RunStore, out: Path,
                 console: Any = None, provider: LLMProvider | None = None, resume: str | None = None,
                 backend: Backend | None = None, purpose: str = "generate", record: dict[str, Any] | None = None):
        self.store = store
        self.console = console
        self.backend = backend
        self.review = dict(record or {})  # a refine's feedback: stored with the run and its exchanges
        stored: dict[str, Any] | None = None
        if resume is not None:  # the run's own settings; only how to reach the endpoint may change
            stored, config = _resumable(store, resume, config)
            card = stored["card_id"]
        if card is None:
            raise UserError("name the task (--env) or the generation run to continue (--resume RUN)")
        self.cfg = config
        self.card: EnvCard = card if isinstance(card, EnvCard) else load_card(card)
        verify_card(self.card)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        self.run_id = resume or f"generate-{safe_name(self.card.id)}-{stamp}"
        self.run_dir = Path(out) / self.run_id
        self.algo = config.probe_algo or ("sac" if self.card.simulator == "metaworld" else "ppo")
        self._check_probe_settings()
        from rewardlab.text2reward.memory import CorrectionMemory

        # the memory a run's prompts draw on is fixed when it starts (a replay: when the original did)
        replayed = self._replayed_run() if config.provider == "replay" and provider is None else None
        if stored is not None:
            upto = stored.get("memory_upto")
        elif replayed is not None:
            upto = replayed[1]
        else:
            upto = CorrectionMemory(store).snapshot()
        # the provider is built (and its settings checked) before the run is recorded: a bad setting
        # leaves no run behind
        self.log = ExchangeLog(store, self.run_id)
        self.provider = provider or make_provider(
            config.provider, model=config.model, base_url=config.base_url, api_key=config.api_key, log=self.log,
            timeout=config.timeout_s, max_retries=config.max_retries,
            **({"run_id": replayed[0]} if replayed is not None else {}))
        if hasattr(self.provider, "on_retry"):
            self.provider.on_retry = lambda line: self._say(f"  waiting: {line}")
        if resume is not None:
            store.acquire_run(resume)
            self.provider = _ResumedProvider(ReplayProvider(self.log, run_id=resume, record=False), self.provider)
        else:
            stored_record = {"card_id": self.card.id, "purpose": purpose, **config.model_dump(mode="json"),
                             "memory_upto": upto, **(record or {})}  # the API key is excluded
            store.create_run(self.run_id, "generate", yaml.safe_dump(stored_record, sort_keys=False), hold=True)
        self.prompts = PromptBuilder()
        self.examples: list[Example] = retrieve_examples(self.card, k=config.few_shot) if config.few_shot else []
        self._trajectories: list[Trajectory] | None = None
        # what a resumed run finished before: (round, sample, attempt) -> its candidate row
        self._done: dict[tuple[int, int, int], Any] = {
            (c.round, c.sample, c.attempt): c for c in store.candidates(self.run_id)} if resume else {}
        self.tokens = 0
        self.rejected = 0
        self.first_failures = 0
        self.fixes: list[int] = []
        self.probe_steps = 0
        self.probe_wall_s = 0.0
        self.memory = CorrectionMemory(store, upto=upto) if config.use_memory else None

    def _replayed_run(self) -> tuple[str, int | None]:
        """The run ``--provider replay`` answers from, and the memory snapshot its prompts used."""
        run_id = self.cfg.replay_run
        if run_id is None:
            for run in self.store.list_runs("generate"):
                meta = yaml.safe_load(run.spec_yaml) or {}
                if meta.get("card_id") == self.card.id and meta.get("provider") != "replay" and \
                        meta.get("purpose", "generate") == "generate" and \
                        any(e.provider != "replay" and e.texts is not None for e in self.store.exchanges(run.id)):
                    run_id = run.id
                    break
            if run_id is None:
                raise UserError(f"replay: no generation run of {self.card.id} with stored replies in {self.store.path}")
        original = self.store.get_run(run_id)
        if original is None or original.spec_name != "generate":
            raise UserError(f"replay: no generation run {run_id!r} in {self.store.path}")
        return run_id, (yaml.safe_load(original.spec_yaml) or {}).get("memory_upto")

    def _check_probe_settings(self) -> None:
        """Refuse probes that would not train (shorter than a PPO rollout, an unknown algorithm) before
        any request is made: a probe that never learns would score every candidate 0."""
        from rewardlab.config import Budget, TrainConfig
        from rewardlab.training import validate

        for flag, steps in (("--probe-steps", self.cfg.probe_steps), ("--final-steps", self.cfg.final_steps)):
            if steps:
                try:
                    validate(self.card, TrainConfig(algo=self.algo, seed=self.cfg.seed, budget=Budget(steps=steps)))
                except UserError as e:
                    raise UserError(f"{flag} {steps}: {e}") from None

    # -- talking to the provider -----------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False)

    def _ask(self, messages: list[dict[str, str]], n: int, purpose: str, round: int) -> list[tuple[str, int | None]]:
        """``n`` reply texts with the exchange id each came from; stops at the token budget."""
        out: list[tuple[str, int | None]] = []
        attempt = 0
        while len(out) < n:
            if self.cfg.token_budget is not None and self.tokens >= self.cfg.token_budget:
                raise _BudgetSpent()
            request = LLMRequest(
                messages=messages, model=getattr(self.provider, "model", None) or self.cfg.model or "offline",
                temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens, n=n - len(out),
                seed=self.cfg.seed + 1000 * round + attempt,
                metadata={"card_id": self.card.id, "purpose": purpose, "round": round,
                          "instruction": self.cfg.instruction,
                          **({"review": self.review} if purpose == "human" and self.review else {})},
            )
            reply: LLMReply = self.provider.complete(request)
            self.tokens += reply.tokens_in + reply.tokens_out
            out += [(t, reply.exchange_id) for t in reply.texts]
            attempt += 1
            if not reply.texts or attempt > n:  # a server that keeps returning nothing: stop asking
                break
        return out[:n]

    def _who(self) -> str:
        """The provider in words, with how long a request may take (a hung endpoint is no silent wait)."""
        live: Any = getattr(self.provider, "live", self.provider)
        if getattr(live, "base_url", None) is None:
            return str(live.name)
        return (f"{live.model} at {live.base_url} (up to {self.cfg.timeout_s:g} s a request, "
                f"{self.cfg.max_retries} retr{'ies' if self.cfg.max_retries != 1 else 'y'})")

    # -- one candidate -----------------------------------------------------------------------------
    def _checked(self, text: str, exchange: int | None, round: int, sample: int, parent: str | None,
                 base_messages: list[dict[str, str]]) -> Candidate | None:
        """Extract and check a reply; feed errors back up to ``fix_attempts`` times."""
        previous_pid: str | None = None
        previous_code = ""
        last_error = ""
        for attempt in range(self.cfg.fix_attempts + 1):
            source: str | None = None
            error: UserError | None = None
            try:
                source = extract_program(text)
                program = RewardProgram(source, origin=f"llm:{exchange}" if exchange else "llm")
                report = check_program(program, self.card, seed=self.cfg.seed)
                if not report.ok:
                    error = RewardProgramError(report.rule, report.message, report.line)
            except (RewardProgramError, UserError) as e:
                error = e
            pid = self.store.add_program(source, f"{self.cfg.provider}:{exchange}", self.card.id,
                                         previous_pid or parent) if source else None
            if error is None and source is not None and pid is not None:
                if attempt > 0:
                    self.fixes.append(attempt)
                    if self.memory is not None:
                        self.memory.record(self.card, previous_code, last_error, source, origin="generation")
                with warnings.catch_warnings():  # said once, in the progress line below
                    warnings.simplefilter("ignore", CompatModeWarning)
                    prefs = trajectory_preference_check(program, self.card, self._preference_trajectories())
                checks = {"trial": {"mode": report.mode, "total": report.total, "components": report.components},
                          "preference": prefs.to_dict()}
                row = self._candidate_row(pid, round, sample, attempt, "checked", checks=checks)
                per_env = ", runs per env (compat mode: a Python loop, slow)" if report.mode == "scalar" else ""
                self._say(f"  r{round} s{sample}: checked (attempt {attempt}{per_env}), preference check "
                          f"{prefs.summary()}"
                          f"{'; ' + '; '.join(prefs.warnings) if prefs.warnings else ''}")
                return Candidate(row, pid, source, round, sample, preference=prefs.to_dict())
            message = str(error)
            self._candidate_row(pid, round, sample, attempt, "rejected", error=message)
            self._say(f"  r{round} s{sample}: rejected (attempt {attempt}): {message}")
            if attempt == 0:
                self.first_failures += 1
            if attempt == self.cfg.fix_attempts:
                break
            corrections = self.memory.retrieve(self.card, error) if self.memory is not None else []
            code = source or text
            messages = self.prompts.execution_error(self.card, code, error, corrections=corrections,
                                                    instruction=self.cfg.instruction, examples=self.examples)
            previous_pid, previous_code, last_error = pid, code, message
            text, exchange = self._ask(messages, 1, "error", round)[0]
        self.rejected += 1
        return None

    def _candidate_row(self, pid: str | None, round: int, sample: int, attempt: int, status: str,
                       error: str | None = None, checks: dict[str, Any] | None = None) -> int:
        """The candidate's row: recorded now, or (a resumed run) the one recorded before."""
        done = self._done.get((round, sample, attempt))
        if done is not None and done.program_id == pid:
            return int(done.id)
        return self.store.add_candidate(self.run_id, pid, round, sample, attempt, status, error=error, checks=checks)

    def _preference_trajectories(self) -> list[Trajectory]:
        if self._trajectories is None:
            self._trajectories = collect_trajectories(self.card, seed=self.cfg.seed)
        return self._trajectories

    def _probe(self, cand: Candidate, steps: int, tag: str) -> TrialResult:
        from rewardlab.training import train

        program = RewardProgram(cand.source, origin=f"candidate:{cand.program_id[:12]}")
        with warnings.catch_warnings():  # compat mode was said when the candidate was checked
            warnings.simplefilter("ignore", CompatModeWarning)
            result = train(self.card, program, self.algo, steps, self.cfg.seed, self.run_dir / tag,
                           eval_episodes=self.cfg.eval_episodes, eval_every=max(steps // 4, 1), check=False)
        self.probe_steps += result.steps
        self.probe_wall_s += result.wall_s
        return result

    def _train_probes(self, cands: list[Candidate], steps: int, prefix: str) -> None:
        """Train each candidate for ``steps`` (in the backend's worker processes, side by side, when
        there is one); record each probe and score. A probe that fails (a reward that turns non-finite
        in training) fails its candidate, not the run; a resumed run reuses probes finished before."""
        from rewardlab.config import Budget, Evaluation, TrainConfig
        from rewardlab.sources import InlineSource
        from rewardlab.training.tasks import TrialTask, run_trial_task

        todo: list[tuple[Candidate, TrialTask]] = []
        twins: list[tuple[Candidate, Candidate]] = []  # (a candidate, the earlier one with the same program)
        for cand in cands:
            twin = next((c for c, _ in todo if c.program_id == cand.program_id), None)
            if twin is not None:  # the same program trains the same way (same seed): once is enough
                twins.append((cand, twin))
                continue
            done = next((c for c in self._done.values() if c.id == cand.row and c.probe and c.status == "trained"), None)
            if done is not None:
                cand.probe, cand.score = TrialResult.model_validate(done.probe), done.score
                self._say(f"  r{cand.round} s{cand.sample}: probe finished before the interruption, reused")
                continue
            trial_dir = self.run_dir / f"{prefix}-s{cand.sample}"
            trial_dir.mkdir(parents=True, exist_ok=True)
            config = TrainConfig(algo=self.algo, seed=self.cfg.seed, budget=Budget(steps=steps),
                                 evaluation=Evaluation(episodes=self.cfg.eval_episodes, every=max(steps // 4, 1)))
            source = InlineSource(name=f"candidate-{cand.sample}", source=cand.source,
                                  origin=f"candidate:{cand.program_id[:12]}")
            card = str(self.card.path) if self.card.path is not None else self.card.id
            todo.append((cand, TrialTask(cand.row, trial_dir.name, card, source, config, str(trial_dir))))
        if not todo:
            return
        workers = min(len(todo), self.backend.capacity) if self.backend else 0
        where = f"{workers} worker process{'es' * (workers != 1)}" if self.backend else "this process"
        self._say(f"  training {len(todo)} probe{'s' * (len(todo) != 1)} of {steps} {self.algo} steps in {where} ...")
        outcomes: dict[int, Any] = {}
        if self.backend is None:
            with warnings.catch_warnings():  # compat mode was said when the candidate was checked
                warnings.simplefilter("ignore", CompatModeWarning)
                outcomes = {task.trial_id: run_trial_task(task) for _, task in todo}
        else:
            queue = [task for _, task in todo]
            while queue or self.backend.in_flight():
                while queue and self.backend.in_flight() < self.backend.capacity:
                    self.backend.submit(queue.pop(0))
                outcomes.update({task.trial_id: outcome for task, outcome in self.backend.wait(1.0)})
        for cand, task in todo:  # recorded in candidate order, whatever order they finished in
            outcome = outcomes[task.trial_id]
            if outcome.result is None:
                cand.score = None
                self.store.update_candidate(cand.row, status="failed", error=outcome.error)
                self._say(f"  r{cand.round} s{cand.sample}: probe failed: {outcome.error}")
                continue
            cand.probe, cand.score = outcome.result, self._score(outcome.result)
            self.probe_steps += outcome.result.steps
            self.probe_wall_s += outcome.result.wall_s
            self.store.update_candidate(cand.row, status="trained", probe=_probe_summary(cand.probe), score=cand.score)
        for cand, twin in twins:
            self._say(f"  r{cand.round} s{cand.sample}: the same program as s{twin.sample}; its probe is reused")
            cand.probe, cand.score = twin.probe, twin.score
            if twin.probe is None:
                self.store.update_candidate(cand.row, status="failed", error=f"the same program as s{twin.sample}, "
                                            "whose probe failed")
            else:
                self.store.update_candidate(cand.row, status="trained", probe=_probe_summary(twin.probe),
                                            score=cand.score)

    @staticmethod
    def _score(result: TrialResult) -> float:
        """The probe's success rate, else its mean env return."""
        success = result.final("success")
        return success if success is not None else float(result.final("env_return") or 0.0)

    @contextmanager
    def _ends_the_run(self) -> Iterator[None]:
        """A generation that stops on an unexpected error is recorded ``failed`` with the reason, never
        left ``running`` (a failed request or Ctrl-C ends it ``interrupted``, in :meth:`_run`)."""
        try:
            yield
        except BaseException as e:
            if (run := self.store.get_run(self.run_id)) is not None and run.status == "running":
                self.store.set_run_status(self.run_id, "failed", one_line(str(e)) or type(e).__name__)
            raise

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> GenerationResult:
        with self._ends_the_run():
            return self._run()

    def _run(self) -> GenerationResult:
        cfg = self.cfg
        best: Candidate | None = None
        stopped = "all rounds done"
        messages = self.prompts.initial(self.card, cfg.instruction, self.examples)
        purpose = "initial"
        n_candidates = 0
        try:
            for round in range(cfg.rounds):
                self._say(f"round {round + 1}/{cfg.rounds}: asking {self._who()} for {cfg.samples} "
                          f"program{'s' * (cfg.samples != 1)}")
                replies = self._ask(messages, cfg.samples, purpose, round)
                parent = best.program_id if best is not None else None
                checked = [c for i, (text, ex) in enumerate(replies)
                           if (c := self._checked(text, ex, round, i, parent, messages)) is not None]
                n_candidates += len(replies)
                if not checked:
                    self._say(f"round {round + 1}: no candidate passed the checks")
                    continue
                # the preference check ranks candidates before any training
                checked.sort(key=lambda c: -_preference_score(c.preference))
                if cfg.probe_steps:
                    self._train_probes(checked, cfg.probe_steps, f"r{round}")
                for cand in checked:
                    if not cfg.probe_steps:
                        cand.score = _preference_score(cand.preference)
                        self.store.update_candidate(cand.row, score=cand.score)
                    if cand.score is not None:
                        self._say(f"  r{round} s{cand.sample}: score {cand.score:.3g}")
                round_best = max(checked, key=lambda c: c.score if c.score is not None else -math.inf)
                if best is None or (round_best.score or -math.inf) > (best.score or -math.inf):
                    best = round_best
                if cfg.success_target is not None and best.probe and best.score is not None \
                        and best.score >= cfg.success_target:
                    stopped = f"success target {cfg.success_target} reached"
                    break
                if round_best.probe:
                    stats = TrainingStats.from_trial(round_best.probe, algo=self.algo)
                    messages = self.prompts.reflection(self.card, round_best.source, stats,
                                                       instruction=cfg.instruction, examples=self.examples)
                    purpose = "reflection"
            if best is not None and cfg.final_steps:
                final = self._probe(best, cfg.final_steps, "final")
                best.score = self._score(final)
                self.store.update_candidate(best.row, probe=_probe_summary(final), score=best.score)
        except _BudgetSpent:
            stopped = f"token budget {cfg.token_budget} spent"
        except LLMError as e:  # finished rounds and candidates are kept; --resume continues from here
            if cfg.provider == "replay":  # a reply that is not stored will not be there on resume either
                return self._finish(best, n_candidates, str(e), failed=True)
            return self._finish(best, n_candidates, f"interrupted: {e}", interrupted=True)
        except KeyboardInterrupt:
            self._finish(best, n_candidates, "interrupted (Ctrl-C)", interrupted=True)
            raise
        return self._finish(best, n_candidates, stopped)

    def _finish(self, best: Candidate | None, n_candidates: int, stopped: str,
                interrupted: bool = False, failed: bool = False) -> GenerationResult:
        """Save the best program so far and the summary; mark the run done, failed (nothing passed the
        checks) or interrupted (``--resume`` continues it)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if best is not None:
            (self.run_dir / "best_reward.py").write_text(best.source)
        status: RunStatus = "interrupted" if interrupted else "done" if best is not None and not failed else "failed"
        if status == "failed" and stopped in ("all rounds done", "revised"):
            stopped = "no candidate passed the checks"
        preference = _preference_score(best.preference) if best is not None and best.preference else None
        result = GenerationResult(self.run_id, self.run_dir, best.program_id if best else None,
                                  best.score if best else None, n_candidates, self.rejected, self.first_failures,
                                  self.fixes, self.tokens, stopped, status, self.probe_steps, round(self.probe_wall_s, 1),
                                  preference, _best_warnings(best, preference))
        (self.run_dir / "generation.json").write_text(json.dumps(result.to_dict(), indent=1))
        self.store.set_run_status(self.run_id, status, None if status == "done" else one_line(stopped))
        return result

    def refine(self, parent_id: str, parent_source: str, feedback: str, observed: str | None = None) -> GenerationResult:
        """Text2Reward's human-feedback step: one revised program whose parent is ``parent_id``."""
        with self._ends_the_run():
            return self._refine(parent_id, parent_source, feedback, observed)

    def _refine(self, parent_id: str, parent_source: str, feedback: str, observed: str | None) -> GenerationResult:
        messages = self.prompts.human_feedback(self.card, parent_source, feedback, observed,
                                               instruction=self.cfg.instruction)
        best: Candidate | None = None
        stopped = "revised"
        self._say(f"asking {self._who()} for {self.cfg.samples} revision{'s' * (self.cfg.samples != 1)} "
                  f"of {parent_id[:12]}")
        try:
            for i, (text, ex) in enumerate(self._ask(messages, self.cfg.samples, "human", 0)):
                cand = self._checked(text, ex, 0, i, parent_id, messages)
                if cand is None:
                    continue
                if self.cfg.probe_steps:
                    self._train_probes([cand], self.cfg.probe_steps, "refine")
                else:
                    cand.score = _preference_score(cand.preference)
                    self.store.update_candidate(cand.row, score=cand.score)
                if best is None or (cand.score or -math.inf) > (best.score or -math.inf):
                    best = cand
        except _BudgetSpent:
            stopped = f"token budget {self.cfg.token_budget} spent"
        except LLMError as e:
            return self._finish(best, self.cfg.samples, f"interrupted: {e}", interrupted=True)
        return self._finish(best, self.cfg.samples, stopped if best else "no revision passed the checks")


class _ResumedProvider:
    """A resumed generation's provider: the run's own stored replies first, request for request in the
    order they were made (so every finished step is redone exactly, without a request), then the live
    provider once they run out."""

    def __init__(self, stored: ReplayProvider, live: LLMProvider):
        self.stored = stored
        self.live = live
        self.name = live.name
        self.model = getattr(live, "model", None)

    def complete(self, request: LLMRequest) -> LLMReply:
        return self.stored.complete(request) if self.stored.has(request) else self.live.complete(request)


#: Settings a resumed generation may change: how to reach the endpoint, not what to ask it.
RESUME_OVERRIDES = ("base_url", "api_key", "timeout_s", "max_retries")


def _resumable(store: RunStore, run_id: str, given: GenerationConfig) -> tuple[dict[str, Any], GenerationConfig]:
    """The stored settings of a generation run that can be resumed, and its config with the endpoint
    settings of ``given`` (where they differ from the defaults).

    :raises UserError: no such generation run, or it finished
    """
    run = store.get_run(run_id)
    if run is None or run.spec_name != "generate":
        known = ", ".join(r.id for r in store.list_runs("generate")[:3]) or "none"
        raise UserError(f"no generation run {run_id!r} in {store.path} (latest: {known})")
    if run.status == "done":
        raise UserError(f"generation run {run_id} finished; nothing to resume (start a new one)")
    stored = yaml.safe_load(run.spec_yaml) or {}
    if stored.get("purpose") == "refine":
        raise UserError(f"run {run_id} is a refine; run `rewardlab refine` again instead of resuming it")
    fields = {k: v for k, v in stored.items() if k in GenerationConfig.model_fields}
    defaults = GenerationConfig()
    given_values = {k: v for k, v in given.model_dump(mode="json").items() if k in GenerationConfig.model_fields}
    clashes = [k for k, v in given_values.items() if k not in RESUME_OVERRIDES and v != getattr(defaults, k)
               and v != fields.get(k)]
    if clashes:
        shown = ", ".join(f"{k} {given_values[k]!r} (the run has {fields.get(k)!r})" for k in clashes)
        raise UserError(f"generation run {run_id} continues with its own settings; these differ: {shown}; "
                        "only the endpoint's base URL, API key, timeout and retries may change")
    changed = {k: getattr(given, k) for k in RESUME_OVERRIDES if getattr(given, k) != getattr(defaults, k)}
    return stored, GenerationConfig(**{**fields, **changed})


#: Below this preference-check score the best program is reported as unlikely to teach the task.
WEAK_PREFERENCE = 0.0


def _best_warnings(best: Candidate | None, preference: float | None) -> list[str]:
    """What a user must know about the best program before training with it: a negative preference check
    (it prefers random or stopped trajectories to the expert's, so the best of a weak pool is still bad),
    a probe that never succeeded."""
    lines: list[str] = []
    if best is None:
        return lines
    if preference is not None and math.isfinite(preference) and preference < WEAK_PREFERENCE:
        lines.append(f"the best program's preference check is {preference:.2f} (below {WEAK_PREFERENCE:g}): it "
                         "ranks random or stopped trajectories above the expert's and is unlikely to teach the task; "
                         "try an LLM provider, more samples or rounds, or refine it with feedback")
    if best.probe is not None and best.probe.final("success") == 0.0:
        lines.append("the best program's last training (probe or final) ended with success 0; longer training may still "
                         "succeed, or the reward may not teach the task")
    return lines


def _preference_score(preference: dict[str, Any] | None) -> float:
    """A stored preference report's score (:attr:`rewardlab.checks.PreferenceReport.score`)."""
    if not preference:
        return -1.0
    return preference_score(preference.get("rho", math.nan), preference.get("rho_graded", math.nan))


def _interrupted_generation(store: RunStore, card: EnvCard, config: GenerationConfig) -> str | None:
    """The latest interrupted generation of ``card`` with the same settings (endpoint settings aside),
    which a resumed experiment continues instead of starting over."""
    wanted = {k: v for k, v in config.model_dump(mode="json").items() if k not in RESUME_OVERRIDES}
    for run in store.list_runs("generate"):
        if run.status != "interrupted":
            continue
        meta = yaml.safe_load(run.spec_yaml) or {}
        stored = {k: meta.get(k) for k in wanted}
        if meta.get("card_id") == card.id and meta.get("purpose", "generate") == "generate" and stored == wanted:
            return run.id
    return None


def _probe_summary(result: TrialResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    # the model's path and algorithm too: the review page renders the trained policy from them
    return result.model_dump(mode="json", include={"curve", "eval", "steps", "wall_s", "model_path", "algo"})


def refine(reward_id: str, feedback: str, config: GenerationConfig | None = None, observed: str | None = None,
           out: Path = Path("runs"), console: Any = None, provider: LLMProvider | None = None,
           backend: Backend | None = None, tags: Sequence[str] = ()) -> GenerationResult:
    """Revise a stored reward program from human feedback (Text2Reward's loop: previous code, observed
    behaviour and feedback go to the model); the new version's parent is ``reward_id``.

    The feedback, its tags and the observed behaviour are stored in the refine run's record; when the
    provider cannot be built (no endpoint or model configured) they are stored all the same, in a run
    ended ``failed`` with the reason, and the error says which run keeps them.

    :param reward_id: the program's id (or a unique prefix of at least 6 characters)
    :param feedback: what the user wants changed, in words
    :param config: provider and budgets; ``None``: the settings of the generation run that made the
        program (:func:`refine_settings`)
    :param observed: what the trained agent was seen doing, if described separately
    :param tags: short labels (:data:`FEEDBACK_TAGS` or others) put before the feedback in the prompt
    :raises UserError: empty feedback, an unknown program, a provider that cannot be built
    """
    clean_tags = [t.strip() for t in tags if t.strip()]
    if not feedback.strip() and not clean_tags:
        raise UserError("--feedback is empty: say what should change")
    text = (f"[{', '.join(clean_tags)}] " if clean_tags else "") + feedback.strip()
    with RunStore(Path(out) / DB_NAME) as store:
        record = store.find_program(reward_id)
        if not record.card_id:
            raise UserError(f"reward program {record.id[:12]} has no env card recorded; it cannot be refined")
        if config is None:
            config, _ = refine_settings(store, record.id)
        review = {"parent_id": record.id, "feedback": feedback.strip(), "tags": clean_tags, "observed": observed}
        try:
            generator = Generator(record.card_id, config, store, Path(out), console, provider, backend=backend,
                                  purpose="refine", record=review)
        except UserError as e:  # nothing was asked; keep what the reviewer wrote
            run_id = _keep_unsent_feedback(store, record.card_id, config, review, str(e))
            raise UserError(f"{e} (the feedback is kept in run {run_id})") from None
        return generator.refine(record.id, record.source, text, observed)


def _keep_unsent_feedback(store: RunStore, card_id: str, config: GenerationConfig, review: dict[str, Any],
                          reason: str) -> str:
    """Record a refine that could not start, with the reviewer's feedback, as a ``failed`` run."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    run_id = f"generate-{safe_name(card_id)}-{stamp}"
    record = {"card_id": card_id, "purpose": "refine", **config.model_dump(mode="json"), **review}
    store.create_run(run_id, "generate", yaml.safe_dump(record, sort_keys=False))
    store.set_run_status(run_id, "failed", one_line(reason))
    return run_id


def refine_settings(store: RunStore, program_id: str, **given: Any) -> tuple[GenerationConfig, str]:
    """The settings a refine of ``program_id`` uses, and where they came from in words.

    What is given (not ``None``) wins; the rest comes from the generation run that produced the program
    (its provider, model, endpoint, probes, seed), so a program an LLM wrote is revised by the same LLM,
    not silently by the offline baseline. A program a replay produced is revised by the offline baseline
    (a replay has no reply to a new request), and one with no generation run (a file, a reference) too
    unless a provider is given.

    :param given: :class:`~rewardlab.config.GenerationConfig` fields (``provider``, ``model``, ``base_url``,
        ``api_key``, ``probe_steps``, ...)
    :return: ``(config, note)``: the note names the provider and the run the settings came from
    """
    given = {k: v for k, v in given.items() if v is not None}
    inherited: dict[str, Any] = {}
    origin = "no generation run made this program"
    for cand in store.candidates(program_id=program_id):
        run = store.get_run(cand.run_id)
        if run is None:
            continue
        meta = yaml.safe_load(run.spec_yaml) or {}
        keep = ("provider", "model", "base_url", "timeout_s", "max_retries", "probe_steps", "probe_algo",
                "eval_episodes", "seed", "use_memory", "instruction", "temperature", "max_tokens")
        inherited = {k: meta[k] for k in keep if k in meta}
        origin = f"settings of run {run.id}"
        break
    if inherited.get("provider") == "replay":
        inherited = {k: v for k, v in inherited.items() if k not in ("provider", "model", "base_url")}
        origin += " (it replayed stored replies: revised by the offline baseline)"
    config = GenerationConfig(**{**inherited, **given, "samples": given.get("samples", 1), "rounds": 1})
    if "provider" in given:
        origin = "provider as given"
    if config.provider == "offline":
        who = "offline (the labelled no-LLM baseline)"
    else:
        # what the provider will use: the setting, else the environment's; never a variable's name as a value
        model = config.model or os.environ.get("REWARDLAB_MODEL") or "no model named"
        url = config.base_url or os.environ.get("OPENAI_BASE_URL") or "OpenAI's default endpoint"
        who = f"{config.provider} ({model} at {url})"
    return config, f"{who}; {origin}"


@dataclass(frozen=True)
class FeedbackRecord:
    """A reviewer's feedback on a program and the refine run it started.

    :param run_id: the refine run; its status ``failed`` with a reason when nothing could be asked
    :param children: ids of the revisions it produced that passed the checks, best first
    """

    run_id: str
    status: str
    reason: str | None
    created: str
    parent_id: str
    feedback: str
    tags: list[str]
    observed: str | None
    provider: str
    children: list[str]


def feedback_history(store: RunStore, program_id: str | None = None) -> list[FeedbackRecord]:
    """Stored reviewer feedback (every refine run), newest first; only that on ``program_id`` if given."""
    out = []
    for run in store.list_runs("generate"):
        meta = yaml.safe_load(run.spec_yaml) or {}
        if meta.get("purpose") != "refine" or not meta.get("parent_id"):
            continue
        if program_id is not None and meta["parent_id"] != program_id:
            continue
        checked = [c for c in store.candidates(run.id) if c.program_id and c.status in ("checked", "trained")]
        checked.sort(key=lambda c: -(c.score if c.score is not None else -math.inf))
        out.append(FeedbackRecord(run.id, run.status, run.reason, run.created, meta["parent_id"],
                                  str(meta.get("feedback") or ""), list(meta.get("tags") or []), meta.get("observed"),
                                  str(meta.get("provider", "")), [str(c.program_id) for c in checked]))
    return out


def generate(card_id: str | EnvCard | None, config: GenerationConfig | None = None, out: Path = Path("runs"),
             console: Any = None, provider: LLMProvider | None = None, resume: str | None = None,
             backend: Backend | None = None) -> GenerationResult:
    """Run a generation and return its result (best program id and score, counts, tokens, status).

    A failed request (after the provider's retries) or Ctrl-C ends the run ``interrupted``: finished
    candidates, probes and the best program so far are kept, and ``resume`` continues it exactly,
    answering the requests it made before from its own stored replies.

    :param card_id: the task (env card id, path or card); ``None`` with ``resume``
    :param config: how to generate (see :class:`~rewardlab.config.GenerationConfig`); with ``resume``
        only its endpoint settings (:data:`RESUME_OVERRIDES`) are used
    :param out: runs root: the SQLite store and the run directory
    :param console: a rich console for progress lines, or None
    :param provider: a ready provider (tests); by default one is made from the config
    :param resume: the id of an interrupted (or failed) generation run to continue
    :param backend: worker processes the probes train in side by side (:mod:`rewardlab.runs.backends`);
        ``None``: one after another in this process
    """
    with RunStore(Path(out) / DB_NAME) as store:
        return Generator(card_id, config or GenerationConfig(), store, Path(out), console, provider, resume,
                         backend).run()


def generate_program(source: GeneratedSource, card: EnvCard, out: Path, console: Any = None,
                     backend: Backend | None = None) -> tuple[RewardProgram, str]:
    """A generated reward source's program for one task: the best program of a generation run.

    :return: ``(program, generation run id)``
    :raises UserError: no candidate passed the checks
    """
    with RunStore(Path(out) / DB_NAME) as store:
        unfinished = _interrupted_generation(store, card, source.generate)
    if unfinished is not None and console is not None:
        console.print(f"continuing the interrupted generation {unfinished}", markup=False, highlight=False)
    result = generate(None if unfinished else card, source.generate, out=out, console=console, backend=backend,
                      resume=unfinished)
    if result.status == "interrupted":
        raise GenerationInterrupted(f"generation of {source.name} for {card.id} was interrupted ({result.stopped}); "
                                    "its work is kept and resuming the run continues it")
    if result.best_program_id is None:
        raise UserError(f"generation of {source.name} for {card.id} gave no program that passed the checks "
                        f"(run {result.run_id}); see `rewardlab lineage` or the run store")
    if console is not None:
        for line in result.warnings:
            console.print(f"warning: {source.name} for {card.id}: {line}", markup=False, highlight=False)
    with RunStore(Path(out) / DB_NAME) as store:
        record = store.get_program(result.best_program_id)
    assert record is not None
    return RewardProgram(record.source, origin=f"generated:{result.run_id}", parent=record.parent_id), result.run_id
