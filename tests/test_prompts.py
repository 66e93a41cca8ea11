"""Prompt templates and the PromptBuilder (rewardlab/text2reward/prompts.py, prompts/*.j2)."""

from __future__ import annotations

import re

import jinja2
import pytest

from rewardlab.arrays import ALLOWED_NAMES
from rewardlab.cards import DiscreteSpace, list_cards, load_card, render_stubs
from rewardlab.errors import RewardProgramError
from rewardlab.resources import resource_dir
from rewardlab.text2reward.extract import extract_program
from rewardlab.text2reward.prompts import PromptBuilder, TrainingStats
from rewardlab.text2reward.retrieval import retrieve_examples
from rewardlab.types import CurvePoint, EvalResult, TrialResult

CARDS = list_cards()
CODE = '''import numpy as np

def compute_dense_reward(self, action):
    d = np.linalg.norm(self.robot.ee_position - self.obj1.position, axis=-1)
    reach = 1.0 - np.tanh(d / 0.1)
    bad = np.savez(reach)
    return reach, {"reach": reach}'''


@pytest.fixture(scope="module")
def builder() -> PromptBuilder:
    return PromptBuilder()


def assert_clean(messages: list[dict[str, str]]) -> None:
    for m in messages:
        assert m["role"] in ("system", "user", "assistant") and m["content"].strip()
        for leftover in ("{{", "}}", "{%", "%}", "{#"):
            assert leftover not in m["content"], (leftover, m["content"][:200])


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.id)
def test_zero_shot_and_few_shot_render_for_every_card(builder: PromptBuilder, card) -> None:
    zero = builder.initial(card)
    few = builder.initial(card, examples=retrieve_examples(card, k=2))
    for messages in (zero, few):
        assert [m["role"] for m in messages] == ["system", "user"]
        assert_clean(messages)
        system, user = messages[0]["content"], messages[1]["content"]
        assert render_stubs(card, action=False) in user
        assert card.instruction in user
        discrete = isinstance(card.action, DiscreteSpace)
        shape = "one integer per env" if discrete else f"({', '.join(map(str, card.action.shape))},)"
        assert shape in user  # the action space (a Discrete one is an integer per env)
        if card.action.doc.strip():
            assert (system + user).count(card.action.doc.strip()[1:]) == 1  # stated once (issue 7, part 4)
        assert "Success criterion:" in user
        for tip in card.tips:
            assert tip in user
        for name in ALLOWED_NAMES:
            assert f"`np.{name}`" in system
        assert "compute_dense_reward(self, action)" in system and "ONE fenced" in system
    assert "Example 1 of 2" in few[1]["content"] and "Example" not in zero[1]["content"]
    for ex in retrieve_examples(card, k=2):
        assert f"Task ({ex.card_id}): {ex.instruction}" in few[1]["content"]
        assert "Hand-written reference reward for" not in few[1]["content"]


def test_instruction_override_and_success_wording(builder: PromptBuilder) -> None:
    card = load_card("mujoco/Reacher-v5")
    user = builder.initial(card, instruction="Touch the target and circle around it.")[1]["content"]
    assert "Touch the target and circle around it." in user and card.instruction not in user
    assert "self.target.distance < 0.02" in user
    assert "not ended early" in builder.initial(load_card("mujoco/InvertedPendulum-v5"))[1]["content"]


def test_blank_lines_are_tidy(builder: PromptBuilder) -> None:
    card = load_card("metaworld/drawer-open-v3")
    zero = builder.initial(card)[1]["content"]
    few = builder.initial(card, examples=retrieve_examples(card, k=2))[1]["content"]
    for text in (zero, few):
        prose = re.sub(r"\n```python\n.*?\n```\n", "\n```code```\n", text, flags=re.S)  # code keeps PEP 8 gaps
        assert "\n\n\n" not in prose
    assert "```code```\n\nExample 2" in re.sub(r"\n```python\n.*?\n```\n", "\n```code```\n", few, flags=re.S)


