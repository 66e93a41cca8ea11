"""ManiSkill3 tasks (SAPIEN physics): cards read the task's actors and the Panda agent as batched
torch tensors, on the CPU (one env per process, SB3 through ManiSkill's ``CPUGymWrapper``) or on the
GPU (``physx_cuda``, thousands of envs in one process, :mod:`rewardlab.training.gpu`).

**Physics-only mode without a render device.** ManiSkill builds its actors with
``sapien.render.RenderMaterial`` even when nothing is rendered, and SAPIEN refuses to create one when
no Vulkan device exists (``RuntimeError: failed to find a rendering device``; Mesa's lavapipe does not
help, see the platform notes). :func:`physics_only_workaround` therefore replaces the material class by
an inert one -- only when creating a real material fails, so a machine with a GPU renders as usual.
ManiSkill already skips its render system when ``can_render()`` is False; state observations and
physics are unaffected, images and videos are impossible.

Cards name fields as Text2Reward's ManiSkill prompts did (``robot.ee_position``, ``obj.position``,
``cubeA.position``, ``goal_position``); their sources are accessors on the unwrapped env
(``env.agent.tcp.pose.p``, ``env.cube.pose.p``), which return ``(B, ...)`` tensors.
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from rewardlab.cards import EnvCard
from rewardlab.errors import UserError
from rewardlab.sims.base import Simulator

#: The settings every card's env is made with unless its ``make_kwargs`` say otherwise: state
#: observations, Text2Reward's end-effector delta-pose control (7-d actions in [-1, 1]) and ManiSkill's
#: dense reward divided by its maximum (the "env" reward source).
DEFAULTS: dict[str, Any] = {"obs_mode": "state", "control_mode": "pd_ee_delta_pose", "reward_mode": "normalized_dense"}

_patch_lock = threading.Lock()
_patched: bool | None = None  # None: not decided yet; True: the inert material is in place


class _InertRenderMaterial:
    """Stands in for ``sapien.render.RenderMaterial`` when no render device exists: accepts any
    arguments and properties, renders nothing (physics never reads it)."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)


def physics_only_workaround() -> bool:
    """Make ManiSkill's physics-only (state) envs work on a machine without a render device.

    Tries to create a real ``sapien.render.RenderMaterial``; when that fails for want of a render
    device, replaces the class (in ``sapien.render``, ``sapien.pysapien.render`` and every loaded
    sapien or mani_skill module that imported it by name) by an inert stand-in, once per process.
    With a render device nothing is changed.

    :return: True when the workaround is in place (no render device), False otherwise
    :raises UserError: ManiSkill3 (``mani-skill``) is not installed
    """
    global _patched
    with _patch_lock:
        if _patched is not None:
            return _patched
        # SAPIEN falls back to its bundled libvulkan (said at import); ManiSkill's tasks log a warning per
        # actor built without an initial pose. Neither is the user's to act on.
        warnings.filterwarnings("ignore", message="Failed to find system libvulkan")
        logging.getLogger("mani_skill").setLevel(logging.ERROR)
        try:
            import sapien
            import sapien.wrapper.urdf_loader  # noqa: F401 - imports RenderMaterial by name
        except ImportError:
            raise UserError("ManiSkill3 is not installed; install it with `pip install rewardlab[maniskill]` "
                            "(keep your torch: `pip install mani-skill torch==$(python -c 'import torch;"
                            "print(torch.__version__)')`)") from None
        try:
            sapien.render.RenderMaterial()
            _patched = False
        except RuntimeError as e:
            if "render" not in str(e).lower() and "device" not in str(e).lower():
                raise
            _real_material.append(sapien.render.RenderMaterial)
            _patched = True
        if _patched:
            _replace_material()
        return _patched


_real_material: list[type] = []


def _replace_material() -> None:
    """Point every loaded sapien / mani_skill module that imported ``RenderMaterial`` by name (SAPIEN's
    URDF loader, ManiSkill's MJCF loader) at the inert class; run again after new imports."""
    import sys

    import sapien

    real = _real_material[0]
    sapien.render.RenderMaterial = _InertRenderMaterial
    sapien.pysapien.render.RenderMaterial = _InertRenderMaterial
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in ("sapien", "mani_skill") and getattr(module, "RenderMaterial", None) is real:
            module.RenderMaterial = _InertRenderMaterial  # type: ignore[attr-defined]


def _register_envs() -> None:
    physics_only_workaround()
    import mani_skill.envs  # noqa: F401 - registers the tasks with gymnasium

    if _patched:
        _replace_material()  # modules imported with the tasks


