"""Correction memory: does showing stored (failing code, feedback, fixed code) pairs help an LLM fix
a rejected reward program?

    python -m benchmarks.correction_memory                        # no LLM: the teacher pool, exit 0
    python -m benchmarks.correction_memory --provider openai --model gpt-4o-mini [--base-url URL]
        [--cards metaworld/drawer-open-v3,...] [--max-cases 40] [--attempts 3] [--k 2] [--out DIR]
    python -m benchmarks.correction_memory --pool-cards mujoco/Hopper-v5,mujoco/Reacher-v5   # a quick look

Measuring "rounds to fix, with vs without memory" needs a real LLM: the figure is about how a model
reads the error prompt. With ``--provider openai`` (any OpenAI-compatible endpoint; base URL, key and
model from the flags or ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``REWARDLAB_MODEL``):

1. the teacher pool is seeded (:func:`rewardlab.text2reward.memory.seed_teacher_pairs`): every
   reference reward perturbed with realistic mistakes, the mutants the checks reject kept;
2. the broken programs are those same mutants. Each is *held out*: retrieval leaves out the teacher
   pairs of its own card (its fix is that card's reference), so the examples come from other tasks;
3. each broken program goes through the error-feedback prompt (``prompts/execution_error.j2``) twice,
   without memory examples and with the ``k`` best retrieved ones, for up to ``--attempts`` replies
   each (a failing reply's error is fed back, as the generation loop does). The pool stays fixed:
   fixes made here are not recorded, so both arms see the same memory;
4. reported per arm: first-fix success (the first reply passes the checks), fixed within the
   attempts, mean attempts over fixed programs, per rule, and the paired outcome per program.

Every exchange is stored in ``DIR/correction_memory.sqlite``; the report goes to
``DIR/correction_memory.json``. Mutants of hand-written references are easier than a model's own
mistakes (one error each, in otherwise good code), so read the numbers as an upper bound on what the
memory adds. Without a provider the script only reports the teacher pool per family and rule (and,
with ``--runs-store``, first-attempt statistics of real generation runs, split by memory on/off).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.runtime import limit_threads

limit_threads(torch_too=False)  # before numpy/torch load (rewardlab.runtime and the above import neither)

NOTE = ("Measuring rounds-to-fix with vs without the correction memory needs a real LLM (--provider openai "
        "with an OpenAI-compatible endpoint); without one this reports the teacher pool only.")


@dataclass
class Case:
    """One broken program: a teacher mutant of a card's reference reward."""

    card_id: str
    rule: str
    failing_code: str
    feedback: str


def _cases(store: Any, cards: set[str] | None, max_cases: int, seed: int) -> list[Case]:
    """Teacher mutants to fix, at most ``max_cases``, spread over rules and cards (round robin, seeded)."""
    rows = [r for r in store.corrections(origin="teacher") if cards is None or r.card_id in cards]
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_rule[r.rule].append(r)
    rng = random.Random(seed)
    for group in by_rule.values():
        rng.shuffle(group)
    picked: list[dict[str, Any]] = []
    while len(picked) < max_cases and any(by_rule.values()):
        for rule in sorted(by_rule):
            if by_rule[rule] and len(picked) < max_cases:
                picked.append(by_rule[rule].pop())
    return [Case(r.card_id, r.rule, r.failing_code, r.feedback) for r in picked]


