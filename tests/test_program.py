"""Reward programs: what LLMs typically write passes, per-env (Text2Reward) code runs in compat mode
with the same results as its batched equivalent, numpy and torch inputs give the same rewards, and
every output is checked (shape, dtype, finiteness, component names)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from rewardlab.cards import EnvCard, list_cards, load_card
from rewardlab.checks import SampledStates, check_program, sample_states
from rewardlab.errors import RewardProgramError, UserError
from rewardlab.program import CompatModeWarning, CompiledReward, RewardProgram, load_program, reference_program
from rewardlab.state import StateExtractor

FIXTURES = Path(__file__).parent / "fixtures"
PROGRAMS = FIXTURES / "programs"
TOY = FIXTURES / "toy-card.yaml"

#: fixture program -> (card, the mode it runs in)
FIXTURE_CARDS = {
    "pendulum_llm_style": (str(TOY), "batched"),
    "reacher_llm_style": ("mujoco/Reacher-v5", "batched"),
    "reacher_text2reward_scalar": ("mujoco/Reacher-v5", "scalar"),
    "pick_place_text2reward": ("metaworld/pick-place-v3", "scalar"),
    "pick_place_batched": ("metaworld/pick-place-v3", "batched"),
}
_SAMPLED: dict[str, SampledStates] = {}
CARD = load_card(TOY)  # fields: cart.position, cart.velocity, pole.angle, qpos (2)
EXTRACTOR = StateExtractor(CARD)
B = 8


@pytest.fixture
def states(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Callable[[EnvCard], SampledStates]:
    """64 sampled states per card, cached in this session's temp dir (never the user's cache)."""
    monkeypatch.setenv("REWARDLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))

    def get(card: EnvCard) -> SampledStates:
        if card.id not in _SAMPLED:
            _SAMPLED[card.id] = sample_states(card, n=64)
        return _SAMPLED[card.id]

    return get


def evaluate(program: RewardProgram, card: EnvCard, s: SampledStates, backend: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Totals and components as float64 numpy, computed on numpy or torch inputs."""
    extractor = StateExtractor(card)
    reward = program.bind(card, backend=backend)
    if backend == "torch":
        view = extractor.view(torch.as_tensor(s.states), torch.as_tensor(s.obs))
        total, comps = reward(view, torch.as_tensor(s.actions))
        assert isinstance(total, torch.Tensor) and all(isinstance(v, torch.Tensor) for v in comps.values())
    else:
        total, comps = reward(extractor.view(s.states.copy(), s.obs.copy()), s.actions.copy())
    as_np = lambda x: np.asarray(torch.as_tensor(x).cpu() if backend == "torch" else x, dtype=np.float64)  # noqa: E731
    return as_np(total), {k: as_np(v) for k, v in comps.items()}


def quiet(fn: Callable, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompatModeWarning)
        return fn(*args, **kwargs)


# -- what LLMs write passes ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", FIXTURE_CARDS)
def test_typical_llm_programs_pass_the_checks(name: str, states) -> None:
    card_id, mode = FIXTURE_CARDS[name]
    card = load_card(card_id)
    states(card)
    report = check_program(PROGRAMS / f"{name}.py", card, n_states=64)
    assert report.ok, f"{report.rule} (line {report.line}): {report.message}"
    assert report.mode == mode
    assert np.isfinite(report.total["mean"])


def test_llm_style_program_reports_its_components() -> None:
    program = load_program(PROGRAMS / "pendulum_llm_style.py")
    assert program.doc and program.doc.startswith("Keep the pole upright") and not program.is_reference
    card = load_card(TOY)
    rng = np.random.default_rng(0)
    flat = rng.normal(scale=0.1, size=(16, StateExtractor(card).dim))
    total, comps = program.bind(card)(StateExtractor(card).view(flat), rng.normal(size=(16, 1)))
    assert set(comps) == {"upright", "centre", "still", "effort"}
    np.testing.assert_allclose(total, sum(comps.values()))


