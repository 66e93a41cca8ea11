"""Programs people already have: Text2Reward-shaped MetaWorld rewards (scipy distances and rotations,
raw observation slices, the env's goal accessor) run unmodified; imports and fields a card lacks are
named with what exists instead."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rewardlab.cards import load_card
from rewardlab.checks import SampledStates, check_program, sample_states
from rewardlab.errors import RewardProgramError
from rewardlab.program import CompatModeWarning, RewardProgram, load_program
from rewardlab.resources import resource_dir
from rewardlab.state import StateExtractor

SHAPES = Path(__file__).parent / "fixtures" / "text2reward_shapes"
PROGRAMS = sorted(p.stem for p in SHAPES.glob("*.py"))
#: the ten MetaWorld tasks Text2Reward published rewards for (their v2 names, our v3 cards)
T2R_TASKS = ("button-press", "door-close", "door-unlock", "drawer-open", "drawer-close", "handle-press",
             "handle-press-side", "sweep-into", "window-open", "window-close")
_SAMPLED: dict[str, SampledStates] = {}


@pytest.fixture
def states(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    monkeypatch.setenv("REWARDLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))

    def get(card_id: str) -> SampledStates:
        if card_id not in _SAMPLED:
            _SAMPLED[card_id] = sample_states(load_card(card_id), n=32)
        return _SAMPLED[card_id]

    return get


def _run(program: RewardProgram, card_id: str, s: SampledStates, backend: str = "numpy"):
    card = load_card(card_id)
    to = torch.as_tensor if backend == "torch" else np.array
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompatModeWarning)
        reward = program.bind(card, backend=backend)
        return reward, reward(StateExtractor(card).view(to(s.states), to(s.obs)), to(s.actions))


@pytest.mark.parametrize("task", T2R_TASKS)
@pytest.mark.parametrize("name", PROGRAMS)
def test_text2reward_shaped_programs_run_unmodified_on_every_task(name: str, task: str, states) -> None:
    card_id = f"metaworld/{task}-v3"
    reward, (total, _) = _run(load_program(SHAPES / f"{name}.py"), card_id, states(card_id))
    assert reward.mode == "scalar" and np.all(np.isfinite(total)) and total.shape == (32,)


@pytest.mark.parametrize("name", PROGRAMS)
def test_text2reward_shaped_programs_pass_the_sandbox_trial(name: str, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    monkeypatch.setenv("REWARDLAB_CACHE", str(tmp_path))
    report = check_program(SHAPES / f"{name}.py", load_card("metaworld/window-open-v3"), n_states=16)
    assert report.ok and report.mode == "scalar", report.message


def test_the_goal_accessor_reads_the_cards_goal_field(states) -> None:
    s = states("metaworld/drawer-open-v3")
    alias = RewardProgram("def compute_dense_reward(self, action, obs):\n    return self.env._get_pos_goal()[1]\n")
    field = RewardProgram("def compute_dense_reward(self, action):\n    return self.goal_position[:, 1]\n")
    _, (via_alias, _) = _run(alias, "metaworld/drawer-open-v3", s)
    _, (via_field, _) = _run(field, "metaworld/drawer-open-v3", s)
    np.testing.assert_array_equal(via_alias, via_field)


def test_aliases_name_fields_every_card_of_their_family_has() -> None:
    for path in resource_dir("envs").glob("*/compat.yaml"):
        aliases = yaml.safe_load(path.read_text())["compat_aliases"]
        for card_path in path.parent.glob("*.yaml"):
            if card_path.name == "compat.yaml":
                continue
            card = load_card(card_path)
            assert set(aliases.values()) <= set(card.fields()), card.id


def test_other_private_env_accessors_stay_rejected() -> None:
    with pytest.raises(RewardProgramError, match=r"\[dunder\].*'_get_site_pos'"):
        RewardProgram("def compute_dense_reward(self, action, obs):\n    return self.env._get_site_pos('x')[0]\n")


# -- the curated scipy ---------------------------------------------------------------------------------
def test_scipy_facades_compute_what_scipy_computes(states) -> None:
    from scipy.spatial.distance import cdist
    from scipy.spatial.transform import Rotation

    s = states("metaworld/drawer-open-v3")
    program = RewardProgram(
        "import numpy as np\nimport scipy.spatial.distance\nfrom scipy.spatial import transform\n"
        "def compute_dense_reward(self, action):\n"
        "    d = scipy.spatial.distance.cdist(self.robot.ee_position, self.obj1.position)\n"
        "    r = transform.Rotation.from_euler('z', self.robot.ee_position[:, :1]).inv()\n"
        "    return d[0] + (r * r).magnitude()\n")
    reward, (total, _) = _run(program, "metaworld/drawer-open-v3", s)
    extractor = StateExtractor(load_card("metaworld/drawer-open-v3"))
    ee = s.states[:, slice(*extractor.offsets["robot.ee_position"])]
    obj = s.states[:, slice(*extractor.offsets["obj1.position"])]
    r = Rotation.from_euler("z", ee[:, :1]).inv()
    np.testing.assert_allclose(total, cdist(ee, obj)[0] + (r * r).magnitude(), rtol=1e-12)
    assert reward.mode == "batched"


def test_scipy_on_torch_state_is_one_clear_error(states) -> None:
    program = load_program(SHAPES / "general_distance.py")
    with pytest.raises(RewardProgramError, match="euclidean takes numpy arrays.*torch"):
        _run(program, "metaworld/drawer-open-v3", states("metaworld/drawer-open-v3"), backend="torch")


@pytest.mark.parametrize("line, words", [
    ("from scipy.spatial.distance import directed_hausdorff", "cannot import 'directed_hausdorff' from scipy.spatial.distance"),
    ("from scipy import linalg", "cannot import 'linalg' from scipy"),
    ("import scipy.io", "import of 'scipy.io' is not allowed"),
    ("from scipy.spatial.transform import Slerp", "Rotation"),
    ("from numpy import nanmean", "cannot import 'nanmean' from numpy (the np in a reward program is an allow-list"),
    ("from numpy.linalg import inv", "np.linalg offers: norm"),
])
def test_imports_outside_the_allow_list_say_what_is_offered(line: str, words: str) -> None:
    with pytest.raises(RewardProgramError) as info:
        RewardProgram(f"{line}\ndef compute_dense_reward(self, action):\n    return 0.0\n")
    assert info.value.rule == "import" and words in str(info.value) and info.value.line == 1


def test_offered_numpy_names_import_by_name(states) -> None:
    program = RewardProgram("from numpy import isnan, where\nfrom numpy.linalg import norm\n"
                            "def compute_dense_reward(self, action):\n"
                            "    d = norm(self.robot.ee_position, axis=-1)\n    return where(isnan(d), 0.0, d)\n")
    _, (total, _) = _run(program, "metaworld/drawer-open-v3", states("metaworld/drawer-open-v3"))
    assert np.all(total > 0)


@pytest.mark.parametrize("call", ["Rotation.random()", "Rotation.identity().random()", "Rotation.identity().create_group('O')"])
def test_rotation_offers_no_random_draws_or_internals(call: str, states) -> None:
    program = RewardProgram("from scipy.spatial.transform import Rotation\n"
                            f"def compute_dense_reward(self, action):\n    r = {call}\n    return 0.0\n")
    with pytest.raises(RewardProgramError, match="not offered|a Rotation offers"):
        _run(program, "metaworld/drawer-open-v3", states("metaworld/drawer-open-v3"))


# -- unknown fields --------------------------------------------------------------------------------------
def test_every_unknown_field_is_listed_with_a_did_you_mean() -> None:
    program = RewardProgram("import numpy as np\ndef compute_dense_reward(self, action):\n"
                            "    a = self.tcp\n"
                            "    return -np.linalg.norm(self.robot.ee_pos - self.obj1.position, axis=-1)\n")
    with pytest.raises(RewardProgramError) as info:
        program.bind(load_card("metaworld/drawer-open-v3"))
    text = str(info.value)
    assert info.value.rule == "unknown-field" and info.value.line == 3 and "\n" not in text
    assert "self.tcp" in text and "self.robot.ee_pos (did you mean self.robot.ee_position?)" in text
    assert "its fields are self.robot.ee_position, self.robot.gripper_openness, self.obj1.position" in text


def test_an_unknown_field_read_through_a_helper_names_what_the_view_has(states) -> None:
    program = RewardProgram("import numpy as np\ndef dist(robot, obj):\n    return robot.ee_pos - obj.position\n"
                            "def compute_dense_reward(self, action):\n"
                            "    return -np.linalg.norm(dist(self.robot, self.obj1), axis=-1)\n")
    with pytest.raises(RewardProgramError, match="no field 'ee_pos' here; did you mean 'ee_position'"):
        _run(program, "metaworld/drawer-open-v3", states("metaworld/drawer-open-v3"))


@pytest.mark.parametrize("route", ["import scipy.spatial.distance as d\n    x = d.np",
                                   "from scipy.spatial import transform\n    x = transform.Rotation.random",
                                   "import scipy\n    x = scipy.io"])
def test_scipy_imports_bind_facades_even_when_scipy_is_loaded(route: str, states) -> None:
    import scipy.spatial.distance  # noqa: F401 - loaded in this process, as in a trainer

    program = RewardProgram(f"def compute_dense_reward(self, action):\n    {route}\n    return 0.0\n")
    with pytest.raises(RewardProgramError, match="not offered to reward programs"):
        _run(program, "metaworld/drawer-open-v3", states("metaworld/drawer-open-v3"))


def test_a_program_reading_the_goal_through_the_accessor_extracts_the_goal_field(tmp_path: Path) -> None:
    """The accessor passed the check but the trainer's extractor, which keeps only the fields a program
    names, left goal_position out: training failed at once with "the state has no field" (a fresh user)."""
    from rewardlab.state import fields_used_by
    from rewardlab.training import train

    card = load_card("metaworld/drawer-open-v3")
    source = (SHAPES / "specific.py").read_text()
    assert "goal_position" in fields_used_by(card, source)
    result = train(card, str(SHAPES / "specific.py"), "ppo", 2000, seed=0, run_dir=tmp_path, eval_episodes=1)
    assert result.steps >= 2000
