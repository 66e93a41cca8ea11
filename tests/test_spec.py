"""Experiment specs: loading, validation errors as one clear line, trial expansion."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from rewardlab.config import Budget, Evaluation, TrainConfig
from rewardlab.errors import UserError
from rewardlab.runs.spec import ExperimentSpec, TrialSpec, load_spec, parse_spec
from rewardlab.sources import EnvSource, FileSource

TASK = "mujoco/InvertedPendulum-v5"
DROP = object()  # an override that removes the field
PROGRAM = '''import numpy as np

def compute_dense_reward(self, action):
    upright = 1.0 - np.abs(self.pole.angle)
    return upright, {"upright": upright}
'''


def _spec(**overrides: object) -> dict:
    data: dict = {
        "name": "tiny",
        "tasks": [TASK],
        "rewards": ["env", "reference"],
        "algorithms": ["ppo"],
        "seeds": [0, 1],
        "budget": {"steps": 2048},
    }
    data.update(overrides)
    return data


def _write(tmp_path: Path, data: object, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_minimal_spec_loads_with_defaults(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, _spec()))
    assert isinstance(spec, ExperimentSpec)
    assert spec.workers == 2
    assert spec.evaluation.episodes == 5 and spec.evaluation.every is None
    assert [r.name for r in spec.rewards] == ["env", "reference"]


def test_trials_expand_the_product_with_stable_keys(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, _spec(algorithms=["ppo", "sac"], evaluation={"episodes": 2, "every": 512})))
    trials = spec.trials()
    assert len(trials) == 1 * 2 * 2 * 2
    config = TrainConfig(algo="ppo", seed=0, budget=Budget(steps=2048), evaluation=Evaluation(episodes=2, every=512))
    assert trials[0] == TrialSpec(TASK, EnvSource(), config)
    assert trials[0].key == "mujoco/InvertedPendulum-v5|env|ppo|0"
    assert [t.key for t in trials] == [t.key for t in load_spec(tmp_path / "spec.yaml").trials()]
    assert len({t.dir_name for t in trials}) == len(trials)
    assert "/" not in trials[0].dir_name and "|" not in trials[0].dir_name


def test_program_paths_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    (tmp_path / "rewards").mkdir()
    (tmp_path / "rewards" / "upright.py").write_text(PROGRAM)
    (tmp_path / "specs").mkdir()
    data = _spec(rewards=["../rewards/upright.py", {"name": "named", "path": "../rewards/upright.py"}])
    spec = load_spec(_write(tmp_path / "specs", data))
    program = str((tmp_path / "rewards" / "upright.py").resolve())
    assert spec.rewards == [FileSource(name="upright", path=program), FileSource(name="named", path=program)]
    assert spec.trials()[0].reward == FileSource(name="upright", path=program)
    assert spec.trials()[0].key == f"{TASK}|upright|ppo|0"


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"colour": "red"}, "'colour'", "unknown field"),
        ({"budget": {"steps": 10, "epochs": 3}}, "'budget.epochs'", "unknown field"),
        ({"budget": {"step": 2048}}, "'budget.step'", "unknown field"),  # the typo, not the missing 'steps'
        ({"budget": {"steps": "lots"}}, "'budget.steps'", "valid integer"),
        ({"budget": DROP}, "'budget'", "missing required field"),
        ({"budget": None}, "'budget'", "should be a mapping"),
        ({"seeds": []}, "'seeds'", "at least one"),
        ({"seeds": [0, "one"]}, "'seeds.1'", "valid integer"),
        ({"tasks": ["mujoco/InvertedPendulum-v4"]}, "'tasks.0'", "unknown env id"),
        ({"tasks": TASK}, "'tasks'", "valid list"),
        ({"algorithms": ["ppo", "a2c"]}, "'algorithms'", "unknown algorithm 'a2c' for trainer 'sb3'"),
        ({"trainer": "tabulr"}, "'trainer'", "unknown trainer 'tabulr'; did you mean 'tabular'"),
        ({"seeds": [0, 2**32]}, "'seeds.1'", "less than or equal to 4294967295"),
        ({"seeds": [-1]}, "'seeds.0'", "greater than or equal to 0"),
        ({"budget": {"steps": 0}}, "'budget.steps'", "greater than 0"),
        ({"budget": {"steps": 10**13}}, "'budget.steps'", "less than or equal to"),
        ({"evaluation": {"episodes": 0}}, "'evaluation.episodes'", "greater than 0"),
        ({"rewards": [{"name": "s", "shaper": {"name": "nope"}}]}, "'rewards.0.shaper.name'", "unknown shaper 'nope'"),
        ({"rewards": ["env", "missing.py"]}, "'rewards.1.path'", "does not exist"),
        ({"rewards": [{"name": "x"}]}, "'rewards.0'", "a reward source is"),
        ({"rewards": [7]}, "'rewards.0'", "reward source"),
        ({"rewards": ["env", "env"]}, "", "more than once"),
        ({"name": "has space"}, "'name'", "letters, digits"),
        ({"workers": 0}, "'workers'", "greater than 0"),
        ({"evaluation": {"episodes": 2, "every": -5}}, "'evaluation.every'", "greater than 0"),
    ],
)
def test_bad_spec_is_one_clear_line(tmp_path: Path, overrides: dict, field: str, problem: str) -> None:
    path = _write(tmp_path, {k: v for k, v in {**_spec(), **overrides}.items() if v is not DROP})
    with pytest.raises(UserError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"spec {path}: ")
    assert field in message and problem in message, message


def test_reference_without_a_reference_file_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rewardlab.cards as cards

    card = tmp_path / "Pendulum.yaml"
    card.write_text(cards.card_index()[TASK].read_text())  # the same card, no .py beside it
    monkeypatch.setattr(cards, "card_index", lambda: {TASK: card})
    with pytest.raises(UserError, match="'reference' needs a hand-written reference reward"):
        load_spec(_write(tmp_path, _spec()))


@pytest.mark.parametrize(
    ("text", "problem"),
    [("name: [unclosed", "not valid YAML"), ("- a\n- b\n", "must be a mapping"), ("", "must be a mapping")],
)
def test_unreadable_spec_file_is_one_line(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem) as info:
        load_spec(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_spec_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.yaml.*does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_several_problems_are_counted_on_the_same_line() -> None:
    with pytest.raises(UserError, match=r"\(and 1 more problem\)$"):
        parse_spec({**_spec(), "colour": "red", "workers": 0}, "x.yaml")


def test_every_source_form_parses(tmp_path: Path) -> None:
    (tmp_path / "upright.py").write_text(PROGRAM)
    spec = load_spec(_write(tmp_path, _spec(rewards=[
        "env", "reference", "upright.py", {"name": "inline", "source": PROGRAM},
        {"name": "gen", "generate": {"samples": 1, "rounds": 1, "probe_steps": 0}},
        {"name": "shaped", "base": "upright.py", "shaper": {"name": "pbrs", "potential": "upright.py"}},
    ])))
    kinds = [r.kind for r in spec.rewards]
    assert kinds == ["env", "reference", "file", "inline", "generated", "shaped"]
    gen = spec.rewards[4]
    assert gen.generate.samples == 1 and gen.generate.temperature == 0.7  # the one GenerationConfig's defaults


def test_ten_thousand_seeds_expand_and_a_repeat_among_them_is_found(tmp_path: Path) -> None:
    """(The duplicate check and the expansion are linear: a quadratic form made this stall for a minute.)"""
    spec = parse_spec(_spec(seeds=list(range(10_000))), "x.yaml")
    trials = spec.trials()
    assert len(trials) == 20_000 and len({t.key for t in trials}) == 20_000
    with pytest.raises(UserError, match="seeds lists 9999 more than once"):
        parse_spec(_spec(seeds=[*range(10_000), 9_999]), "x.yaml")


def test_binary_and_latin1_specs_are_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: x\x00\x01\x02")
    with pytest.raises(UserError, match="binary file"):
        load_spec(binary)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8 text"):
        load_spec(latin)


# -- per-task program files -----------------------------------------------------------------------------
TWO_TASKS = ["metaworld/drawer-open-v3", "metaworld/reach-v3"]


def _per_task_programs(tmp_path: Path, tasks: list[str]) -> None:
    from rewardlab.cards import load_card

    for task in tasks:
        card = load_card(task)
        folder = tmp_path / "reward_code" / card.task
        folder.mkdir(parents=True)
        (folder / "general.py").write_text(card.reference_reward_path().read_text())


def test_a_per_task_path_template_gives_each_task_its_own_program(tmp_path: Path) -> None:
    from rewardlab.cards import load_card
    from rewardlab.sources import resolve_source

    _per_task_programs(tmp_path, TWO_TASKS)
    spec = load_spec(_write(tmp_path, _spec(tasks=TWO_TASKS, algorithms=["sac"], rewards=[
        "reward_code/{task}/general.py", {"name": "t2r", "path": "reward_code/{task}/general.py"}])))
    assert [r.name for r in spec.rewards] == ["general", "t2r"]
    for task in TWO_TASKS:
        card = load_card(task)
        program = resolve_source(spec.rewards[1], card)
        assert program.source == card.reference_reward_path().read_text()
        assert program.origin == str(tmp_path / "reward_code" / card.task / "general.py")


def test_a_missing_per_task_file_is_one_line_naming_the_task(tmp_path: Path) -> None:
    _per_task_programs(tmp_path, TWO_TASKS[:1])
    with pytest.raises(UserError) as info:
        load_spec(_write(tmp_path, _spec(tasks=TWO_TASKS, algorithms=["sac"],
                                         rewards=[{"name": "t2r", "path": "reward_code/{task}/general.py"}])))
    text = str(info.value)
    assert "\n" not in text and "metaworld/reach-v3's program" in text
    assert str(tmp_path / "reward_code" / "reach-v3" / "general.py") in text


@pytest.mark.parametrize("path, words", [("rewards/{tsk}.py", "not {tsk}"), ("rewards/{}.py", "only {task} and {family}")])
def test_a_path_template_takes_only_task_and_family(tmp_path: Path, path: str, words: str) -> None:
    with pytest.raises(UserError, match=re.escape(words)):
        load_spec(_write(tmp_path, _spec(rewards=[{"name": "x", "path": path}])))


def test_the_family_placeholder_and_a_shaped_base_use_the_template(tmp_path: Path) -> None:
    from rewardlab.cards import load_card
    from rewardlab.sources import ShapedReward, resolve_source

    (tmp_path / "metaworld").mkdir()
    for task in TWO_TASKS:
        card = load_card(task)
        (tmp_path / card.family / f"{card.task}.py").write_text(card.reference_reward_path().read_text())
    spec = load_spec(_write(tmp_path, _spec(tasks=TWO_TASKS, algorithms=["sac"], rewards=[
        {"name": "shaped", "base": "{family}/{task}.py", "shaper": {"name": "pbrs", "potential": "phi.py"}}])))
    resolved = resolve_source(spec.rewards[0], load_card(TWO_TASKS[1]))
    assert isinstance(resolved, ShapedReward) and resolved.base.origin.endswith("metaworld/reach-v3.py")


_MOE = ("hyperparameters:\n  n_steps: 64\n  policy_kwargs:\n    features_extractor_class: moe\n"
        "    features_extractor_kwargs: {kwargs}\n")


@pytest.mark.parametrize(("spec_tail", "problem"), [
    # a shaper the learner cannot run: refused with the spec, not trial by trial at exit 1
    ("rewards: [{name: x, shaper: {name: explors, neural: true}}]\ntrainer: tabular\nalgorithms: [reinforce]\n"
     "tasks: [gridworld/chain]\n", "with neural: true runs with the sb3 trainer"),
    ("rewards: [{name: x, shaper: {name: explors, neural: true}}]\nalgorithms: [ppo, dqn]\ntasks: [gridworld/chain]\n",
     "needs an on-policy learner (ppo or reinforce); dqn learns off-policy"),
    ("rewards: [{name: x, shaper: {name: sors}}]\nalgorithms: [ppo]\ntasks: [gridworld/chain]\n",
     "runs with the tabular trainer only"),
    # MoE settings: a key or a value the extractor or its router refuses
    ("rewards: [env]\nalgorithms: [ppo]\ntasks: [mujoco/InvertedPendulum-v5]\n"
     + _MOE.format(kwargs="{router: topk, n_experts: 4, router_kwargs: {k: 5}}"), "needs 1 <= k <= E (got k=5, E=4)"),
    ("rewards: [env]\nalgorithms: [ppo]\ntasks: [mujoco/InvertedPendulum-v5]\n"
     + _MOE.format(kwargs="{router: topk, n_expert: 4}"), "not 'n_expert' (did you mean 'n_experts'?)"),
    ("rewards: [env]\nalgorithms: [ppo]\ntasks: [mujoco/InvertedPendulum-v5]\n"
     + _MOE.format(kwargs="{router: top_k}"), "unknown router 'top_k'; did you mean 'topk'?"),
    ("rewards: [env]\nalgorithms: [ppo]\ntasks: [mujoco/InvertedPendulum-v5]\n"
     "hyperparameters:\n  policy_kwargs: {features_extractor_class: mooe}\n", "did you mean 'moe'"),
])
def test_settings_no_trial_could_run_are_refused_before_the_run_exists(tmp_path: Path, spec_tail: str,
                                                                       problem: str) -> None:
    from rewardlab.runs.runner import run_experiment

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: refused\nseeds: [0]\nbudget: {steps: 2048}\nworkers: 1\n" + spec_tail)
    with pytest.raises(UserError, match=re.escape(problem)):
        run_experiment(spec, out=tmp_path / "runs", workers=1)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run, no store