def _pick_place_states_covering_every_branch(s: SampledStates, card: EnvCard) -> SampledStates:
    """Sampled pick-place states, with rows moved so that every `if` of the per-env program goes both ways."""
    obs = s.obs.copy()
    rng = np.random.default_rng(1)
    n = len(obs)
    tip = obs[:, 0:3] - np.array([0.0, 0.0, 0.045])
    at_puck = np.arange(n) % 4 == 0
    obs[at_puck, 4:7] = tip[at_puck] + rng.normal(scale=0.01, size=(at_puck.sum(), 3))
    lifted = np.arange(n) % 8 == 0
    obs[lifted, 6] = 0.06
    obs[lifted, 0:3] = obs[lifted, 4:7] + np.array([0.0, 0.0, 0.045])
    at_goal = np.arange(n) % 3 == 0
    obs[at_goal, 36:39] = obs[at_goal, 4:7] + rng.normal(scale=0.02, size=(at_goal.sum(), 3))
    obs[:, 3] = rng.uniform(0.2, 1.0, size=n)
    flat = StateExtractor(card).batch(obs)
    tip_to_puck = np.linalg.norm(flat[:, 0:3] - np.array([0, 0, 0.045]) - flat[:, 4:7], axis=-1)
    puck_to_goal = np.linalg.norm(flat[:, 4:7] - flat[:, 11:14], axis=-1)
    for cond in (tip_to_puck < 0.05, (tip_to_puck < 0.05) & (flat[:, 6] > 0.04), puck_to_goal < 0.07,
                 (tip_to_puck >= 0.05) & (obs[:, 3] < 0.5)):
        assert 0 < cond.sum() < n
    return SampledStates(flat, s.actions, obs)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_text2reward_program_runs_in_compat_mode_and_matches_its_batched_equivalent(backend: str, states) -> None:
    card = load_card("metaworld/pick-place-v3")
    s = _pick_place_states_covering_every_branch(states(card), card)
    scalar = load_program(PROGRAMS / "pick_place_text2reward.py")
    assert scalar.params == ("self", "action", "obs")
    with pytest.warns(CompatModeWarning, match="compat mode"):
        scalar_total, _ = evaluate(scalar, card, s, backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompatModeWarning)  # the batched one must not fall back
        batched_total, _ = evaluate(load_program(PROGRAMS / "pick_place_batched.py"), card, s, backend)
    np.testing.assert_allclose(scalar_total, batched_total, rtol=1e-12, atol=1e-12)


def test_per_env_program_that_reduces_over_the_batch_is_run_per_env(states) -> None:
    # np.linalg.norm(d) without axis gives one number for the whole batch; broadcasting it would be
    # silently wrong. The batched result disagrees with single-env calls, so compat mode takes over.
    card = load_card("mujoco/Reacher-v5")
    s = states(card)
    program = load_program(PROGRAMS / "reacher_text2reward_scalar.py")
    reward = program.bind(card)
    extractor = StateExtractor(card)
    with pytest.warns(CompatModeWarning):
        total, comps = reward(extractor.view(s.states.copy()), s.actions.copy())
    assert reward.mode == "scalar"
    ref_total, ref_comps = evaluate(reference_program(card), card, s, "numpy")
    np.testing.assert_allclose(total, ref_total, rtol=1e-12)
    np.testing.assert_allclose(comps["dist"], ref_comps["dist"], rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_two_argument_per_env_program_falls_back_to_compat_mode(backend: str) -> None:
    # float(), math.sqrt and `if` on a field are per-env code; each fails on a batch differently
    # (numpy: TypeError/ValueError, torch: ValueError/RuntimeError) and must fall back on both
    source = (
        "import math\nimport numpy as np\n\n"
        "def compute_dense_reward(self, action):\n"
        "    x = float(self.cart.position)\n"
        "    r = -math.sqrt(x * x + 1.0)\n"
        "    if self.pole.angle > 0.0:\n"
        "        r -= 1.0\n"
        "    return r - float(np.sum(np.square(action))), {'tilt': self.pole.angle > 0.0}\n"
    )
    rng = np.random.default_rng(3)
    flat, action = rng.normal(size=(B, EXTRACTOR.dim)), rng.normal(size=(B, 1))
    want = -np.sqrt(flat[:, 0] ** 2 + 1.0) - (flat[:, 2] > 0) - np.sum(action ** 2, axis=-1)
    reward = RewardProgram(source).bind(CARD, backend=backend)
    to = torch.as_tensor if backend == "torch" else np.array
    with pytest.warns(CompatModeWarning):
        total, comps = reward(EXTRACTOR.view(to(flat)), to(action))
    assert reward.mode == "scalar"
    np.testing.assert_allclose(np.asarray(total), want, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(comps["tilt"]), (flat[:, 2] > 0).astype(float))


def test_batched_program_is_not_sent_to_compat_mode(states) -> None:
    card = load_card("mujoco/Reacher-v5")
    s = states(card)
    reward = reference_program(card).bind(card)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompatModeWarning)
        reward(StateExtractor(card).view(s.states.copy()), s.actions.copy())
    assert reward.mode == "batched"


