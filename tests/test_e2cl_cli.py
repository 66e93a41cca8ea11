"""``rewardlab e2cl play`` with an LLM agent (against the local OpenAI-compatible test server) and with
a saved sequence model; one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from click.testing import Result
from typer.testing import CliRunner

from rewardlab.e2cl.agents import SeqAgent
from rewardlab.e2cl.datasets import Context, Record, write_jsonl
from rewardlab.e2cl.model import ModelConfig, Seq2Seq
from rewardlab.e2cl.tokenizer import Tokenizer
from rewardlab.errors import UserError
from rewardlab.household import HouseholdEnv


def rewardlab(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, in a subprocess (once per test: it imports torch)."""
    return subprocess.run([sys.executable, "-m", "rewardlab", *args], capture_output=True, text=True, timeout=300)


def in_process(*args: str) -> Result:
    """The command in this process (errors stay exceptions: ``main`` turns them into one line)."""
    from rewardlab.cli import app

    return CliRunner().invoke(app, list(args))


def test_play_with_an_llm_agent_and_retrieved_corrections(tmp_path: Path, llm_server: Any) -> None:
    env = HouseholdEnv()
    env.reset(seed=0, options={"home": 3, "task": "turn on the tv"})
    plan = [a.text for a in env.expert_plan()]

    def answer(body: dict[str, Any]) -> tuple[Any, ...]:
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        k = len(re.findall(r"^step \d+:", user, flags=re.M))
        if system.startswith("You are a robot agent"):
            return ("code", "grab fridge" if k == 0 else plan[k])
        if system.startswith("You are a world simulator"):
            return ("code", "Error, fridge cannot be grabbed." if "Step: grab fridge" in user else "True")
        assert "Example: erroneous step: grab sofa" in user  # the retrieved memory is in the prompt
        return ("code", f"1. {plan[k]}.")

    llm_server.default = answer
    memory = tmp_path / "corrections.jsonl"
    write_jsonl(memory, [Record("correction", Context("turn on the tv", "You see sofa."), "walk to tv",
                                step="grab sofa", feedback="Error, sofa cannot be grabbed.", source="teacher_free")])
    proc = rewardlab("e2cl", "play", "--agent", "llm", "--task", "turn on the tv", "--home", "3", "--model", "m",
                     "--base-url", llm_server.base_url, "--memory", str(memory))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "proposal: grab fridge" in out and "predicted feedback: Error, fridge cannot be grabbed." in out
    assert f"correction: {plan[0]} (re-check: True; accepted)" in out and "env: True" in out
    assert "success: True" in out and "executability: 1.00" in out


def test_play_with_a_saved_model_and_errors(tmp_path: Path) -> None:
    tok = Tokenizer()
    torch.manual_seed(0)
    SeqAgent(Seq2Seq(len(tok), tok.pad, tok.bos, tok.eos, ModelConfig(d_model=16, layers=1, ff=32)), tok).save(
        tmp_path / "model.pt")
    (tmp_path / "result.json").write_text(json.dumps({"trainer": "e2cl", "algo": "e2cl"}))
    proc = rewardlab("e2cl", "play", "--agent", str(tmp_path), "--task", "wash the cup", "--home", "2", "--max-steps", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("proposal:") == 3 and "env:" in proc.stdout and "executability" in proc.stdout
    bad = in_process("e2cl", "play", "--agent", str(tmp_path), "--task", "wash the cupp")
    assert isinstance(bad.exception, UserError) and "did you mean 'wash the cup'" in str(bad.exception)
    missing = in_process("e2cl", "play", "--agent", str(tmp_path / "nothing"), "--task", "wash the cup")
    assert isinstance(missing.exception, UserError) and "no trained e2cl agent" in str(missing.exception)
    negative = in_process("e2cl", "play", "--agent", str(tmp_path), "--task", "wash the cup", "--home", "-1")
    assert isinstance(negative.exception, UserError) and "--home must be >= 0" in str(negative.exception)
