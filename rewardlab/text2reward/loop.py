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
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from rewardlab.cards import EnvCard, load_card
from rewardlab.checks import collect_trajectories, check_program, trajectory_preference_check
from rewardlab.errors import RewardProgramError, UserError
from rewardlab.llm import make_provider
from rewardlab.llm.base import LLMError, LLMProvider, LLMReply, LLMRequest
from rewardlab.llm.log import ExchangeLog
from rewardlab.program import RewardProgram
from rewardlab.runs.store import DB_NAME, RunStore
from rewardlab.text2reward.extract import extract_program
from rewardlab.text2reward.prompts import PromptBuilder, TrainingStats
from rewardlab.text2reward.retrieval import Example, retrieve_examples

@dataclass
class GenerationConfig:
    """What to generate and within which budgets.

    :param card_id: the task (env card id)
    :param instruction: the task in words (default: the card's instruction)
    :param provider: ``openai`` (any OpenAI-compatible endpoint), ``replay`` or ``offline``
    :param model: model name (``openai``: else ``$REWARDLAB_MODEL``)
    :param base_url: endpoint (else ``$OPENAI_BASE_URL``; unset means OpenAI)
    :param api_key: key (else ``$OPENAI_API_KEY``)
    :param samples: programs asked for per round (Eureka's K)
    :param rounds: rounds of reflection (Eureka's iterations)
    :param few_shot: retrieved reference rewards in the prompt (0: zero-shot); leave-one-out
    :param temperature: sampling temperature
    :param max_tokens: cap on each reply's length
    :param token_budget: stop asking once the run has used this many tokens (prompt + reply)
    :param fix_attempts: execution-error feedback retries per candidate
    :param probe_steps: training steps of each candidate's probe (0: rank by the checks alone)
    :param probe_algo: algorithm of the probes (default: sac for MetaWorld, ppo otherwise)
    :param final_steps: train the best program this long at the end (0: the probe is the last word)
    :param eval_episodes: deterministic evaluation episodes of probes and the final training
    :param success_target: stop early once a candidate's success rate reaches it
    :param use_memory: feed stored (failing code, feedback, fixed code) examples into error prompts
    :param seed: seed of sampling requests, probes and evaluations
    """

    card_id: str
    instruction: str | None = None
    provider: str = "offline"
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    samples: int = 4
    rounds: int = 3
    few_shot: int = 0
    temperature: float = 0.7
    max_tokens: int = 2048
    token_budget: int | None = None
    fix_attempts: int = 2
    probe_steps: int = 20_000
    probe_algo: str | None = None
    final_steps: int = 0
    eval_episodes: int = 3
    success_target: float | None = None
    use_memory: bool = True
    seed: int = 0
    timeout_s: float = 120.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        for name in ("samples", "rounds"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("few_shot", "fix_attempts", "probe_steps", "final_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")


@dataclass
class Candidate:
    """One checked program of a generation run."""

    row: int
    program_id: str
    source: str
    round: int
    sample: int
    preference: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
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

    def __init__(self, config: GenerationConfig, store: RunStore, out: Path, console: Any = None,
                 provider: LLMProvider | None = None):
        self.cfg = config
        self.card: EnvCard = load_card(config.card_id)
        self.store = store
        self.console = console
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        self.run_id = f"generate-{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.card.id)}-{stamp}"
        self.run_dir = Path(out) / self.run_id
        store.create_run(self.run_id, "generate", yaml.safe_dump(asdict(config), sort_keys=False))
        self.log = ExchangeLog(store, self.run_id)
        self.provider = provider or make_provider(
            config.provider, model=config.model, base_url=config.base_url, api_key=config.api_key, log=self.log,
            timeout=config.timeout_s, max_retries=config.max_retries)
        self.prompts = PromptBuilder()
        self.examples: list[Example] = retrieve_examples(self.card, k=config.few_shot) if config.few_shot else []
        self.algo = config.probe_algo or ("sac" if self.card.simulator == "metaworld" else "ppo")
        self._trajectories: list[Any] | None = None
        self.tokens = 0
        self.rejected = 0
        self.first_failures = 0
        self.fixes: list[int] = []
        self.memory = None
        if config.use_memory:
            from rewardlab.text2reward.memory import CorrectionMemory

            self.memory = CorrectionMemory(store)

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
        for attempt in range(self.cfg.fix_attempts + 1):
            source, error = None, None
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
            if error is None:
                if attempt > 0:
                    self.fixes.append(attempt)
                    if self.memory is not None:
                        self.memory.record(self.card, previous_code, self._last_error, source, origin="generation")
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
            previous_pid, previous_code, self._last_error = pid, code, message
            text, exchange = self._ask(messages, 1, "error", round)[0]
        self.rejected += 1
        return None

    def _preference_trajectories(self) -> list[Any]:
        if self._trajectories is None:
            self._trajectories = collect_trajectories(self.card, seed=self.cfg.seed)
        return self._trajectories

    def _probe(self, cand: Candidate, steps: int, tag: str) -> dict[str, Any]:
        from rewardlab.training import train

        run_dir = self.run_dir / tag
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "candidate.py"
        path.write_text(cand.source)
        result = train(self.card.id, str(path), self.algo, steps, self.cfg.seed, run_dir,
                       eval_episodes=self.cfg.eval_episodes, eval_every=max(steps // 4, 1), check=False).to_dict()
        return result

    def _train_probe(self, cand: Candidate, steps: int, tag: str) -> None:
        """Train a candidate for ``steps``; record its probe and score."""
        cand.probe = self._probe(cand, steps, tag)
        cand.score = self._score(cand.probe)
        self.store.update_candidate(cand.row, status="trained", probe=_probe_summary(cand.probe), score=cand.score)

    @staticmethod
    def _score(result: dict[str, Any]) -> float:
        ev = result["eval"]
        if ev.get("success") and ev["success"][0] is not None:
            return float(sum(map(float, ev["success"])) / len(ev["success"]))
        return float(sum(ev["env_return"]) / len(ev["env_return"]))

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> GenerationResult:
        cfg = self.cfg
        best: Candidate | None = None
        stopped = "all rounds done"
        messages = self.prompts.initial(self.card, cfg.instruction, self.examples)
        purpose = "initial"
        n_candidates = 0
        try:
            for round in range(cfg.rounds):
                self._say(f"round {round + 1}/{cfg.rounds}: asking {self.provider.name} for {cfg.samples} programs")
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
                    stats = _training_stats(round_best.probe, self.algo)
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


def _probe_summary(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"curve": result["curve"], "eval": result["eval"], "steps": result["steps"], "wall_s": result["wall_s"]}


def _training_stats(result: dict[str, Any], algo: str) -> TrainingStats:
    names = sorted({k for p in result["curve"] for k in (p.get("components") or {})})
    components = {k: [float((p.get("components") or {}).get(k, float("nan"))) for p in result["curve"]] for k in names}
    return TrainingStats.from_trial(result, components=components, algo=algo)


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
        cfg = config or GenerationConfig(card_id=record.card_id)
        cfg = GenerationConfig(**{**asdict(cfg), "card_id": record.card_id})
        return Generator(cfg, store, Path(out), console, provider).refine(record.id, record.source, feedback, observed)


def generate(config: GenerationConfig, out: Path = Path("runs"), console: Any = None,
             provider: LLMProvider | None = None) -> GenerationResult:
    """Run a generation and return its result (best program id and score, counts, tokens).

    :param config: what to generate (see :class:`GenerationConfig`)
    :param out: runs root: the SQLite store and the run directory
    :param console: a rich console for progress lines, or None
    :param provider: a ready provider (tests); by default one is made from the config
    """
    with RunStore(Path(out) / DB_NAME) as store:
        return Generator(config, store, Path(out), console, provider).run()
