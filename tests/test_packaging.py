"""The wheel ships envs/, prompts/, agents/ and experiments/ (and the review page's templates), and an
installed copy finds them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rewardlab.resources import RESOURCE_NAMES, resource_dir

REPO = Path(__file__).resolve().parents[1]


def test_checkout_resources_resolve_to_the_repository() -> None:
    for name in RESOURCE_NAMES:
        assert resource_dir(name) == REPO / name


def test_installed_wheel_finds_its_data(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("rewardlab-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = dict(os.environ, PYTHONPATH=str(target))
    code = ("from rewardlab.resources import resource_dir; from rewardlab.cards import load_card;"
            "print(resource_dir('envs')); print(load_card('mujoco/Hopper-v5').reference_reward_path());"
            "print(resource_dir('experiments') / 'quickstart.yaml')")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    envs_dir, reference, quickstart = out.stdout.split()
    assert envs_dir == str(target / "rewardlab" / "_data" / "envs")
    assert Path(reference).is_file() and Path(reference).is_relative_to(target)
    assert Path(quickstart).is_file()
    assert (target / "rewardlab" / "review" / "templates" / "program.html").is_file()  # the review page's templates