def fix_attempts(provider: Any, model: str, case: Case, memory: Any | None, attempts: int, k: int,
                 temperature: float, seed: int, arm: str) -> dict[str, Any]:
    """Feed a broken program's error back until a reply passes the checks or ``attempts`` run out.

    :param memory: a :class:`~rewardlab.text2reward.memory.CorrectionMemory` (the "with" arm) or None
    :return: ``fixed_at`` (1-based attempt that passed, or None), ``errors`` (each failed reply's
        feedback), ``tokens``
    """
    from rewardlab.cards import load_card
    from rewardlab.checks import check_program
    from rewardlab.errors import RewardProgramError, UserError
    from rewardlab.llm.base import LLMRequest
    from rewardlab.text2reward.extract import extract_program
    from rewardlab.text2reward.memory import feedback_line
    from rewardlab.text2reward.prompts import PromptBuilder

    card = load_card(case.card_id)
    builder = PromptBuilder()
    code, error = case.failing_code, case.feedback
    out: dict[str, Any] = {"fixed_at": None, "errors": [], "tokens": 0, "examples": 0}
    for attempt in range(1, attempts + 1):
        corrections = memory.retrieve(card, error, k=k) if memory is not None else []
        out["examples"] = max(out["examples"], len(corrections))
        messages = builder.execution_error(card, code, error, corrections=corrections)
        request = LLMRequest(messages=messages, model=model, temperature=temperature, n=1, seed=seed + attempt,
                             metadata={"card_id": card.id, "purpose": "error", "benchmark": "correction_memory",
                                       "arm": arm, "attempt": attempt})
        reply = provider.complete(request)
        out["tokens"] += reply.tokens_in + reply.tokens_out
        text = reply.texts[0] if reply.texts else ""
        source = None
        try:
            source = extract_program(text)
            report = check_program(source, card)
            if report.ok:
                out["fixed_at"] = attempt
                return out
            error = feedback_line(report)
        except (RewardProgramError, UserError) as e:
            error = feedback_line(e)
        out["errors"].append(error)
        code = source or text
    return out


def _arm_summary(results: list[dict[str, Any]], cases: list[Case]) -> dict[str, Any]:
    fixed = [r["fixed_at"] for r in results if r["fixed_at"] is not None]
    per_rule: dict[str, dict[str, Any]] = {}
    for rule in sorted({c.rule for c in cases}):
        idx = [i for i, c in enumerate(cases) if c.rule == rule]
        per_rule[rule] = {"cases": len(idx),
                          "first_fix": sum(results[i]["fixed_at"] == 1 for i in idx) / len(idx),
                          "fixed": sum(results[i]["fixed_at"] is not None for i in idx) / len(idx)}
    return {
        "cases": len(results),
        "first_fix_rate": sum(f == 1 for f in fixed) / len(results) if results else None,
        "fixed_rate": len(fixed) / len(results) if results else None,
        "mean_attempts_to_fix": sum(fixed) / len(fixed) if fixed else None,
        "tokens": sum(r["tokens"] for r in results),
        "per_rule": per_rule,
    }


