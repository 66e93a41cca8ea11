"""SB3's DQN on the thesis' gridworlds through the normal spec path (agents/gridworld.yaml's dqn preset),
and the one-line refusal of an algorithm for the other kind of action space."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rewardlab.cards import load_card
from rewardlab.config import TrainConfig
from rewardlab.errors import UserError
from rewardlab.training.presets import load_preset
from rewardlab.training.sb3 import SB3Trainer


def test_dqn_trains_on_room_through_a_spec(tmp_path: Path) -> None:
    from rewardlab.runs.runner import run_experiment

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "dqn-room", "tasks": ["gridworld/room"],
        "rewards": [{"name": "exprd-b3", "shaper": {"name": "exprd", "budget": 3}}],
        "algorithms": ["dqn"], "seeds": [0], "budget": {"steps": 1500},
        "evaluation": {"episodes": 10}, "workers": 1}))
    summary = run_experiment(spec, out=tmp_path / "runs", workers=1)
    assert summary.counts.get("done") == 1
    for trial in (tmp_path / "runs").glob("dqn-room-*/trials/*"):
        result = json.loads((trial / "result.json").read_text())
        assert result["algo"] == "dqn" and result["steps"] == 1500
        assert len(result["eval"]["env_return"]) == 10 and len(result["eval"]["success"]) == 10


def test_dqn_preset_follows_each_models_discount() -> None:
    assert load_preset(load_card("gridworld/room"), "dqn")["gamma"] == 0.95
    assert load_preset(load_card("gridworld/chain"), "dqn")["gamma"] == 0.99


@pytest.mark.parametrize(("card", "algo", "message"), [
    ("metaworld/reach-v3", "dqn", "dqn needs discrete actions; metaworld/reach-v3 has box actions (use sac or td3)"),
    ("gridworld/room", "sac", "sac needs continuous actions; gridworld/room has discrete actions (use dqn or ppo)"),
])
def test_an_algorithm_for_the_other_action_space_is_refused_in_one_line(card: str, algo: str, message: str) -> None:
    config = TrainConfig.model_validate({"algo": algo, "budget": {"steps": 1000}})
    with pytest.raises(UserError) as e:
        SB3Trainer().validate(load_card(card), config)
    assert str(e.value).startswith(message)
