"""The MetaWorld adapter's goal sets: ``mt1_tasks`` is ``metaworld.MT1``'s tasks, served from memory,
then from the disk cache, and the env that drew them (reused by the next ``make_env``) behaves exactly
like a newly made one."""

from __future__ import annotations

import pickle
import types
from pathlib import Path

import numpy as np
import pytest

metaworld = pytest.importorskip("metaworld")

from rewardlab.sims import metaworld as mw  # noqa: E402

# drawer-open: one draw per goal; pick-place and box-close: rejection loops (box-close also steps MuJoCo
# directly in its reset); lever-pull: its reset reads body frames (needs the kinematics)
TASKS = [("drawer-open-v3", 0), ("pick-place-v3", 3), ("box-close-v3", 1), ("lever-pull-v3", 0)]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty goal cache and an empty memo, before and after."""
    monkeypatch.setenv("REWARDLAB_CACHE", str(tmp_path))
    mw.mt1_tasks.cache_clear()
    yield tmp_path
    mw.mt1_tasks.cache_clear()
    spare = getattr(mw._handoff, "spare", None)
    if spare is not None:
        spare[1].close()
    mw._handoff.spare = None


def _decoded(tasks: tuple | list) -> list[tuple[str, dict]]:
    return [(t.env_name, pickle.loads(t.data)) for t in tasks]


def _assert_same_tasks(got: tuple | list, want: tuple | list) -> None:
    assert len(got) == len(want) == mw.N_GOALS
    for (name_g, data_g), (name_w, data_w) in zip(_decoded(got), _decoded(want), strict=True):
        assert name_g == name_w
        assert data_g.keys() == data_w.keys()
        for key, value in data_w.items():
            if isinstance(value, np.ndarray):
                assert data_g[key].dtype == value.dtype and np.array_equal(data_g[key], value), key
            else:
                assert data_g[key] == value, key


@pytest.mark.parametrize(("env_id", "seed"), TASKS)
def test_mt1_tasks_equal_metaworld_mt1(cache: Path, env_id: str, seed: int) -> None:
    before = np.random.get_state()[1].copy()
    got = mw.mt1_tasks(env_id, seed)
    assert np.array_equal(np.random.get_state()[1], before)  # numpy's global generator is put back, as MT1 does
    _assert_same_tasks(got, metaworld.MT1(env_id, seed=seed).train_tasks)


def test_second_call_is_served_from_the_disk_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = mw.mt1_tasks("drawer-open-v3", 0)
    assert list((cache / "metaworld-goals").glob("*drawer-open-v3-0.npy"))
    assert mw.mt1_tasks("drawer-open-v3", 0) is first  # the in-process memo

    def nothing_drawn(*args: object, **kwargs: object) -> None:
        raise AssertionError("the goals were drawn again")

    mw.mt1_tasks.cache_clear()
    monkeypatch.setattr(metaworld, "MT1", nothing_drawn)
    monkeypatch.setattr(mw, "_draw_goals", nothing_drawn)
    _assert_same_tasks(mw.mt1_tasks("drawer-open-v3", 0), first)


def _rollout(env: object, seed: int, steps: int = 160) -> list[np.ndarray]:
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        data = env.unwrapped.data
        out.append(np.concatenate([obs, [reward], data.qpos, data.qvel]))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(obs)
    env.close()
    return out


@pytest.mark.parametrize(("env_id", "seed"), [("drawer-open-v3", 0), ("pick-place-v3", 3)])
def test_env_that_drew_the_goals_behaves_like_a_new_one(cache: Path, env_id: str, seed: int) -> None:
    sim = mw.MetaWorldSimulator()
    card = types.SimpleNamespace(env_id=env_id, episode_steps=100, make_kwargs={})  # what make_env reads
    reused = sim.make_env(card, seed=seed)  # cold: draws the goals, then wraps the env that drew them
    assert getattr(mw._handoff, "spare", None) is None  # taken
    fresh = sim.make_env(card, seed=seed)  # goals from the memo, a newly made env
    assert fresh.unwrapped is not reused.unwrapped
    got, want = _rollout(reused, seed), _rollout(fresh, seed)  # an episode end and a second goal inside
    assert len(got) == len(want)
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_spare_env_is_not_used_with_other_constructor_arguments(cache: Path) -> None:
    sim = mw.MetaWorldSimulator()
    card = types.SimpleNamespace(env_id="reach-v3", episode_steps=50, make_kwargs={"reward_function_version": "v1"})
    mw.mt1_tasks("reach-v3", 0)
    key, spare = mw._handoff.spare
    assert key == ("reach-v3", 0)
    env = sim.make_env(card, seed=0)
    assert env.unwrapped is not spare and env.unwrapped.reward_function_version == "v1"
    assert getattr(mw._handoff, "spare", None) is None
    env.close()


def test_spare_env_serves_only_its_own_task_and_seed(cache: Path) -> None:
    mw.mt1_tasks("reach-v3", 0)
    assert mw._take_spare(("reach-v3", 1)) is None and mw._take_spare(("push-v3", 0)) is None
    spare = mw._take_spare(("reach-v3", 0))
    assert spare is not None and mw._take_spare(("reach-v3", 0)) is None
    spare.close()