def compare(provider: Any, model: str, memory: Any, cases: list[Case], attempts: int = 3, k: int = 2,
            temperature: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Both arms on every case (without memory, then with); per-arm summaries and paired outcomes."""
    arms: dict[str, list[dict[str, Any]]] = {"without_memory": [], "with_memory": []}
    for i, case in enumerate(cases):
        for arm, mem in (("without_memory", None), ("with_memory", memory)):
            arms[arm].append(fix_attempts(provider, model, case, mem, attempts, k, temperature, seed + 100 * i, arm))
    paired = Counter()
    for without, with_ in zip(arms["without_memory"], arms["with_memory"]):
        a, b = without["fixed_at"] == 1, with_["fixed_at"] == 1
        paired["both" if a and b else "only_with_memory" if b else "only_without_memory" if a else "neither"] += 1
    return {
        "arms": {arm: _arm_summary(results, cases) for arm, results in arms.items()},
        "first_fix_paired": dict(paired),
        "cases": [{"card_id": c.card_id, "rule": c.rule, "feedback": c.feedback,
                   "without_memory": arms["without_memory"][i], "with_memory": arms["with_memory"][i]}
                  for i, c in enumerate(cases)],
    }


def _print_pool(by_family_rule: dict[str, dict[str, int]]) -> None:
    rules = sorted({r for fam in by_family_rule.values() for r in fam})
    print("teacher pool (pairs per family and rule):")
    widths = [len(r) + 2 for r in rules]
    print(f"  {'family':<10}" + "".join(f"{r:>{w}}" for r, w in zip(rules, widths)) + f"{'total':>8}")
    for fam, counts in by_family_rule.items():
        print(f"  {fam:<10}" + "".join(f"{counts.get(r, 0):>{w}}" for r, w in zip(rules, widths))
              + f"{sum(counts.values()):>8}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.correction_memory",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=("offline", "openai"), default="offline",
                        help="offline: report the teacher pool only; openai: measure fixes with and without memory")
    parser.add_argument("--model", default=None, help="model name (else $REWARDLAB_MODEL)")
    parser.add_argument("--base-url", default=None, help="endpoint (else $OPENAI_BASE_URL; unset: OpenAI)")
    parser.add_argument("--api-key", default=None, help="key (else $OPENAI_API_KEY)")
    parser.add_argument("--cards", default=None, help="comma-separated card ids whose mutants are fixed (default: all)")
    parser.add_argument("--pool-cards", default=None,
                        help="comma-separated card ids the teacher pool is seeded from (default: every card)")
    parser.add_argument("--max-cases", type=int, default=40, help="broken programs to fix (spread over rules)")
    parser.add_argument("--attempts", type=int, default=3, help="error-feedback replies per program and arm")
    parser.add_argument("--k", type=int, default=2, help="memory examples per prompt")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="cards seeded in parallel")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for correction_memory.sqlite (pool, exchanges) and .json (default: a temp folder)")
    parser.add_argument("--runs-store", type=Path, default=None,
                        help="also report first-attempt statistics of the generation runs in this run store")
    args = parser.parse_args(argv)

    from rewardlab.store import RunStore
    from rewardlab.text2reward.memory import CorrectionMemory, first_attempt_stats, seed_teacher_pairs

    print(NOTE)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="rewardlab-correction-memory-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    cards = args.cards.split(",") if args.cards else None
    result: dict[str, Any] = {"note": NOTE, "provider": args.provider}
    with RunStore(out_dir / "correction_memory.sqlite") as store:
        start = time.perf_counter()
        pool_cards = args.pool_cards.split(",") if args.pool_cards else None
        seeded = seed_teacher_pairs(store, pool_cards, workers=args.workers)
        result["seed_seconds"] = round(time.perf_counter() - start, 1)
        result["teacher_pool"] = {"pairs": len(seeded.pairs), "by_family_rule": seeded.by_family_rule(),
                                  "by_rule": seeded.by_rule(),
                                  "skipped": dict(Counter(f"{s['kind']}: {s['reason']}" for s in seeded.skipped))}
        _print_pool(seeded.by_family_rule())
        print(f"  {len(seeded.pairs)} pairs from {len({p['card_id'] for p in seeded.pairs})} cards in "
              f"{result['seed_seconds']} s; not stored: " +
              "; ".join(f"{k} x{n}" for k, n in result["teacher_pool"]["skipped"].items()))

        if args.runs_store is not None:
            with RunStore(args.runs_store) as runs:
                result["generation_runs"] = {"with_memory": first_attempt_stats(runs, memory=True).to_dict(),
                                             "without_memory": first_attempt_stats(runs, memory=False).to_dict()}
            for arm, stats in result["generation_runs"].items():
                print(f"generation runs {arm}: {stats['candidates']} candidates, first-attempt failure rate "
                      f"{stats['first_attempt_failure_rate']}, fixed {stats['fixed_fraction']}, "
                      f"mean attempts to fix {stats['mean_attempts_to_fix']}")

        if args.provider == "openai":
            from rewardlab.llm.log import ExchangeLog
            from rewardlab.text2reward.providers import make_provider

            run_id = f"correction-memory-{time.strftime('%Y%m%d-%H%M%S')}"
            store.create_run(run_id, "correction-memory-benchmark", json.dumps(vars(args), default=str))
            provider = make_provider("openai", model=args.model, base_url=args.base_url, api_key=args.api_key,
                                     log=ExchangeLog(store, run_id))
            cases = _cases(store, set(cards) if cards else None, args.max_cases, args.seed)
            print(f"fixing {len(cases)} broken programs with {provider.model} at {provider.base_url}, "
                  f"up to {args.attempts} replies each, without and with {args.k} memory examples ...")
            result["model"] = provider.model
            result["comparison"] = compare(provider, provider.model, CorrectionMemory(store), cases,
                                           args.attempts, args.k, args.temperature, args.seed)
            store.set_run_status(run_id, "done")
            for arm, s in result["comparison"]["arms"].items():
                print(f"  {arm:<15} first-fix {s['first_fix_rate']}  fixed {s['fixed_rate']}  "
                      f"mean attempts {s['mean_attempts_to_fix']}  tokens {s['tokens']}")
            print(f"  paired first fixes: {result['comparison']['first_fix_paired']}")
    (out_dir / "correction_memory.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {out_dir / 'correction_memory.json'}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
