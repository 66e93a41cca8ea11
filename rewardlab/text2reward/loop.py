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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from rewardlab.cards import EnvCard, load_card
from rewardlab.checks import check_program, trajectory_preference_check
from rewardlab.config import GenerationConfig
from rewardlab.errors import RewardProgramError, UserError, one_line
from rewardlab.llm.base import LLMProvider, LLMReply, LLMRequest
from rewardlab.llm.log import ExchangeLog
from rewardlab.paths import safe_name
from rewardlab.program import RewardProgram
from rewardlab.rollouts import Trajectory, collect_trajectories
from rewardlab.sims.base import verify_card
from rewardlab.sources import GeneratedSource
from rewardlab.store import DB_NAME, RunStore
from rewardlab.text2reward.extract import extract_program
from rewardlab.text2reward.prompts import PromptBuilder, TrainingStats
from rewardlab.text2reward.providers import make_provider
from rewardlab.text2reward.retrieval import Example, retrieve_examples
from rewardlab.types import TrialResult

__all__ = ["DB_NAME", "GenerationConfig", "GenerationResult", "Generator", "generate", "generate_program", "refine"]

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d


class _BudgetSpent(Exception):
    """The token budget ran out: finish with what there is."""


class Generator:
    """Runs one generation (see the module docstring); :func:`generate` is the usual entry."""

    def __init__(self, card: EnvCard | str, config: GenerationConfig, store: RunStore, out: Path,
                 console: Any = None, provider: LLMProvider | None = None):
        self.cfg = config
        self.card: EnvCard = card if isinstance(card, EnvCard) else load_card(card)
        verify_card(self.card)
        self.store = store
        self.console = console
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        self.run_id = f"generate-{safe_name(self.card.id)}-{stamp}"
        self.run_dir = Path(out) / self.run_id
        self.algo = config.probe_algo or ("sac" if self.card.simulator == "metaworld" else "ppo")
        self._check_probe_settings()
        # the provider is built (and its settings checked) before the run is recorded: a bad setting
        # leaves no run behind
        self.log = ExchangeLog(store, self.run_id)
        self.provider = provider or make_provider(
            config.provider, model=config.model, base_url=config.base_url, api_key=config.api_key, log=self.log,
            timeout=config.timeout_s, max_retries=config.max_retries)
        stored = {"card_id": self.card.id, **config.model_dump(mode="json")}  # the API key is excluded
        store.create_run(self.run_id, "generate", yaml.safe_dump(stored, sort_keys=False))
        self.prompts = PromptBuilder()
        self.examples: list[Example] = retrieve_examples(self.card, k=config.few_shot) if config.few_shot else []
        self._trajectories: list[Trajectory] | None = None
        self.tokens = 0
        self.rejected = 0
        self.first_failures = 0
        self.fixes: list[int] = []
        self.memory = None
        if config.use_memory:
            from rewardlab.text2reward.memory import CorrectionMemory

            self.memory = CorrectionMemory(store)

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
                          "instruction": self.cfg.instruction},
            )
            reply: LLMReply = self.provider.complete(request)
            self.tokens += reply.tokens_in + reply.tokens_out
            out += [(t, reply.exchange_id) for t in reply.texts]
            attempt += 1
            if not reply.texts or attempt > n:  # a server that keeps returning nothing: stop asking
                break
        return out[:n]

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
                prefs = trajectory_preference_check(program, self.card, self._preference_trajectories())
                checks = {"trial": {"mode": report.mode, "total": report.total, "components": report.components},
                          "preference": prefs.to_dict()}
                row = self.store.add_candidate(self.run_id, pid, round, sample, attempt, "checked", checks=checks)
                self._say(f"  r{round} s{sample}: checked (attempt {attempt}), preference accuracy "
                          f"{prefs.accuracy:.2f}{'; ' + '; '.join(prefs.warnings) if prefs.warnings else ''}")
                return Candidate(row, pid, source, round, sample, preference=prefs.to_dict())
            message = str(error)
            self.store.add_candidate(self.run_id, pid, round, sample, attempt, "rejected", error=message)
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

    def _preference_trajectories(self) -> list[Trajectory]:
        if self._trajectories is None:
            self._trajectories = collect_trajectories(self.card, seed=self.cfg.seed)
        return self._trajectories

    def _probe(self, cand: Candidate, steps: int, tag: str) -> TrialResult:
        from rewardlab.training import train

        program = RewardProgram(cand.source, origin=f"candidate:{cand.program_id[:12]}")
        return train(self.card, program, self.algo, steps, self.cfg.seed, self.run_dir / tag,
                     eval_episodes=self.cfg.eval_episodes, eval_every=max(steps // 4, 1), check=False)

    def _train_probe(self, cand: Candidate, steps: int, tag: str) -> None:
        """Train a candidate for ``steps``; record its probe and score."""
        self._say(f"  r{cand.round} s{cand.sample}: training probe, {steps} {self.algo} steps ...")
        cand.probe = self._probe(cand, steps, tag)
        cand.score = self._score(cand.probe)
        self.store.update_candidate(cand.row, status="trained", probe=_probe_summary(cand.probe), score=cand.score)

    @staticmethod
    def _score(result: TrialResult) -> float:
        """The probe's success rate, else its mean env return."""
        success = result.final("success")
        return success if success is not None else float(result.final("env_return") or 0.0)

    @contextmanager
    def _ends_the_run(self) -> Iterator[None]:
        """A generation that stops on an error or Ctrl-C is recorded ``failed`` or ``interrupted`` with
        the reason, never left ``running``."""
        try:
            yield
        except KeyboardInterrupt:
            self.store.set_run_status(self.run_id, "interrupted", "interrupted (Ctrl-C)")
            raise
        except BaseException as e:
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
                self._say(f"round {round + 1}/{cfg.rounds}: asking {self.provider.name} for {cfg.samples} "
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
                checked.sort(key=lambda c: -(c.preference or {}).get("accuracy", 0.0) if not math.isnan(
                    (c.preference or {}).get("accuracy", 0.0)) else 0.0)
                for cand in checked:
                    if cfg.probe_steps:
                        self._train_probe(cand, cfg.probe_steps, f"r{round}-s{cand.sample}")
                    else:
                        accuracy = (cand.preference or {}).get("accuracy", float("nan"))
                        cand.score = 0.0 if math.isnan(accuracy) else accuracy
                        self.store.update_candidate(cand.row, score=cand.score)
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
        except _BudgetSpent:
            stopped = f"token budget {cfg.token_budget} spent"
        if best is not None and cfg.final_steps:
            final = self._probe(best, cfg.final_steps, "final")
            best.score = self._score(final)
            self.store.update_candidate(best.row, probe=_probe_summary(final), score=best.score)
        return self._finish(best, n_candidates, stopped)

    def _finish(self, best: Candidate | None, n_candidates: int, stopped: str) -> GenerationResult:
        """Save the best program and the summary; mark the run done (or failed: nothing passed)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if best is not None:
            (self.run_dir / "best_reward.py").write_text(best.source)
        result = GenerationResult(self.run_id, self.run_dir, best.program_id if best else None,
                                  best.score if best else None, n_candidates, self.rejected, self.first_failures,
                                  self.fixes, self.tokens, stopped)
        (self.run_dir / "generation.json").write_text(json.dumps(result.to_dict(), indent=1))
        self.store.set_run_status(self.run_id, "done" if best is not None else "failed")
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
        try:
            for i, (text, ex) in enumerate(self._ask(messages, self.cfg.samples, "human", 0)):
                cand = self._checked(text, ex, 0, i, parent_id, messages)
                if cand is None:
                    continue
                if self.cfg.probe_steps:
                    self._train_probe(cand, self.cfg.probe_steps, f"refine-s{i}")
                if best is None or (cand.score or -math.inf) > (best.score or -math.inf):
                    best = cand
        except _BudgetSpent:
            stopped = f"token budget {self.cfg.token_budget} spent"
        return self._finish(best, self.cfg.samples, stopped if best else "no revision passed the checks")


def _probe_summary(result: TrialResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return result.model_dump(mode="json", include={"curve", "eval", "steps", "wall_s"})


def refine(reward_id: str, feedback: str, config: GenerationConfig | None = None, observed: str | None = None,
           out: Path = Path("runs"), console: Any = None, provider: LLMProvider | None = None) -> GenerationResult:
    """Revise a stored reward program from human feedback; the new version's parent is ``reward_id``.

    :param reward_id: the program's id (or a unique prefix of at least 6 characters)
    :param feedback: what the user wants changed, in words
    :param config: provider and budgets (its ``card_id`` is replaced by the program's)
    :param observed: what the trained agent was seen doing, if described separately
    """
    if not feedback.strip():
        raise UserError("--feedback is empty: say what should change")
    with RunStore(Path(out) / DB_NAME) as store:
        record = store.find_program(reward_id)
        if not record.card_id:
            raise UserError(f"reward program {record.id[:12]} has no env card recorded; it cannot be refined")
        return Generator(record.card_id, config or GenerationConfig(), store, Path(out), console,
                         provider).refine(record.id, record.source, feedback, observed)


def generate(card_id: str | EnvCard, config: GenerationConfig | None = None, out: Path = Path("runs"),
             console: Any = None, provider: LLMProvider | None = None) -> GenerationResult:
    """Run a generation and return its result (best program id and score, counts, tokens).

    :param card_id: the task (env card id, path or card)
    :param config: how to generate (see :class:`~rewardlab.config.GenerationConfig`)
    :param out: runs root: the SQLite store and the run directory
    :param console: a rich console for progress lines, or None
    :param provider: a ready provider (tests); by default one is made from the config
    """
    with RunStore(Path(out) / DB_NAME) as store:
        return Generator(card_id, config or GenerationConfig(), store, Path(out), console, provider).run()


def generate_program(source: GeneratedSource, card: EnvCard, out: Path, console: Any = None) -> tuple[RewardProgram, str]:
    """A generated reward source's program for one task: the best program of a generation run.

    :return: ``(program, generation run id)``
    :raises UserError: no candidate passed the checks
    """
    result = generate(card, source.generate, out=out, console=console)
    if result.best_program_id is None:
        raise UserError(f"generation of {source.name} for {card.id} gave no program that passed the checks "
                        f"(run {result.run_id}); see `rewardlab lineage` or the run store")
    with RunStore(Path(out) / DB_NAME) as store:
        record = store.get_program(result.best_program_id)
    assert record is not None
    return RewardProgram(record.source, origin=f"generated:{result.run_id}", parent=record.parent_id), result.run_id
