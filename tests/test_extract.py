"""Code extraction from LLM replies (rewardlab/text2reward/extract.py)."""

from __future__ import annotations

import ast

import pytest

from rewardlab.errors import UserError
from rewardlab.program import load_program
from rewardlab.text2reward.extract import CodeExtractionError, extract_program

PROGRAM = '''import numpy as np

def compute_dense_reward(self, action):
    d = np.linalg.norm(self.robot.ee_position - self.obj1.position, axis=-1)
    reach = 1.0 - np.tanh(d / 0.1)  # weight 1: the only stage
    return reach, {"reach": reach}'''

FENCE = "`" * 3


def fenced(code: str, lang: str = "python") -> str:
    return f"{FENCE}{lang}\n{code}\n{FENCE}"


def defines_entry(source: str) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == "compute_dense_reward" for n in ast.parse(source).body)


def test_python_fence_with_prose_around_it() -> None:
    reply = f"Here is the reward.\n\n{fenced(PROGRAM)}\n\nIt rewards reaching the handle."
    assert extract_program(reply) == PROGRAM + "\n"


def test_bare_fence() -> None:
    assert extract_program(f"Sure:\n{fenced(PROGRAM, '')}\nDone.") == PROGRAM + "\n"


def test_realistic_gpt_style_reply() -> None:
    reply = f"""To design a dense reward for opening the drawer, let's break the task into stages:

1. **Reach**: move the gripper to the handle. We use `np.linalg.norm` over the last axis.
2. **Pull**: move the handle towards the goal along -y.
3. **Success**: a bonus once the handle is within 3 cm of the goal.

Here's the complete implementation:

{FENCE}python
import numpy as np

def compute_dense_reward(self, action):
    # Stage 1: reach the handle (weight 1.0)
    hand = self.robot.ee_position
    handle = self.obj1.position
    reach = 1.0 - np.tanh(np.linalg.norm(hand - handle, axis=-1) / 0.1)
    # Stage 2: pull towards the goal (weight 5.0: the main objective)
    dist = np.linalg.norm(handle - self.goal_position, axis=-1)
    pull = 5.0 * (1.0 - np.tanh(dist / 0.1))
    # Stage 3: success bonus (weight 2.0)
    success = 2.0 * np.where(dist < 0.03, 1.0, 0.0)
    total = reach + pull + success
    return total, {{"reach": reach, "pull": pull, "success": success}}
{FENCE}

### Explanation
- The `reach` term gives a gradient everywhere.
- `pull` dominates once the handle is hooked, so the agent learns to pull.
- Weights can be tuned: for example, try `pull = 10.0 * ...` if the agent hesitates:

{FENCE}python
pull = 10.0 * (1.0 - np.tanh(dist / 0.1))
{FENCE}
"""
    source = extract_program(reply)
    assert source.startswith("import numpy as np")
    assert "success = 2.0" in source and "pull = 10.0" not in source
    load_program(source)  # passes the static check


def test_several_blocks_pick_the_one_defining_the_entry_and_join_helpers() -> None:
    helper = "def _bounded(d, scale):\n    return 1.0 - np.tanh(d / scale)"
    main = ("import numpy as np\n\ndef compute_dense_reward(self, action):\n"
            "    d = np.linalg.norm(self.robot.ee_position - self.obj1.position, axis=-1)\n"
            "    r = _bounded(d, 0.1)\n    return r, {'reach': r}")
    usage = "reward, parts = compute_dense_reward(env, action)\nprint(parts)"
    shell = "pip install numpy"
    reply = (f"A helper first:\n{fenced(helper)}\nThe reward:\n{fenced(main)}\nUsage:\n{fenced(usage)}\n"
             f"{fenced(shell, 'bash')}")
    source = extract_program(reply)
    assert source.index("def _bounded") < source.index("def compute_dense_reward")
    assert "print(parts)" not in source and "pip install" not in source
    load_program(source)


def test_several_definitions_take_the_last_revision() -> None:
    first = PROGRAM.replace("0.1", "0.5")
    reply = f"First try:\n{fenced(first)}\nWait, the scale is too wide. Revised:\n{fenced(PROGRAM)}"
    assert extract_program(reply) == PROGRAM + "\n"


def test_no_fences_whole_reply_is_code() -> None:
    assert extract_program(PROGRAM) == PROGRAM + "\n"


def test_no_fences_code_after_prose_and_prose_after_code() -> None:
    reply = f"Here is my reward function for the drawer task.\n\n{PROGRAM}\n\nThis rewards the reach stage only."
    assert extract_program(reply) == PROGRAM + "\n"


def test_no_fences_prose_line_starting_like_code_is_skipped() -> None:
    reply = f"from the stubs, the handle is obj1.\n\n{PROGRAM}\n\nDone."
    assert extract_program(reply) == PROGRAM + "\n"


def test_unclosed_fence_that_parses_is_taken() -> None:
    reply = f"Reward:\n{FENCE}python\n{PROGRAM}\n"
    assert extract_program(reply) == PROGRAM + "\n"


def test_truncated_reply_says_so() -> None:
    cut = PROGRAM[: PROGRAM.index("reach = 1.0") + len("reach = 1.0 - np.tanh(")]
    with pytest.raises(CodeExtractionError, match="looks truncated"):
        extract_program(f"Reward:\n{FENCE}python\n{cut}")


def test_closed_block_with_syntax_error_is_returned_for_the_static_check() -> None:
    broken = PROGRAM.replace("return reach", "return reach)")
    source = extract_program(fenced(broken))
    assert "return reach)" in source  # the static check names the line; the LLM gets it back


def test_think_section_is_stripped() -> None:
    decoy = fenced("def compute_dense_reward(self, action):\n    return 0.0")
    reply = f"<think>Let me draft:\n{decoy}\nNo, stage it.</think>\nFinal answer:\n{fenced(PROGRAM)}"
    assert extract_program(reply) == PROGRAM + "\n"


def test_lone_closing_think_tag_drops_the_reasoning_before_it() -> None:
    reply = f"draft: def compute_dense_reward(self, action): return 0\n</think>\n{fenced(PROGRAM)}"
    assert extract_program(reply) == PROGRAM + "\n"


def test_unclosed_think_section_means_no_program() -> None:
    with pytest.raises(CodeExtractionError, match="no reward program"):
        extract_program(f"<think>I will write {fenced(PROGRAM)} but first")


def test_prose_only_reply_raises_a_user_error_with_the_count() -> None:
    prose = "I'm sorry, I cannot help with designing this reward without more details."
    expected = rf"no reward program found in the reply \({len(prose)} chars of prose, no compute_dense_reward\)"
    with pytest.raises(CodeExtractionError, match=expected) as info:
        extract_program(prose)
    assert isinstance(info.value, UserError)


def test_code_blocks_without_the_entry_point_raise() -> None:
    with pytest.raises(CodeExtractionError, match="none defines compute_dense_reward"):
        extract_program("Try this:\n" + fenced("def reward(obs):\n    return 0.0"))


def test_method_inside_a_class_is_lifted() -> None:
    body = "\n".join("    " + line if line else "" for line in PROGRAM.split("\n")[2:])
    reply = fenced(f"import numpy as np\n\nclass Env:\n{body}")
    source = extract_program(reply)
    assert defines_entry(source) and source.startswith("import numpy as np")
    load_program(source)


def test_tilde_fences_and_crlf_line_ends() -> None:
    reply = ("Reward:\r\n~~~python\r\n" + PROGRAM.replace("\n", "\r\n") + "\r\n~~~\r\n")
    assert extract_program(reply) == PROGRAM + "\n"
