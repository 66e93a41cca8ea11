"""Correction memory (rewardlab/text2reward/memory.py): verified recording, retrieval order, teacher
pairs from perturbed reference rewards, first-attempt statistics, and the prompts that show them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rewardlab.cards import load_card
from rewardlab.checks import check_program
from rewardlab.errors import RewardProgramError
from rewardlab.store import RunStore
from rewardlab.text2reward.memory import (
    CorrectionMemory,
    error_rule,
    first_attempt_stats,
    mutants,
    seed_teacher_pairs,
    strip_module_docstring,
)
from rewardlab.text2reward.prompts import PromptBuilder
from rewardlab.trial import TrialReport

PENDULUM = "mujoco/InvertedPendulum-v5"
GOOD = '''import numpy as np


def compute_dense_reward(self, action):
    alive = np.where(np.abs(self.pole.angle) <= 0.2, 1.0, 0.0)
    return alive, {"alive": alive}
'''
BROKEN = GOOD.replace("import numpy as np\n", "import numpy as np\nimport os\n")
FEEDBACK = "reward program rejected [import] (line 2): import of 'os' is not allowed (allowed: numpy, math)"

SEED_CARDS = ("metaworld/drawer-open-v3", "metaworld/reach-v3", "mujoco/Hopper-v5")
SEED_KINDS = ("missing-attribute", "norm-without-axis", "import-torch", "tuple-of-three", "unguarded-division",
              "dunder", "np-random")


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    with RunStore(tmp_path / "rewardlab.sqlite") as s:
        yield s


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, object]:
    """Teacher pairs of two MetaWorld cards and one MuJoCo card (a few seconds of sandbox trials)."""
    with RunStore(tmp_path_factory.mktemp("memory") / "rewardlab.sqlite") as s:
        yield s, seed_teacher_pairs(s, SEED_CARDS, kinds=SEED_KINDS, workers=2)


# -- recording ---------------------------------------------------------------------------------------
def test_record_refuses_an_unverified_fix(store: RunStore) -> None:
    memory = CorrectionMemory(store)
    card = load_card(PENDULUM)
    still_broken = GOOD.replace("alive, {", "alive, alive, {")  # a tuple of three: the checks reject it
    assert memory.record(card, BROKEN, FEEDBACK, still_broken) is None
    assert memory.record(card, BROKEN, FEEDBACK, BROKEN.replace("import os", "import sys")) is None
    assert memory.record(card, BROKEN, FEEDBACK, BROKEN) is None  # no change is no fix
    assert store.corrections() == []

    pair = memory.record(card, BROKEN, FEEDBACK, GOOD)
    assert pair is not None
    assert memory.record(card, BROKEN, FEEDBACK, GOOD) == pair  # the same pair is stored once
    [row] = store.corrections()
    assert (row.family, row.card_id, row.rule, row.origin) == ("mujoco", PENDULUM, "import", "generation")
    assert row.feedback == FEEDBACK and row.fixed_code == GOOD


def test_record_takes_feedback_as_error_report_or_text(store: RunStore) -> None:
    memory = CorrectionMemory(store)
    card = load_card(PENDULUM)
    report = check_program(BROKEN, card)
    assert not report.ok and report.rule == "import"
    memory.record(card, BROKEN, report, GOOD)
    memory.record(card, BROKEN + "\n", RewardProgramError("import", "import of 'os' is not allowed", 2), GOOD)
    rows = store.corrections()
    assert [r.rule for r in rows] == ["import", "import"]
    assert all(r.feedback.startswith("reward program rejected [import] (line 2):") for r in rows)
    with pytest.raises(ValueError, match="origin"):
        memory.record(card, BROKEN, FEEDBACK, GOOD, origin="oracle")


def test_error_rule_reads_errors_reports_and_text() -> None:
    assert error_rule(RewardProgramError("dunder", "x")) == "dunder"
    assert error_rule(TrialReport(False, rule="non-finite", message="inf")) == "non-finite"
    assert error_rule(TrialReport(True)) is None
    assert error_rule("reward program rejected [output]: returned a tuple of 3") == "output"
    assert error_rule("ZeroDivisionError: division by zero") is None
    assert error_rule(None) is None


# -- retrieval ---------------------------------------------------------------------------------------
def _add(store: RunStore, name: str, family: str, rule: str, origin: str, card_id: str | None = None,
         feedback: str | None = None) -> None:
    store.add_correction(family, card_id or f"{family}/{name}", rule, f"# failing {name}\n", feedback or f"[{rule}] {name}",
                         f"# fixed {name}\n", origin)


def _names(examples: list[dict[str, str]]) -> list[str]:
    return [e["failing_code"].split()[-1] for e in examples]


def test_retrieval_ranks_family_then_rule_then_origin_then_recency(store: RunStore) -> None:
    card = load_card("metaworld/drawer-open-v3")
    _add(store, "other-family-same-rule", "mujoco", "import", "teacher")
    _add(store, "same-family-other-rule", "metaworld", "runtime", "generation")
    _add(store, "teacher", "metaworld", "import", "teacher", card_id="metaworld/reach-v3")
    _add(store, "old-generation", "metaworld", "import", "generation", card_id="metaworld/push-v3")
    _add(store, "own-reference", "metaworld", "import", "teacher", card_id=card.id)  # leave-one-out
    _add(store, "unrelated", "mujoco", "output", "generation")  # neither family nor rule
    _add(store, "new-generation", "metaworld", "import", "generation", card_id="metaworld/push-v3")
    memory = CorrectionMemory(store)
    error = RewardProgramError("import", "import of 'torch' is not allowed", 2)

    assert _names(memory.retrieve(card, error, k=10)) == [
        "new-generation", "old-generation", "teacher", "same-family-other-rule", "other-family-same-rule"]
    assert _names(memory.retrieve(card, error)) == ["new-generation", "old-generation"]  # k=2
    assert _names(memory.retrieve(card, str(error), k=3)) == ["new-generation", "old-generation", "teacher"]
    assert _names(memory.retrieve(card, TrialReport(False, rule="import"), k=1)) == ["new-generation"]
    assert "own-reference" in _names(memory.retrieve(card, error, k=10, leave_one_out=False))
    # another family: its own pairs, same rule first; pairs sharing neither family nor rule never come
    hopper = load_card("mujoco/Hopper-v5")
    assert _names(memory.retrieve(hopper, "[output] returned None", k=10)) == ["unrelated", "other-family-same-rule"]
    assert _names(memory.retrieve(hopper, "[import] no", k=10)) == [
        "other-family-same-rule", "unrelated", "new-generation", "old-generation", "own-reference", "teacher"]
    assert memory.retrieve(card, error, k=0) == []


def test_retrieval_prefers_generation_over_teacher_and_close_messages(store: RunStore) -> None:
    card = load_card("metaworld/push-v3")
    _add(store, "teacher-random", "metaworld", "runtime", "teacher", card_id="metaworld/reach-v3",
         feedback="reward program rejected [runtime] (line 9): AttributeError: np.random is not offered")
    _add(store, "teacher-attribute", "metaworld", "runtime", "teacher", card_id="metaworld/door-close-v3",
         feedback="reward program rejected [runtime] (line 5): AttributeError: 'RobotView' object has no attribute 'ee_pos'")
    memory = CorrectionMemory(store)
    error = RewardProgramError("runtime", "AttributeError: 'RobotView' object has no attribute 'hand_position'", 4)
    assert _names(memory.retrieve(card, error)) == ["teacher-attribute", "teacher-random"]
    _add(store, "generation", "metaworld", "runtime", "generation", card_id="metaworld/push-v3")
    assert _names(memory.retrieve(card, error)) == ["generation", "teacher-attribute"]


def test_retrieved_code_is_cut_to_a_few_dozen_lines(store: RunStore) -> None:
    long_code = "\n".join(f"x{i} = {i}" for i in range(200))
    store.add_correction("metaworld", "metaworld/reach-v3", "runtime", long_code, "[runtime] x", long_code, "generation")
    [example] = CorrectionMemory(store, max_lines=60).retrieve(load_card("metaworld/push-v3"), "[runtime] y")
    assert set(example) == {"failing_code", "feedback", "fixed_code"}
    lines = example["fixed_code"].split("\n")
    assert len(lines) == 61 and lines[-1] == "# ... (140 more lines)"


# -- teacher-guided pairs ----------------------------------------------------------------------------
def test_mutants_make_realistic_mistakes_on_the_reference() -> None:
    card = load_card("metaworld/drawer-open-v3")
    reference = strip_module_docstring(card.reference_reward_path().read_text())
    assert reference.startswith("import numpy as np") and "Hand-written" not in reference
    made = mutants(reference, card)
    assert "self.robot.ee_pos\n" in made["missing-attribute"][0]
    assert "np.linalg.norm(err)" in made["norm-without-axis"][0]
    assert made["import-torch"][0].startswith("import numpy as np\nimport torch\n")
    assert ', parts, {}' in made["tuple-of-three"][0]
    assert "1.0 / np.clip(" in made["unguarded-division"][0]
    assert 'np.save("reward_debug.npy"' in made["np-save"][0]
    assert "self.__dict__" in made["dunder"][0]
    assert "return" not in made["missing-return"][0]
    with pytest.raises(ValueError, match="unknown mutation"):
        mutants(reference, card, ["typo"])


def test_seed_teacher_pairs_stores_only_rejected_mutants_with_passing_fixes(seeded) -> None:
    store, report = seeded
    rows = store.corrections(origin="teacher")
    assert len(rows) == len(report.pairs) >= 15
    assert {r.card_id for r in rows} == set(SEED_CARDS)
    assert {r.family for r in rows} == {"metaworld", "mujoco"}
    assert {"runtime", "import", "output", "non-finite", "dunder"} <= {r.rule for r in rows}
    for card_id in SEED_CARDS:
        card = load_card(card_id)
        own = [r for r in rows if r.card_id == card_id]
        assert len(own) >= 5
        [fixed] = {r.fixed_code for r in own}  # the reference, without its docstring
        assert fixed == strip_module_docstring(card.reference_reward_path().read_text())
        assert check_program(fixed, card).ok
        for r in own:
            result = check_program(r.failing_code, card)
            assert not result.ok and result.rule == r.rule, (card_id, r.feedback)
            assert r.feedback.startswith(f"reward program rejected [{r.rule}]")
    # a mutation the checks accept (per-env code runs in compat mode) is reported, not stored
    kinds = {(p["card_id"], p["kind"]) for p in report.pairs}
    for skip in report.skipped:
        assert (skip["card_id"], skip["kind"]) not in kinds
        assert skip["reason"].startswith(("accepted", "not applicable"))
    assert sum(report.by_rule().values()) == len(report.pairs)
    assert CorrectionMemory(store).counts()["teacher"] == report.by_family_rule()
    # seeding again stores nothing new
    again = seed_teacher_pairs(store, SEED_CARDS[:1], kinds=["import-torch", "dunder"])
    assert [p["new"] for p in again.pairs] == [False, False]


def test_teacher_pairs_of_other_tasks_are_retrieved_for_a_held_out_card(seeded) -> None:
    store, _ = seeded
    memory = CorrectionMemory(store)
    card = load_card("metaworld/drawer-open-v3")
    error = RewardProgramError("unknown-field", "env card metaworld/drawer-open-v3 has no self.obj1.pos (did you mean "
                               "self.obj1.position?); its fields are self.robot.ee_position, self.obj1.position", 6)
    examples = memory.retrieve(card, error)
    assert len(examples) == 2
    reach = strip_module_docstring(load_card("metaworld/reach-v3").reference_reward_path().read_text())
    assert examples[0]["fixed_code"] == reach  # same family, same rule; never drawer-open's own reference
    assert "[unknown-field]" in examples[0]["feedback"] and "did you mean" in examples[0]["feedback"]


# -- statistics of generation runs -------------------------------------------------------------------
def test_first_attempt_stats_from_candidates(store: RunStore) -> None:
    store.create_run("gen-memory", "generate", yaml.safe_dump({"card_id": PENDULUM, "use_memory": True}))
    store.create_run("gen-plain", "generate", yaml.safe_dump({"card_id": PENDULUM, "use_memory": False}))
    add = store.add_candidate
    # with memory: one first-attempt pass, two failures fixed after 1 and 2 attempts
    add("gen-memory", None, 0, 0, 0, "checked")
    add("gen-memory", None, 0, 1, 0, "rejected", error="reward program rejected [import] (line 2): no")
    add("gen-memory", None, 0, 1, 1, "checked")
    add("gen-memory", None, 1, 0, 0, "rejected", error="reward program rejected [runtime] (line 4): no")
    add("gen-memory", None, 1, 0, 1, "rejected", error="reward program rejected [output]: no")
    add("gen-memory", None, 1, 0, 2, "trained")
    # without: a failure never fixed, a pass
    add("gen-plain", None, 0, 0, 0, "rejected", error="reward program rejected [output]: no")
    add("gen-plain", None, 0, 0, 1, "rejected", error="reward program rejected [output]: no")
    add("gen-plain", None, 0, 1, 0, "trained")

    one = first_attempt_stats(store, "gen-memory")
    assert (one.runs, one.candidates, one.first_attempt_failures, one.fixed) == (1, 3, 2, 2)
    assert one.first_attempt_failure_rate == pytest.approx(2 / 3)
    assert one.fixed_fraction == 1.0 and one.mean_attempts_to_fix == 1.5
    assert one.attempts_to_fix == {1: 1, 2: 1} and one.first_failure_rules == {"import": 1, "runtime": 1}

    plain = first_attempt_stats(store, memory=False)
    assert (plain.candidates, plain.first_attempt_failures, plain.fixed) == (2, 1, 0)
    assert plain.fixed_fraction == 0.0 and plain.mean_attempts_to_fix is None

    both = first_attempt_stats(store)
    assert (both.runs, both.candidates, both.first_attempt_failures, both.fixed) == (2, 5, 3, 2)
    assert first_attempt_stats(store, memory=True).to_dict() == one.to_dict()
    empty = first_attempt_stats(store, "no-such-run")
    assert empty.candidates == 0 and empty.first_attempt_failure_rate is None


# -- prompts -----------------------------------------------------------------------------------------
def test_error_prompt_renders_retrieved_corrections(seeded) -> None:
    store, _ = seeded
    card = load_card("metaworld/push-v3")
    broken = strip_module_docstring(card.reference_reward_path().read_text()).replace(
        "import numpy as np", "import numpy as np\nimport torch")
    report = check_program(broken, card)
    corrections = CorrectionMemory(store).retrieve(card, report)
    assert corrections and all("import torch" in c["failing_code"] for c in corrections)
    feedback = PromptBuilder().execution_error(card, broken, report, corrections=corrections)[-1]["content"]
    assert "[import] (line 2): import of 'torch' is not allowed" in feedback
    assert "Earlier programs failed in a similar way" in feedback
    for c in corrections:
        assert c["failing_code"].strip() in feedback and c["fixed_code"].strip() in feedback
        assert c["feedback"] in feedback


# -- the benchmark's comparison, with a scripted provider ---------------------------------------------
class _Scripted:
    """Replies with the good program only when the prompt shows memory examples, else repeats the error."""

    name = "scripted"

    def __init__(self, good: str):
        self.good = good
        self.calls = 0

    def complete(self, request):
        from rewardlab.llm.base import LLMReply

        self.calls += 1
        prompt = request.messages[-1]["content"]
        code = self.good if "Earlier programs failed" in prompt else request.messages[-2]["content"]
        return LLMReply([code if code.startswith("```") else f"```python\n{code}\n```"], "scripted", "scripted", 10, 5)


def test_benchmark_compares_fixes_with_and_without_memory(seeded) -> None:
    from benchmarks.correction_memory import _cases, compare

    store, _ = seeded
    cases = [c for c in _cases(store, {"metaworld/reach-v3"}, 20, seed=0) if c.rule in ("import", "dunder")]
    assert cases
    good = strip_module_docstring(load_card("metaworld/reach-v3").reference_reward_path().read_text())
    provider = _Scripted(good)
    result = compare(provider, "scripted", CorrectionMemory(store), cases, attempts=2, k=2)
    with_memory, without = result["arms"]["with_memory"], result["arms"]["without_memory"]
    assert with_memory["first_fix_rate"] == 1.0 and with_memory["mean_attempts_to_fix"] == 1.0
    assert without["first_fix_rate"] == 0.0 and without["fixed_rate"] == 0.0
    assert result["first_fix_paired"] == {"only_with_memory": len(cases)}
    assert provider.calls == 3 * len(cases) and with_memory["tokens"] == 15 * len(cases)


class _BrokenThenFixed:
    """A provider whose first programs return a tuple of three and whose error-feedback replies fix it."""

    name = model = "scripted"

    def complete(self, request):
        from rewardlab.llm.base import LLMReply

        text = GOOD.replace("alive, {", "alive, alive, {") if request.metadata["purpose"] == "initial" else GOOD
        return LLMReply([f"```python\n{text}```"] * request.n, "scripted", "scripted", 1, 1)


def test_generation_records_its_fixes_and_reports_first_attempts(tmp_path: Path) -> None:
    from rewardlab.text2reward.loop import DB_NAME, GenerationConfig, generate

    config = GenerationConfig(samples=2, rounds=1, probe_steps=0)
    result = generate(PENDULUM, config, out=tmp_path, provider=_BrokenThenFixed())
    assert result.first_attempt_failures == 2 and result.fixes == [1, 1]
    with RunStore(tmp_path / DB_NAME) as s:
        [pair] = s.corrections()  # both samples made the same mistake and the same fix: one pair
        assert (pair.origin, pair.rule, pair.card_id) == ("generation", "output", PENDULUM)
        assert "returned a tuple of 3" in pair.feedback and pair.fixed_code == GOOD
        stats = first_attempt_stats(s, result.run_id)
        assert (stats.candidates, stats.first_attempt_failure_rate, stats.fixed_fraction,
                stats.mean_attempts_to_fix) == (2, 1.0, 1.0, 1.0)
        assert first_attempt_stats(s, memory=False).candidates == 0


def test_benchmark_without_a_provider_reports_the_teacher_pool(tmp_path: Path, capsys) -> None:
    from benchmarks.correction_memory import main

    result = main(["--pool-cards", PENDULUM, "--out", str(tmp_path), "--workers", "1"])
    assert "needs a real LLM" in capsys.readouterr().out
    assert result["teacher_pool"]["pairs"] >= 6 and set(result["teacher_pool"]["by_family_rule"]) == {"mujoco"}
    assert "comparison" not in result and (tmp_path / "correction_memory.json").is_file()


def test_benchmark_with_an_openai_compatible_endpoint_stores_every_exchange(tmp_path: Path, llm_server) -> None:
    """The ``--provider openai`` path end to end, against the scripted local server (no network)."""
    from benchmarks.correction_memory import main

    llm_server.default = lambda body: ("code", f"Fixed:\n```python\n{GOOD}```")
    result = main(["--provider", "openai", "--base-url", llm_server.base_url, "--model", "m", "--api-key", "k",
                   "--pool-cards", f"{PENDULUM},mujoco/Reacher-v5", "--cards", PENDULUM, "--max-cases", "2",
                   "--attempts", "2", "--out", str(tmp_path), "--workers", "1"])
    arms = result["comparison"]["arms"]
    assert arms["with_memory"]["cases"] == arms["without_memory"]["cases"] == 2
    assert arms["with_memory"]["first_fix_rate"] == arms["without_memory"]["first_fix_rate"] == 1.0
    assert [c["card_id"] for c in result["comparison"]["cases"]] == [PENDULUM, PENDULUM]
    assert all(c["with_memory"]["examples"] >= 1 and c["without_memory"]["examples"] == 0
               for c in result["comparison"]["cases"])
    assert len(llm_server.requests) == 4
    prompts = [r["messages"][-1]["content"] for r in llm_server.requests]
    assert sum("Earlier programs failed" in p for p in prompts) == 2
    with RunStore(tmp_path / "correction_memory.sqlite") as s:
        assert len(s.exchanges()) == 4
