"""Rollout videos of trained policies, rendered offscreen once and cached beside the model.

A video is rendered in a child process (``python -m rewardlab.review.video``): MuJoCo picks its OpenGL
backend when it is first imported, from ``MUJOCO_GL``, and the server process has usually imported it
already. The child gets ``MUJOCO_GL=osmesa`` (software rendering, Debian's ``libosmesa6``) unless the
caller chose a backend that can work here: ``egl`` needs a GPU device (``/dev/dri`` or an NVIDIA device),
so on a CPU-only machine the Makefile's ``egl`` is replaced. OSMesa takes about 0.1-0.4 s a frame at
480x480, so videos are short (:data:`FRAMES` steps) and small (:data:`SIZE` pixels square).

The policy is the trial's saved SB3 model (``model.zip``, with ``vecnormalize.pkl`` when the preset
normalised observations), run deterministically on the card's env seeded like the first evaluation
episode; an episode that ends before :data:`FRAMES` steps is followed by the next. The file is WebM
(VP9 through the ffmpeg that ``imageio-ffmpeg`` ships), which every Chromium plays.

Whether a simulator can render here is decided before trying (:func:`render_problem`: ManiSkill needs a
render device), and a render that fails leaves :data:`FAILED_NAME` with its reason, so the page shows the
reason instead of retrying the renderer on every request.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from rewardlab.errors import UserError, one_line

#: Steps per video (at 25 frames a second: a few seconds).
FRAMES = 60
#: Width and height in pixels (a multiple of 16, what the encoder's macro blocks want).
SIZE = 192
FPS = 25
#: The cached video's name inside a trial directory.
VIDEO_NAME = "rollout.webm"
#: Seconds a render may take before it is given up (a hung GL context is no silent wait).
RENDER_TIMEOUT_S = 600.0
#: The file a failed render leaves in the trial directory, holding the reason: later requests answer it
#: at once instead of starting the renderer again (delete it to try again).
FAILED_NAME = "rollout.failed"
#: Simulators whose envs render through MuJoCo's OpenGL (``MUJOCO_GL``).
MUJOCO_SIMULATORS = ("mujoco", "metaworld")

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def gl_backend() -> str:
    """The MuJoCo OpenGL backend to render with: ``MUJOCO_GL`` when it can work on this machine, else
    ``osmesa`` (``egl`` without a GPU device fails to create a context)."""
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    has_gpu = Path("/dev/dri").exists() or Path("/dev/nvidia0").exists()
    if chosen in ("", "egl") and not has_gpu:
        return "osmesa"
    return chosen or "egl"


def has_gpu_device() -> bool:
    """Whether this machine has a GPU device node (a DRM render node or an NVIDIA device)."""
    return Path("/dev/dri").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


@functools.lru_cache(maxsize=1)
def osmesa_installed() -> bool:
    """Whether the OSMesa library is installed (asked once: ``find_library`` runs ``ldconfig``)."""
    import ctypes.util

    return ctypes.util.find_library("OSMesa") is not None


def render_problem(simulator: str) -> str | None:
    """Why policies on ``simulator``'s envs cannot be rendered on this machine, in one line (``None``:
    they can, as far as can be told without trying).

    ManiSkill renders with SAPIEN, which needs a Vulkan render device; on a machine without a GPU its envs
    run physics-only (:func:`rewardlab.sims.maniskill.physics_only_workaround`), so there is nothing to
    film. MuJoCo-based envs render with OSMesa there, which needs Debian's ``libosmesa6``.
    """
    if simulator == "maniskill":
        if not has_gpu_device():
            return ("ManiSkill renders through SAPIEN, which needs a Vulkan render device (a GPU); this machine has "
                    "none, so ManiSkill policies train and evaluate physics-only here and have no video")
        return None
    if simulator in MUJOCO_SIMULATORS:
        if gl_backend() == "osmesa" and not osmesa_installed():
            return ("MuJoCo renders here with MUJOCO_GL=osmesa (no GPU device), and OSMesa is not installed "
                    "(apt-get install libosmesa6)")
        return None
    if simulator in ("gridworld", "household"):
        return f"{simulator} envs draw no images (text or tabular states only), so there is no video"
    return None


def cached_failure(trial_dir: Path) -> str | None:
    """The reason an earlier render of this trial failed (``None``: none failed)."""
    marker = Path(trial_dir) / FAILED_NAME
    if not marker.is_file():
        return None
    return marker.read_text().strip() or "an earlier render failed"


def has_model(trial_dir: Path) -> bool:
    """Whether ``trial_dir`` holds a trained SB3 model to render."""
    return (Path(trial_dir) / "model.zip").is_file()


def rollout_video(trial_dir: Path, card: str, algo: str, seed: int = 0, frames: int = FRAMES, size: int = SIZE,
                  simulator: str | None = None) -> Path:
    """The trial's rollout video, rendered on first use and cached as ``trial_dir/rollout.webm``; a render
    that fails leaves :data:`FAILED_NAME` with the reason, answered at once by later calls.

    :param trial_dir: a trial directory with ``model.zip`` (and ``vecnormalize.pkl`` if normalised)
    :param card: the env card id or path the model was trained on
    :param algo: ``ppo``, ``sac`` or ``td3``
    :param seed: the training seed (the episode is the first evaluation episode's)
    :param frames: env steps to render (the episode may end sooner)
    :param size: width and height in pixels
    :param simulator: the card's simulator (``None``: read from the card); it decides whether rendering
        can work here (:func:`render_problem`) and which setting an error names
    :raises UserError: no model in the directory, this machine cannot render the simulator, or rendering
        failed now or before (the line says why)
    """
    trial_dir = Path(trial_dir)
    target = trial_dir / VIDEO_NAME
    if not has_model(trial_dir):
        raise UserError(f"no trained model in {trial_dir} to render")
    if simulator is None:
        from rewardlab.cards import load_card

        simulator = load_card(card).simulator
    with _locks_guard:
        lock = _locks.setdefault(target, threading.Lock())
    with lock:  # two requests for one video render it once
        if target.is_file() and target.stat().st_size > 0:
            return target
        problem = render_problem(simulator)
        if problem is not None:
            raise UserError(f"no video of {trial_dir.name}: {problem}")
        failed = cached_failure(trial_dir)
        if failed is not None:
            raise UserError(f"{failed} (delete {FAILED_NAME} in the trial directory to try again)")
        partial = target.with_suffix(".part.webm")
        backend = gl_backend()
        env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend, OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "rewardlab.review.video", str(trial_dir), card, algo, str(partial),
               "--seed", str(seed), "--frames", str(frames), "--size", str(size)]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            partial.unlink(missing_ok=True)
            raise UserError(_remember(trial_dir, f"rendering {trial_dir.name} took longer than "
                                                 f"{RENDER_TIMEOUT_S:.0f} s; gave up")) from None
        if done.returncode != 0 or not partial.is_file():
            partial.unlink(missing_ok=True)
            lines = [ln for ln in (done.stderr or "").strip().splitlines() if ln.strip()]
            how = f"with MUJOCO_GL={backend}" if simulator in MUJOCO_SIMULATORS else f"on {simulator}"
            raise UserError(_remember(trial_dir, f"rendering {trial_dir.name} failed {how}: "
                                                 f"{one_line(lines[-1]) if lines else 'exit ' + str(done.returncode)}"))
        partial.replace(target)
        return target


def _remember(trial_dir: Path, reason: str) -> str:
    """Write ``reason`` as the trial's failed-render marker (best effort: a read-only run still answers)
    and return it."""
    try:
        (trial_dir / FAILED_NAME).write_text(reason + "\n")
    except OSError:
        pass
    return reason


def _render(trial_dir: Path, card_id: str, algo: str, out: Path, seed: int, frames: int, size: int) -> None:
    """Run the policy and write the frames (in the child process; ``MUJOCO_GL`` is already set)."""
    from rewardlab.runtime import limit_threads

    limit_threads()
    import imageio.v2 as imageio
    import numpy as np
    from stable_baselines3 import DQN, PPO, SAC, TD3
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rewardlab.cards import load_card
    from rewardlab.sims.base import make_env
    from rewardlab.training.evaluation import eval_seed

    card = load_card(card_id)
    algorithms: dict[str, Any] = {"ppo": PPO, "sac": SAC, "td3": TD3, "dqn": DQN}
    model = algorithms[algo].load(str(trial_dir / "model.zip"), device="cpu")
    first = eval_seed(seed)
    env = make_env(card, seed=first, render_mode="rgb_array")
    inner: Any = env.unwrapped
    if hasattr(inner, "width"):  # gymnasium MuJoCo envs: the renderer's size, before its first frame
        inner.width = inner.height = size
        renderer = getattr(inner, "mujoco_renderer", None)
        if renderer is not None:
            renderer.width = renderer.height = size
    venv: Any = DummyVecEnv([lambda: env])
    venv.seed(first)
    if (trial_dir / "vecnormalize.pkl").is_file():
        venv = VecNormalize.load(str(trial_dir / "vecnormalize.pkl"), venv)
        venv.training, venv.norm_reward = False, False
    obs = venv.reset()
    images = []
    for _ in range(frames):
        frame = env.render()
        if frame is None:
            raise UserError(f"{card.id} renders no image")
        images.append(_fit(np.asarray(frame), size))
        action, _ = model.predict(obs, deterministic=True)
        obs, _, _, _ = venv.step(action)  # an episode that ends starts the next one: the video shows each
    venv.close()
    writer: Any
    with imageio.get_writer(out, format="FFMPEG", mode="I", fps=FPS, codec="libvpx-vp9",
                            output_params=["-b:v", "0", "-crf", "40", "-deadline", "realtime"],
                            macro_block_size=16) as writer:
        for image in images:
            writer.append_data(image)


def _fit(frame: object, size: int) -> object:
    """``frame`` (H, W, 3) or (1, H, W, 3), uint8, an array or a tensor, cut or padded to ``size`` x ``size``
    (envs without a size setting)."""
    import numpy as np

    if hasattr(frame, "cpu"):  # ManiSkill renders torch tensors (on the GPU where it can render at all)
        frame = frame.cpu().numpy()
    image = np.asarray(frame, dtype=np.uint8)
    if image.ndim == 4:  # a batch of one env's frames: (1, H, W, 3)
        image = image[0]
    image = image[:size, :size, :3]
    if image.shape[:2] != (size, size):
        padded = np.zeros((size, size, 3), dtype=np.uint8)
        padded[: image.shape[0], : image.shape[1]] = image
        image = padded
    return image


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="render a trained policy's rollout (used by the review page)")
    parser.add_argument("trial_dir", type=Path)
    parser.add_argument("card")
    parser.add_argument("algo", choices=("ppo", "sac", "td3"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--size", type=int, default=SIZE)
    args = parser.parse_args(argv)
    if args.frames < 1 or args.size < 16:
        parser.error("--frames must be at least 1 and --size at least 16")
    try:
        _render(args.trial_dir, args.card, args.algo, args.out, args.seed, args.frames, args.size)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