def make_raw_env(card: EnvCard, num_envs: int = 1, device: str | None = None, **overrides: Any) -> Any:
    """The ManiSkill env of a card, unwrapped of rewardlab's conventions: batched torch observations
    ``(num_envs, obs_dim)``, rewards ``(num_envs,)``, ``card.episode_steps`` per episode.

    :param num_envs: parallel envs; more than one needs a CUDA device (``physx_cuda``)
    :param device: ``cuda``/``cuda:N`` for GPU physics, ``cpu`` or None for ``physx_cpu``
    :param overrides: ``gym.make`` keyword arguments replacing the card's and :data:`DEFAULTS`
    :raises UserError: several envs without a CUDA device
    """
    _register_envs()
    gpu = device is not None and str(device).startswith("cuda")
    if num_envs < 1:
        raise UserError(f"num_envs must be at least 1, got {num_envs}")
    if num_envs > 1 and not gpu:
        raise UserError(f"{num_envs} ManiSkill envs in one process need a CUDA device (physx_cuda); on the CPU "
                        "ManiSkill runs one env per process")
    kwargs = {**DEFAULTS, **card.make_kwargs, **overrides}
    kwargs.setdefault("sim_backend", "physx_cuda" if gpu else "physx_cpu")
    if not gpu:
        kwargs.setdefault("render_backend", "none")
    return gym.make(card.env_id, num_envs=num_envs, max_episode_steps=card.episode_steps, **kwargs)


class GraspMemo:
    """Computes ``agent.is_grasping(obj)`` once per physics state: ManiSkill's own ``evaluate()`` calls it
    in every step and reset, and the cards' ``robot.is_grasping`` field asks again for the same state. On
    the CPU it is a Python contact query (most of a step's state reading), so the answer is kept until
    :meth:`forget` and handed out again. Whoever steps or resets the env calls :meth:`forget` first:
    only ``step`` and ``reset`` move the physics of these envs.

    :param env: a ManiSkill env (its ``unwrapped.agent`` is patched)
    """

    def __init__(self, env: Any):
        self._answers: dict[tuple[Any, ...], Any] = {}
        agent = env.unwrapped.agent
        query = agent.is_grasping

        def is_grasping(obj: Any, min_force: float = 0.5, max_angle: float = 85) -> Any:
            key = (id(obj), min_force, max_angle)
            if key not in self._answers:
                self._answers[key] = query(obj, min_force, max_angle)
            return self._answers[key]

        agent.is_grasping = is_grasping

    def forget(self) -> None:
        self._answers.clear()