def test_templates_use_strict_undefined(tmp_path) -> None:
    (tmp_path / "system.j2").write_text("{{ not_given }}")
    with pytest.raises(jinja2.UndefinedError):
        PromptBuilder(tmp_path).system()


def test_templates_are_found_through_resources() -> None:
    assert PromptBuilder().prompts_dir == resource_dir("prompts")
    for name in ("system", "zero_shot", "few_shot", "execution_error", "reflection", "human_feedback"):
        assert (resource_dir("prompts") / f"{name}.j2").is_file()


def test_execution_error_shows_code_rule_line_and_corrections(builder: PromptBuilder) -> None:
    card = load_card("metaworld/drawer-open-v3")
    error = RewardProgramError("attribute", "np.savez is not offered to reward programs", line=6)
    memory = [{"failing_code": "x = np.save(1)", "feedback": "np.save is not offered", "fixed_code": "x = 1"}]
    messages = builder.execution_error(card, CODE, error, corrections=memory)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert_clean(messages)
    assert extract_program(messages[2]["content"]).strip() == CODE.strip()
    feedback = messages[3]["content"]
    assert "[attribute] (line 6): np.savez is not offered" in feedback
    assert "bad = np.savez(reach)" in feedback  # the offending line
    assert "x = np.save(1)" in feedback and "np.save is not offered" in feedback and "Fixed code" in feedback
    plain = builder.execution_error(card, CODE, "ZeroDivisionError: division by zero")[3]["content"]
    assert "ZeroDivisionError: division by zero" in plain and "Fixed code" not in plain


def test_reflection_reports_component_statistics_and_heuristics(builder: PromptBuilder) -> None:
    card = load_card("metaworld/drawer-open-v3")
    stats = TrainingStats(
        steps=[1000 * i for i in range(1, 13)],
        components={"reach": [float(i) for i in range(12)], "pull": [0.5] * 12,
                    "bonus": [900.0 + i for i in range(12)]},
        success=[0.0] * 12, episode_length=[500.0] * 12, return_env=[1.0] * 12,
        return_program=[10.0 * i for i in range(12)], algo="SAC", total_steps=12000,
    )
    messages = builder.reflection(card, CODE, stats)
    assert_clean(messages)
    text = messages[3]["content"]
    assert "SAC, 12000 environment steps" in text
    assert "- reach: [0, 1, 2, 4, 5, 6, 7, 9, 10, 11]  mean 5.5, min 0, max 11" in text  # 10 of 12 checkpoints
    for label in ("success rate", "episode length", "env return"):
        assert label in text
    assert "success rate stayed near zero" in text
    assert "'pull' hardly changed" in text
    assert "'bonus' is about" in text
    assert "collecting reward without doing the task" in text
    assert "rewrite the whole function" in text
    # A mapping works as well as the dataclass, and the trial result converts.
    assert builder.reflection(card, CODE, {"steps": [1], "components": {"reach": [1.0]}})[3]["content"]
    trial = TrialResult(curve=[CurvePoint(step=500, return_program=1.0, return_env=2.0, success=0.5,
                                          components={"reach": 3.0})],
                        eval=EvalResult(length=[100, 300]), steps=500)
    from_trial = TrainingStats.from_trial(trial)
    assert from_trial.success == [0.5] and from_trial.episode_length == [200.0] and from_trial.total_steps == 500
    assert from_trial.components == {"reach": [3.0]}


def test_human_feedback_has_code_behaviour_and_feedback(builder: PromptBuilder) -> None:
    card = load_card("metaworld/pick-place-v3")
    messages = builder.human_feedback(card, CODE, "the gripper closes too early",
                                      observed="it closes the gripper above the puck and pushes it away")
    assert_clean(messages)
    text = messages[3]["content"]
    assert "the gripper closes too early" in text and "pushes it away" in text
    assert "Re-imagine which steps" in text
    assert "What the policy does" not in builder.human_feedback(card, CODE, "slower please")[3]["content"]
    with pytest.raises(ValueError):
        builder.human_feedback(card, CODE, "  ")