# -- numpy vs torch ----------------------------------------------------------------------------------
PARITY = [(c.id, str(c.reference_reward_path())) for c in list_cards() if c.reference_reward_path()] + [
    (card, str(PROGRAMS / f"{name}.py")) for name, (card, _) in FIXTURE_CARDS.items()
]


@pytest.mark.parametrize("card_id, path", PARITY, ids=[f"{c}:{Path(p).stem}" for c, p in PARITY])
def test_numpy_and_torch_inputs_give_the_same_rewards(card_id: str, path: str, states) -> None:
    card = load_card(card_id)
    s = states(card)
    program = load_program(path)
    np_total, np_comps = quiet(evaluate, program, card, s, "numpy")
    t_total, t_comps = quiet(evaluate, program, card, s, "torch")
    np.testing.assert_allclose(t_total, np_total, rtol=1e-9, atol=1e-12)
    assert set(t_comps) == set(np_comps)
    for name in np_comps:
        np.testing.assert_allclose(t_comps[name], np_comps[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_every_card_with_a_reference_is_in_the_parity_test() -> None:
    with_reference = [c for c in list_cards() if c.reference_reward_path() is not None]  # gridworlds have none
    assert len([p for p in PARITY if "fixtures" not in p[1]]) == len(with_reference) >= 19


# -- output checks -----------------------------------------------------------------------------------
def run(body: str, backend: str, seed: int = 0, mode: str = "auto") -> tuple[object, dict]:
    source = "import numpy as np\n\ndef compute_dense_reward(self, action):\n" + "".join(
        f"    {line}\n" for line in body.strip().splitlines())
    rng = np.random.default_rng(seed)
    flat, action = rng.normal(size=(B, EXTRACTOR.dim)), rng.normal(size=(B, 1))
    if backend == "torch":
        flat, action = torch.as_tensor(flat), torch.as_tensor(action)
    return RewardProgram(source).bind(CARD, backend=backend, mode=mode)(EXTRACTOR.view(flat), action)


def rejected_output(body: str, backend: str, rule: str, *words: str) -> None:
    with pytest.raises(RewardProgramError) as info:
        quiet(run, body, backend)
    text = str(info.value)
    assert info.value.rule == rule and "\n" not in text, text
    for word in words:
        assert word in text, text


BACKENDS = pytest.mark.parametrize("backend", ["numpy", "torch"])


@BACKENDS
@pytest.mark.parametrize("body, words", [
    ("return self.qpos", ["the total", "(8, 2)", "expected (8,)"]),
    ("return np.ones(3)", ["(3,)"]),
    ("return self.cart.position, {'reach': self.qpos}", ["component 'reach'", "(8, 2)"]),
    ("return self.cart.position, {'reach': np.zeros(2)}", ["component 'reach'"]),
], ids=["total-2d", "total-too-short", "component-2d", "component-short"])
def test_wrong_output_shape_is_rejected(backend: str, body: str, words: list[str]) -> None:
    rejected_output(body, backend, "output", *words)


@BACKENDS
@pytest.mark.parametrize("body, words", [
    ("return 'fast'", ["the total"]),
    ("return {'a': 1.0}", ["the total"]),
    ("return None", ["the total"]),
    ("return self.cart.position * 1j", ["the total", "complex"]),
    ("return self.cart.position, {'reach': 'far'}", ["component 'reach'"]),
    ("return self.cart.position, {'reach': self.cart.position * 1j}", ["component 'reach'", "complex"]),
    ("return self.cart.position, {1: self.cart.position}", ["component names must be strings"]),
    ("return self.cart.position, {}, 0.0", ["tuple of 3"]),
], ids=["str", "dict", "none", "complex", "component-str", "component-complex", "int-name", "three-tuple"])
def test_wrong_output_type_is_rejected(backend: str, body: str, words: list[str]) -> None:
    rejected_output(body, backend, "output", *words)


@BACKENDS
@pytest.mark.parametrize("body, words", [
    ("return self.cart.position * float('nan')", ["the total", "not finite"]),
    ("return np.where(self.cart.position > 0, np.inf, 0.0)", ["the total"]),
    ("return -np.inf", ["the total"]),
    ("return self.cart.position, {'reach': self.cart.position * float('nan')}", ["component 'reach'"]),
    ("return 0.0, {'ok': self.cart.position, 'bad': np.where(self.cart.position > 0, -np.inf, 1.0)}", ["component 'bad'"]),
], ids=["nan-total", "inf-some-rows", "scalar-inf", "nan-component", "inf-component"])
def test_non_finite_output_is_rejected_naming_it(backend: str, body: str, words: list[str]) -> None:
    rejected_output(body, backend, "non-finite", *words)


@BACKENDS
def test_non_finite_in_compat_mode_names_the_env(backend: str) -> None:
    rejected_output("if self.cart.position > 0:\n    return 1.0\nreturn float('nan')", backend, "non-finite", "(env ")


@BACKENDS
def test_scalar_total_and_components_broadcast(backend: str) -> None:
    total, comps = run("return 1.5, {'bonus': 2, 'flag': True}", backend)
    assert tuple(total.shape) == (B,) and np.asarray(total).tolist() == [1.5] * B
    assert np.asarray(comps["bonus"]).tolist() == [2.0] * B and np.asarray(comps["flag"]).tolist() == [1.0] * B


@BACKENDS
def test_integer_and_boolean_outputs_become_floats(backend: str) -> None:
    total, comps = run("return self.cart.position > 0, {'n': (self.cart.position > 0) * 3}", backend)
    assert np.asarray(total).dtype.kind == "f" and np.asarray(comps["n"]).dtype.kind == "f"


@BACKENDS
def test_components_must_not_change_between_calls(backend: str) -> None:
    source = ("def compute_dense_reward(self, action):\n    if self.cart.position[0] > 0:\n"
              "        return 0.0, {'a': 0.0}\n    return 0.0, {'b': 0.0}\n")
    reward = RewardProgram(source).bind(CARD, backend=backend, mode="batched")
    flat = np.zeros((B, EXTRACTOR.dim))
    flat[:, 0] = 1.0
    as_in = (lambda x: torch.as_tensor(x)) if backend == "torch" else (lambda x: x.copy())
    reward(EXTRACTOR.view(as_in(flat)), as_in(np.zeros((B, 1))))
    with pytest.raises(RewardProgramError, match=r"\[output\].*components changed"):
        reward(EXTRACTOR.view(as_in(-flat)), as_in(np.zeros((B, 1))))


def test_components_must_agree_across_envs_in_compat_mode() -> None:
    rejected_output("if self.cart.position > 0:\n    return 0.0, {'a': 0.0}\nreturn 0.0, {'b': 0.0}", "numpy",
                    "output", "components changed", "(env ")


def test_obs_program_needs_a_view_with_obs() -> None:
    reward = quiet(RewardProgram("def compute_dense_reward(self, action, obs):\n    return obs[0]\n").bind, CARD)
    with pytest.raises(RewardProgramError, match=r"\[entry\].*raw observation"):
        reward(EXTRACTOR.view(np.zeros((B, EXTRACTOR.dim))), np.zeros((B, 1)))


# -- loading ---------------------------------------------------------------------------------------------
def test_load_program_reads_files_and_source(tmp_path: Path) -> None:
    path = tmp_path / "r.py"
    path.write_text("def compute_dense_reward(self, action):\n    return 0.0\n")
    assert load_program(path).origin == str(path) and load_program(str(path)).source == path.read_text()
    one_line = load_program("def compute_dense_reward(self, action): return 0.0")
    assert one_line.origin == "inline" and one_line.params == ("self", "action")
    assert load_program(path.read_text()).sha256 == load_program(path).sha256
    with pytest.raises(UserError, match="not found"):
        load_program(tmp_path / "missing.py")


def test_reference_programs_are_marked_as_references() -> None:
    card = load_card("mujoco/Reacher-v5")
    program = reference_program(card)
    assert program.is_reference and program.origin == f"reference:{card.id}"


def test_compiled_reward_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        CompiledReward(lambda self, action: 0.0, mode="fast", card_id=None, backend="numpy")


# -- per-env (two-argument) programs are told apart at any batch size ---------------------------------
#: ways per-env code shows itself: (body using the drawer-open card, its per-env value as numpy over (B,))
PER_ENV = {
    "index": ("pos = self.obj1.position\n    return -abs(pos[2] - 0.1)",
              lambda s: -np.abs(s["obj1.position"][:, 2] - 0.1)),
    "math": ("return math.exp(-np.linalg.norm(self.robot.ee_position - self.obj1.position))",
             lambda s: np.exp(-np.linalg.norm(s["robot.ee_position"] - s["obj1.position"], axis=1))),
    "float": ("return float(self.robot.gripper_openness)", lambda s: s["robot.gripper_openness"].reshape(-1)),
    "if": ("if self.robot.gripper_openness > 0.5:\n        return 1.0\n    return 0.0",
           lambda s: (s["robot.gripper_openness"].reshape(-1) > 0.5).astype(float)),
    "sum": ("return -sum(abs(self.robot.ee_position - self.obj1.position))",
            lambda s: -np.abs(s["robot.ee_position"] - s["obj1.position"]).sum(axis=1)),
    "max": ("d = self.robot.ee_position - self.obj1.position\n    return -max(abs(d[0]), abs(d[1]), abs(d[2]))",
            lambda s: -np.abs(s["robot.ee_position"] - s["obj1.position"]).max(axis=1)),
}


@pytest.mark.parametrize("kind", sorted(PER_ENV))
@pytest.mark.parametrize("batch", [1, 3, 4, 7])
def test_per_env_programs_run_per_env_at_every_batch_size(kind: str, batch: int, states) -> None:
    """The sandbox trial's first call has one env; fields have 3 and 4 values: none of these may decide
    the mode by coincidence (before: ``pos[2]`` failed at batch 1 with "index 2 is out of bounds")."""
    card = load_card("metaworld/drawer-open-v3")
    body, want = PER_ENV[kind]
    program = RewardProgram(f"import math\nimport numpy as np\n\ndef compute_dense_reward(self, action):\n    {body}\n")
    s = states(card)
    extractor = StateExtractor(card)
    reward = program.bind(card)
    with pytest.warns(CompatModeWarning, match="per environment"):
        total, _ = reward(extractor.view(s.states[:batch].copy()), s.actions[:batch].copy())
    assert reward.mode == "scalar"
    fields = {k: s.states[:batch, a:b] for k, (a, b) in extractor.offsets.items()}
    np.testing.assert_allclose(np.asarray(total), want(fields), rtol=1e-12)


@pytest.mark.parametrize("kind", sorted(PER_ENV))
def test_the_sandbox_trial_accepts_per_env_programs(kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REWARDLAB_CACHE", str(tmp_path))
    card = load_card("metaworld/drawer-open-v3")
    source = f"import math\nimport numpy as np\n\ndef compute_dense_reward(self, action):\n    {PER_ENV[kind][0]}\n"
    report = check_program(source, card, n_states=16)
    assert report.ok and report.mode == "scalar", report.message


def test_a_batched_program_with_a_bug_gets_its_own_error_not_the_per_env_one() -> None:
    rng = np.random.default_rng(0)
    flat, action = rng.normal(size=(1, EXTRACTOR.dim)), rng.normal(size=(1, 1))
    program = RewardProgram("import numpy as np\ndef compute_dense_reward(self, action):\n"
                            "    return self.qpos[:, 0] + self.qpos[:, 5]\n")
    with pytest.raises(RewardProgramError, match="index 5 is out of bounds"):
        quiet(program.bind(CARD), EXTRACTOR.view(flat), action)


def test_a_cut_short_field_name_is_matched_to_the_field_it_begins() -> None:
    # found by a user: self.robot.ee_pos was answered "did you mean self.robot.qpos?"
    from rewardlab.cards import load_card

    program = RewardProgram("def compute_dense_reward(self, action):\n    return -abs(self.robot.ee_pos[:, 0])\n")
    with pytest.raises(RewardProgramError, match=r"self\.robot\.ee_pos \(did you mean self\.robot\.ee_position\?\)"):
        program.bind(load_card("metaworld/reach-v3"))


def test_stub_classes_keep_the_entity_names_capitals() -> None:
    # found by a user: the stub of ManiSkill's cubeA was `class Cubea`
    from rewardlab.cards import load_card, render_stubs

    stubs = render_stubs(load_card("maniskill/StackCube-v1"))
    assert "class CubeA:" in stubs and "class CubeB:" in stubs and "Cubea" not in stubs