class _GraspMemoWrapper(gym.Wrapper):
    """:class:`GraspMemo` for a gymnasium env: forgets before every ``step`` and ``reset``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.memo = GraspMemo(env)

    def step(self, action: Any) -> Any:
        self.memo.forget()
        return self.env.step(action)

    def reset(self, **kwargs: Any) -> Any:
        self.memo.forget()
        return self.env.reset(**kwargs)


class ManiSkillSimulator(Simulator):
    """ManiSkill3 on the CPU for SB3: one ``physx_cpu`` env behind ``CPUGymWrapper`` (numpy
    observations ``(obs_dim,)``, float rewards); sim fields are read from the unwrapped env."""

    name = "maniskill"
    packages = ("mani_skill", "sapien", "gymnasium")

    def make_env(self, card: EnvCard, seed: int | None = None, render_mode: str | None = None) -> gym.Env:
        if render_mode is not None and physics_only_workaround():
            raise UserError(f"env card {card.label}: rendering ({render_mode}) needs a render device, and this "
                            "machine has none (ManiSkill runs physics only here)")
        from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper

        env = _GraspMemoWrapper(CPUGymWrapper(make_raw_env(card, render_mode=render_mode)))
        if seed is not None:
            env.reset(seed=seed)
            env.action_space.seed(seed)
        return env

    def known_env_ids(self) -> list[str]:
        _register_envs()
        from mani_skill.utils.registration import REGISTERED_ENVS

        return sorted(REGISTERED_ENVS)


# -- batched torch state -----------------------------------------------------------------------------
class TorchStateReader:
    """Reads a card's fields from a batched ManiSkill env as one flat torch tensor ``(B, D)`` on the
    env's device, laid out as the :class:`~rewardlab.state.StateExtractor` of the same fields lays
    out its numpy states (so ``extractor.view(flat)`` is the program's ``self``). Nothing leaves the
    device: this is the GPU path's state capture.

    :param extractor: the card's extractor (its fields, in its order)
    :param dtype: the states' torch dtype (float32 on the GPU; float64 to compare with numpy)
    """

    def __init__(self, extractor: Any, dtype: Any = None):
        import builtins

        import torch

        self.extractor = extractor
        self.dtype = dtype or torch.float32
        self._parts: list[tuple[str, Any]] = []  # ("obs", field spec) or ("sim", compiled accessor)
        for name, spec in extractor.fields.items():
            if spec.kind == "obs":
                self._parts.append(("obs", spec))
            else:
                fn = eval(  # noqa: S307 - card sources, checked by FieldSpec (attribute chains only)
                    compile(f"lambda env, np: {spec.source}", f"<card {extractor.card.id}: {name}>", "eval"),
                    {"__builtins__": builtins})
                self._parts.append(("sim", fn))

    def read(self, env: Any, obs: Any) -> Any:
        """The flat states ``(B, D)`` of the batch's current state.

        :param env: the ManiSkill env (wrappers are looked through)
        :param obs: its batched observation ``(B, obs_dim)`` tensor (for ``obs[...]`` sources)
        """
        import torch

        base = getattr(env, "unwrapped", env)
        obs = obs.reshape(obs.shape[0], -1)
        batch = int(obs.shape[0])
        columns = []
        for kind, part in self._parts:
            if kind == "obs":
                value = obs[:, part.obs_columns(int(obs.shape[1]))]
            else:
                value = torch.as_tensor(part(base, np), device=obs.device)
            columns.append(value.reshape(batch, -1).to(self.dtype))
        if not columns:
            return torch.zeros((batch, 0), dtype=self.dtype, device=obs.device)
        return torch.cat(columns, dim=1)


def state_layout(card: EnvCard, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The columns of ManiSkill's flat ``obs_mode="state"`` observation, measured from the live env.

    ManiSkill builds the state observation by flattening the ``obs_mode="state_dict"`` dictionary in its
    insertion order (``mani_skill.utils.common.flatten_state_dict``: each leaf ``(B, ...)`` becomes
    ``(B, n)``, a ``(B,)`` leaf one column, booleans 0/1). This makes the card's env in ``state_dict``
    mode, resets it with ``seed`` and walks the dictionary the same way.

    :return: the entries in column order, each ``{"name": "agent.qpos", "columns": [0, ..., 8],
        "values": float64 (n,) at the reset}``, and the card's simulator fields read at that same state
        (``{field name: float64 values}``; a source that fails is left out)
    :raises UserError: ManiSkill is not installed
    """
    import builtins

    import torch

    env = make_raw_env(card, obs_mode="state_dict")
    try:
        obs, _ = env.reset(seed=seed)
        entries: list[dict[str, Any]] = []
        pos = 0

        def walk(node: dict[str, Any], prefix: str) -> None:
            nonlocal pos
            for key, value in node.items():
                if isinstance(value, dict):
                    walk(value, f"{prefix}{key}.")
                    continue
                flat = torch.as_tensor(value).reshape(1, -1)[0].to(torch.float64).cpu().numpy()
                if flat.size:
                    entries.append({"name": prefix + key, "columns": list(range(pos, pos + flat.size)), "values": flat})
                    pos += flat.size

        walk(obs, "")
        base = env.unwrapped
        fields: dict[str, np.ndarray] = {}
        for name, spec in card.fields().items():
            if spec.kind == "obs":
                continue
            try:
                fn = eval(  # noqa: S307 - card sources, checked by FieldSpec (attribute chains only)
                    compile(f"lambda env, np: {spec.source}", f"<card {card.id}: {name}>", "eval"),
                    {"__builtins__": builtins})
                fields[name] = torch.as_tensor(fn(base, np)).reshape(-1).to(torch.float64).cpu().numpy()
            except Exception:  # noqa: BLE001 - a field this state cannot give is simply not matched
                continue
    finally:
        env.close()
    return entries, fields


def has_cuda() -> bool:
    """Whether torch sees a CUDA device (GPU physics possible)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class ManiSkillBatch:
    """A card's ManiSkill env as the GPU trainer's batched env (:class:`rewardlab.training.gpu.BatchedEnv`):
    torch tensors on the simulator's device, the card's states read before envs that ended are reset
    (so a reward sees the terminal state), and only those envs reset.

    :param card: the task
    :param extractor: the fields to read (a program's and the success rule's)
    :param num_envs: parallel envs (more than one needs CUDA)
    :param device: ``cuda`` for ``physx_cuda``; ``cpu`` for ``physx_cpu`` with one env
    """

    def __init__(self, card: EnvCard, extractor: Any, num_envs: int, device: Any):
        import torch

        self.device = torch.device(device)
        self.env = make_raw_env(card, num_envs=num_envs, device=str(self.device))
        self.grasp = GraspMemo(self.env)
        self.num_envs = num_envs
        self.reader = TorchStateReader(extractor)
        self.obs_dim = int(np.prod(self.env.unwrapped.single_observation_space.shape))
        self.act_dim = int(np.prod(self.env.unwrapped.single_action_space.shape))
        self.final_obs: Any = None

    def _obs(self, obs: Any) -> Any:
        return obs.reshape(self.num_envs, -1).float().to(self.device)

    def reset(self, seed: int) -> Any:
        self.grasp.forget()
        obs, _ = self.env.reset(seed=seed)
        return self._obs(obs)

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
        import torch

        self.grasp.forget()
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs = self._obs(obs)
        states = self.reader.read(self.env, obs)
        self.final_obs = obs
        shape = (self.num_envs,)
        terminated = torch.as_tensor(terminated, device=self.device).reshape(shape).bool()
        truncated = torch.as_tensor(truncated, device=self.device).reshape(shape).bool()
        success = info.get("success", torch.zeros(shape, dtype=torch.bool))
        success = torch.as_tensor(success, device=self.device).reshape(shape).bool()
        reward = torch.as_tensor(reward, device=self.device).reshape(shape).float()
        done = terminated | truncated
        if bool(done.any()):
            idx = torch.nonzero(done).reshape(-1)
            self.grasp.forget()
            obs, _ = self.env.reset(options={"env_idx": idx})
            obs = self._obs(obs)
        return obs, states, reward, terminated, truncated, success

    def close(self) -> None:
        self.env.close()
