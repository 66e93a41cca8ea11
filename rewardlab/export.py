"""Take a trained policy out of Python: the deterministic actor as ONNX (VecNormalize's observation
statistics folded in), its metadata, a parity report, and a torch-free rollout of the exported file.

Anchor: DrEureka (Ma et al., 2024, eureka-research/DrEureka) deploys its Eureka-trained Go1 policy
from a checkpoint; here the deployable artefact is one ONNX file a robot's runtime (onnxruntime in C++,
Python or on a microcontroller) runs without torch, SB3 or rewardlab:

- ``policy.onnx``: input ``obs`` ``(batch, obs_dim)`` float32, the raw observation as the env gives it;
  output ``action`` ``(batch, action_dim)`` float32, the action to send (in the env's units and bounds).
  Inside: VecNormalize's ``clip((obs - mean) / sqrt(var + eps), -clip_obs, clip_obs)``, the actor's
  deterministic forward (PPO: the Gaussian's mean; SAC: ``tanh`` of the mean; TD3: the actor), then
  SB3's post-processing (PPO: clip to the bounds; SAC/TD3: rescale ``[-1, 1]`` to the bounds), so the
  file reproduces ``model.predict(normalize(obs), deterministic=True)`` (what training evaluated).
- ``metadata.json``: the observation layout (field names, columns, units, meaning) and where it comes
  from (``layout_source``: the card's ``obs[...]`` fields, or for ManiSkill, whose cards read actors,
  the ``state_dict`` keys measured from the live env), action bounds and meaning, the control
  frequency, the reward program's hash and lineage, training steps, versions, and the parity figures.
- ``parity.json``: ``max |a_onnx - a_torch|`` over observations recorded from the policy's own
  deterministic episodes, computed with onnxruntime (goal: <= :data:`PARITY_TOLERANCE`).

:func:`play` runs an exported policy in the simulator with onnxruntime and numpy only (this module
imports torch and stable-baselines3 inside the export functions, never at import time), on the same
evaluation seeds as training's final evaluation, so its returns can be compared with the torch ones.
"""

from __future__ import annotations

import difflib
import json
import platform
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rewardlab.cards import EnvCard, load_card
from rewardlab.errors import UserError
from rewardlab.paths import new_directory, relative_path, safe_name, shown_path
from rewardlab.sims.base import make_env
from rewardlab.state import StateExtractor
from rewardlab.store import DB_NAME, RunStore, TrialRecord
from rewardlab.training.normalization import ObsNormalization, load_normalization
from rewardlab.types import TrialResult

#: The formats ``rewardlab export --format`` writes.
EXPORT_FORMATS = ("onnx",)
#: The parity goal: largest |a_onnx - a_torch| over the recorded observations.
PARITY_TOLERANCE = 1e-5
#: ONNX opset of the exported graph (onnxruntime >= 1.16 runs it).
OPSET = 17
#: The algorithms whose deterministic actor can be exported (SB3's, with MLP or MoE networks).
EXPORTABLE_ALGOS = ("ppo", "sac", "td3")
#: First evaluation seed of training seed ``s`` (:func:`rewardlab.training.evaluation.eval_seed`; copied
#: here so that ``play`` does not import the training layer, which loads torch).
EVAL_SEED_BASE = 10_000
METADATA = "metadata.json"
ONNX_FILE = "policy.onnx"
PARITY_FILE = "parity.json"


def eval_seed(seed: int) -> int:
    """The first evaluation env's seed for training seed ``seed`` (as training evaluates)."""
    return EVAL_SEED_BASE + 100 * seed


# -- finding a trial ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialRef:
    """A trained trial found on disk: its directory, card, algorithm and where it came from.

    :param trial_dir: the directory holding ``model.zip`` (and ``vecnormalize.pkl`` when normalised)
    :param run_id: the run it belongs to (``None``: a ``rewardlab train`` directory)
    :param record: its row in the run store, when it has one
    :param db: the run store it was found in
    """

    trial_dir: Path
    card: EnvCard
    algo: str
    seed: int
    result: TrialResult | None
    run_id: str | None = None
    record: TrialRecord | None = None
    db: Path | None = None
    program_id: str | None = None  # the reward program trained on, when found without a trial record

    @property
    def name(self) -> str:
        return f"{self.run_id}/{self.trial_dir.name}" if self.run_id else shown_path(self.trial_dir)


def _program_sha(trial_dir: Path, result: TrialResult | None) -> str | None:
    """The sha256 of the program a trial trained on: from its result, else of its ``reward.py``."""
    if result is not None and result.reward_sha256:
        return result.reward_sha256
    if (trial_dir / "reward.py").is_file():
        from rewardlab.store import program_id

        return program_id((trial_dir / "reward.py").read_text())
    return None


def _store_near(trial_dir: Path, out: Path | None = None) -> Path | None:
    """The run store a directory was written under: ``out``'s, else the nearest among its ancestors
    (``runs/train/X`` -> ``runs/rewardlab.sqlite``)."""
    candidates = ([Path(out) / DB_NAME] if out is not None else []) + [p / DB_NAME for p in trial_dir.resolve().parents]
    return next((db for db in candidates if db.is_file()), None)


def _generation_record(run: Any) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(run.spec_yaml)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _from_generation(trial_dir: Path, run: Any, db: Path, env: str | None) -> TrialRef:
    """A probe of a ``rewardlab generate`` run (``<run>/r0-s0``, ``<run>/final``): its task from the run's
    record, its program from the candidate whose probe saved this model (else the hash of its
    ``reward.py``)."""
    what = f"{run.id}/{trial_dir.name}"
    _require_model(trial_dir, what, kind="probe")
    record = _generation_record(run)
    card = env or record.get("card_id")
    if not card:
        raise UserError(f"cannot tell the task of probe {what} (its run record names no card); pass --env CARD")
    result = _read_result(trial_dir)
    algo = (result.algo if result is not None and result.algo else None) or record.get("probe_algo") or ""
    if algo not in EXPORTABLE_ALGOS:
        raise UserError(f"probe {what} used {algo or 'an unknown algorithm'!r}; export supports "
                        f"{', '.join(EXPORTABLE_ALGOS)}")
    model = (trial_dir / "model.zip").resolve()
    program: str | None = None
    with RunStore(db) as store:
        for cand in store.candidates(run.id):
            path = (cand.probe or {}).get("model_path")
            if path and cand.program_id and Path(path).name == "model.zip" and (
                    Path(path).parent.name == trial_dir.name and Path(path).parent.parent.name == run.id
                    or Path(path).resolve() == model):
                program = cand.program_id
    program = program or _program_sha(trial_dir, result)
    return TrialRef(trial_dir, load_card(card), algo, int(record.get("seed") or 0), result, run.id, None, db, program)


def _not_a_trial(path: Path, out: Path | None) -> UserError:
    """Why an existing directory is not a trial, saying where the trial (or what it is) is."""
    for parent in path.resolve().parents:
        if (parent / "model.zip").is_file():
            return UserError(f"no model.zip in {shown_path(path)}: it is not a trial directory; the trial "
                             f"directory is {shown_path(parent)}")
    gen_db = path.resolve().parent.parent / DB_NAME
    if gen_db.is_file():  # a probe folder of a generation run whose training saved no model
        with RunStore(gen_db) as store:
            run = store.get_run(path.resolve().parent.name)
        if run is not None and run.spec_name == "generate":
            return UserError(f"probe {run.id}/{path.name} has no saved model (no model.zip in {shown_path(path)}): "
                             "its training failed or did not finish")
    beside = path.resolve().parent / DB_NAME  # a run's folder sits beside its store
    db = beside if beside.is_file() else _store_near(path, out)
    if db is not None and (db.parent / path.name).resolve() == path.resolve():
        with RunStore(db) as store:
            run = store.get_run(path.name)
        if run is not None and run.spec_name == "randomize":
            return UserError(f"{shown_path(path)} is a randomize run (domain randomisation ranges), not a trial; "
                             "export a trained policy, then `rewardlab play EXPORT --ranges "
                             f"{shown_path(path / 'ranges.yaml')}`")
        if run is not None:
            trials = sorted({p.parent.name for p in path.rglob("model.zip")})
            example = f" (e.g. {run.id}/{trials[0]})" if trials else ""
            return UserError(f"{shown_path(path)} is the {run.spec_name} run {run.id}, not a trial; name one of its "
                             f"trials as RUN/TRIAL{example}")
    return UserError(f"no model.zip in {shown_path(path)}: it is not a trial directory (a trial directory holds "
                     "the model.zip that training saved)")


def _read_result(trial_dir: Path) -> TrialResult | None:
    path = trial_dir / "result.json"
    if not path.is_file():
        return None
    try:
        return TrialResult.model_validate_json(path.read_text())
    except ValueError:
        return None


def _require_model(trial_dir: Path, what: str, status: str | None = None, error: str | None = None,
                   kind: str = "trial") -> None:
    if (trial_dir / "model.zip").is_file():
        return
    why = f" (it is {status}" + (f": {error}" if error else "") + ")" if status and status != "done" else ""
    raise UserError(f"{kind} {what} has no saved model (no model.zip in {shown_path(trial_dir)}){why}; "
                    "only finished trials of the sb3 trainer can be exported")


def _from_record(record: TrialRecord, run_dir: Path, db: Path) -> TrialRef:
    if record.dir is None:
        raise UserError(f"trial {record.run_id}/{record.key} never started ({record.status}): it has no saved model")
    # the store keeps the directory as the runner named it (maybe relative to where it ran): find it under
    # the runs root given here first
    trial_dir = run_dir / "trials" / Path(record.dir).name
    if not trial_dir.is_dir() and Path(record.dir).is_dir():
        trial_dir = Path(record.dir)
    what = f"{record.run_id}/{trial_dir.name}"
    if record.trainer not in (None, "sb3"):
        raise UserError(f"trial {what} was trained by {record.trainer!r}; export supports sb3 policies "
                        f"({', '.join(EXPORTABLE_ALGOS)})")
    _require_model(trial_dir, what, record.status, record.error)
    card = load_card(record.task)
    result = record.result or _read_result(trial_dir)
    return TrialRef(trial_dir, card, record.algo, record.seed, result, record.run_id, record, db)


def _from_directory(path: Path, env: str | None) -> TrialRef:
    """A trial directory given as a path: a run's ``trials/<dir>`` (looked up in its store) or a
    ``rewardlab train`` directory (``<card>-<reward>-<algo>-<seed>``)."""
    run_dir = path.parent.parent
    db = run_dir.parent / DB_NAME
    if path.parent.name == "trials" and db.is_file():
        with RunStore(db) as store:
            for record in store.trials(run_dir.name):
                if record.dir and Path(record.dir).name == path.name:  # unique within a run
                    return _from_record(record, run_dir, db)
    gen_db = path.resolve().parent.parent / DB_NAME  # a generation probe: <runs>/<generate run>/<probe>
    if gen_db.is_file():
        with RunStore(gen_db) as store:
            run = store.get_run(path.resolve().parent.name)
        if run is not None and run.spec_name == "generate":
            return _from_generation(path, run, gen_db, env)
    _require_model(path, shown_path(path))
    result = _read_result(path)
    match = re.search(r"-(ppo|sac|td3)-(\d+)(?:-\d+)?$", path.name)
    algo = result.algo if result is not None and result.algo else (match.group(1) if match else "")
    if algo not in EXPORTABLE_ALGOS:
        raise UserError(f"cannot tell the algorithm of {shown_path(path)} (no result.json); export supports "
                        f"{', '.join(EXPORTABLE_ALGOS)}")
    if env is None:
        from rewardlab.cards import card_index

        found = [cid for cid in card_index() if path.name.startswith(safe_name(cid) + "-")]
        if not found:
            raise UserError(f"cannot tell the task of {shown_path(path)}; pass --env CARD")
        env = max(found, key=len)
    seed = int(match.group(2)) if match else 0
    program = _program_sha(path, result)
    return TrialRef(path, load_card(env), algo, seed, result, db=_store_near(path) if program else None,
                    program_id=program)


def locate_trial(ref: str | Path, out: Path = Path("runs"), env: str | None = None) -> TrialRef:
    """Find a trained trial by ``RUN/TRIAL`` (run id / trial directory name, key or id in the store
    under ``out``) or by its directory.

    :param ref: ``quickstart-20260101-120000/mujoco_InvertedPendulum-v5__reference__ppo__s0``, a
        trial directory path, or a ``rewardlab train`` output directory
    :param out: the runs root holding ``rewardlab.sqlite``
    :param env: the card, for a ``rewardlab train`` directory whose name does not say it
    :raises UserError: unknown run or trial (with a "did you mean"), a trial without a saved model, a
        trial of another trainer
    """
    path = Path(ref)
    if path.is_dir() and ((path / "model.zip").is_file() or (path / "result.json").is_file()
                          or path.parent.name == "trials"):
        return _from_directory(path, env)
    if path.is_dir():  # a folder, but not a trial's: say what it is and where the trial is
        raise _not_a_trial(path, out)
    text = str(ref).strip("/")
    if "/" not in text:
        raise UserError(f"{ref!r} is neither RUN/TRIAL nor a trial directory; `rewardlab runs list` shows the runs")
    run_id, trial = text.split("/", 1)
    trial = trial.removeprefix("trials/")
    db = Path(out) / DB_NAME
    if not db.is_file():
        if path.parent.is_dir() and path.parent != Path("."):
            raise UserError(f"no trial directory {ref} (and no run store at {db} to find {ref} as RUN/TRIAL)")
        raise UserError(f"no run store at {db}; pass --out to the folder that `rewardlab run` wrote to")
    with RunStore(db) as store:
        run = store.get_run(run_id)
        if run is None and path.parent.is_dir() and path.parent != Path("."):  # a mistyped trial directory
            siblings = [p.name for p in path.parent.iterdir() if p.is_dir()]
            near = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.4)
            hint = f"; did you mean {path.parent / near[0]}?" if near else ""
            raise UserError(f"no trial directory {ref}{hint}")
        if run is None:
            ids = [r.id for r in store.list_runs()]
            near = difflib.get_close_matches(run_id, ids, n=1, cutoff=0.4)
            hint = f"; did you mean {near[0]!r}?" if near else ("; `rewardlab runs list` shows the runs" if ids else "")
            raise UserError(f"no run {run_id!r} in {db}{hint}")
        records = store.trials(run_id)
        if run.spec_name == "generate":  # its trials are probes: <run>/r0-s0, <run>/final
            probe = Path(out) / run_id / trial
            if (probe / "model.zip").is_file():
                return _from_generation(probe, run, db, env)
            probes = sorted(p.parent.name for p in (Path(out) / run_id).glob("*/model.zip"))
            near = difflib.get_close_matches(trial, probes, n=1, cutoff=0.3)
            hint = (f"; did you mean {run_id}/{near[0]}?" if near else
                    f"; its probes: {', '.join(probes)}" if probes else "; it saved no probe model")
            raise UserError(f"generation run {run_id} has no probe {trial!r}{hint}")
        if run.spec_name == "randomize":
            raise UserError(f"{run_id} is a randomize run (domain randomisation ranges), not a run with trials")
    names = {Path(r.dir).name if r.dir else r.key.replace("|", "__"): r for r in records}
    record = names.get(trial) or next((r for r in records if trial in (r.key, str(r.id))), None)
    if record is None:
        near = difflib.get_close_matches(trial, list(names), n=1, cutoff=0.3)
        hint = f"; did you mean {run_id}/{near[0]}?" if near else ""
        raise UserError(f"run {run_id} has no trial {trial!r}{hint}")
    return _from_record(record, Path(out) / run_id, db)


# -- the exported graph ------------------------------------------------------------------------------
def load_model(trial: TrialRef) -> Any:
    """The trial's SB3 model on the CPU.

    :raises UserError: an algorithm export does not support, or a model file that does not load
    """
    from stable_baselines3 import PPO, SAC, TD3

    classes: dict[str, Any] = {"ppo": PPO, "sac": SAC, "td3": TD3}
    if trial.algo not in classes:
        raise UserError(f"trial {trial.name} used {trial.algo!r}; export supports {', '.join(EXPORTABLE_ALGOS)} policies")
    try:
        return classes[trial.algo].load(trial.trial_dir / "model.zip", device="cpu")
    except Exception as e:  # a damaged or foreign zip: one line
        raise UserError(f"cannot load {shown_path(trial.trial_dir / 'model.zip')} as a {trial.algo} model: "
                        f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None


def torch_actor(model: Any, norm: ObsNormalization | None) -> Callable[[np.ndarray], np.ndarray]:
    """The reference the export must match: raw observations ``(B, D)`` -> SB3's deterministic actions
    ``(B, A)``, computed the way training evaluated them (``normalize_obs`` then ``predict``)."""

    def act(obs: np.ndarray) -> np.ndarray:
        x = norm.apply(np.asarray(obs, dtype=np.float64)) if norm is not None else obs
        action, _ = model.predict(x, deterministic=True)
        return np.asarray(action)

    return act


def _actor_module(model: Any, norm: ObsNormalization | None) -> Any:
    """``torch.nn.Module``: raw obs -> normalisation -> ``policy._predict(deterministic)`` -> SB3's
    post-processing (clip, or rescale a squashed action)."""
    import torch
    from gymnasium import spaces

    policy = model.policy
    policy.set_training_mode(False)
    space = model.action_space
    if not isinstance(space, spaces.Box):
        raise UserError(f"export supports continuous (Box) actions; this policy acts in {space}")
    if not isinstance(model.observation_space, spaces.Box) or len(model.observation_space.shape) != 1:
        raise UserError(f"export supports flat Box observations; this policy reads {model.observation_space}")

    class DeterministicActor(torch.nn.Module):
        mean: torch.Tensor
        std: torch.Tensor
        low: torch.Tensor
        high: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.policy = policy
            self.normalize = norm is not None
            if norm is not None:
                self.register_buffer("mean", torch.as_tensor(norm.mean, dtype=torch.float32))
                self.register_buffer("std", torch.as_tensor(np.sqrt(norm.var + norm.epsilon), dtype=torch.float32))
                self.clip_obs = float(norm.clip)
            self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32))
            self.squash = bool(policy.squash_output)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            x = obs
            if self.normalize:
                x = torch.clamp((x - self.mean) / self.std, -self.clip_obs, self.clip_obs)
            action = self.policy._predict(x, deterministic=True)
            if self.squash:  # SB3's unscale_action: [-1, 1] -> [low, high]
                return self.low + 0.5 * (action + 1.0) * (self.high - self.low)
            return torch.maximum(torch.minimum(action, self.high), self.low)

    return DeterministicActor().eval()


def write_onnx(model: Any, norm: ObsNormalization | None, path: Path) -> None:
    """Trace the deterministic actor into ``path`` (ONNX, opset :data:`OPSET`, dynamic batch)."""
    import torch

    module = _actor_module(model, norm)
    dummy = torch.zeros((1, int(model.observation_space.shape[0])), dtype=torch.float32)
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on Python control flow that is constant here
        try:
            torch.onnx.export(module, (dummy,), str(path), input_names=["obs"], output_names=["action"],
                              dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False)
        except Exception as e:  # an operator ONNX lacks, or control flow the tracer cannot follow
            raise UserError(f"this policy cannot be exported to ONNX: {type(e).__name__}: "
                            f"{' '.join(str(e).split())[:200]}") from None


# -- running an exported policy (no torch) ------------------------------------------------------------
class OnnxPolicy:
    """An exported policy run by onnxruntime: raw observations ``(B, D)`` or ``(D,)`` -> actions.

    :param path: the ``policy.onnx`` file
    :raises UserError: onnxruntime is not installed, or the file is not a policy export
    """

    def __init__(self, path: Path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install 'rewardlab[export]'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one thread per process, as everywhere in rewardlab
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise UserError(f"cannot load {shown_path(path)} with onnxruntime: {' '.join(str(e).split())[:200]}") from None
        names = [i.name for i in self.session.get_inputs()]
        if names != ["obs"]:
            raise UserError(f"{shown_path(path)} is not a rewardlab policy export (inputs {names}, expected ['obs'])")

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        out = self.session.run(None, {"obs": x[None] if single else x})[0]
        return out[0] if single else out


class EpisodeStats(BaseModel):
    """One episode of a rollout: the env's own return, its length and whether the card's rule held."""

    model_config = ConfigDict(frozen=True)
    seed: int
    env_return: float
    length: int
    success: bool | None


class PlayResult(BaseModel):
    """Episodes of one policy on seeded envs.

    :param episodes: per episode, in seed order
    """

    model_config = ConfigDict(frozen=True)
    episodes: list[EpisodeStats] = Field(default_factory=list)

    @property
    def returns(self) -> list[float]:
        return [e.env_return for e in self.episodes]

    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.episodes else float("nan")

    def success_rate(self) -> float | None:
        values = [e.success for e in self.episodes if e.success is not None]
        return float(np.mean(values)) if values else None


def run_episodes(card: EnvCard, act: Callable[[np.ndarray], np.ndarray], seeds: Sequence[int],
                 wrap: Callable[[gym.Env, int], gym.Env] | None = None,
                 record: list[np.ndarray] | None = None) -> PlayResult:
    """Run one deterministic episode per seed, as training's evaluation does (env ``i`` made and reset
    with seed ``seeds[i]``), with numpy and the simulator only.

    :param act: raw observation ``(D,)`` -> action
    :param seeds: one episode per seed
    :param wrap: wraps each env before its episode (domain randomisation), given the env and its seed
    :param record: when given, every observation the policy acted on is appended to it
    """
    rule = card.success_rule
    extractor = StateExtractor(card, rule.fields) if rule is not None and rule.kind == "threshold" else None
    episodes: list[EpisodeStats] = []
    for seed in seeds:
        env = make_env(card, seed=seed)
        if wrap is not None:
            env = wrap(env, seed)
        try:
            obs, _ = env.reset(seed=seed)
            total, length, hit, terminated, truncated = 0.0, 0, False, False, False
            info: dict[str, Any] = {}
            while not (terminated or truncated):
                flat = np.asarray(obs).reshape(-1)
                if record is not None:
                    record.append(flat.copy())
                obs, reward, terminated, truncated, info = env.step(act(flat))
                total += float(reward)
                length += 1
                if rule is not None and rule.kind == "info" and info.get(rule.key):
                    hit = True
            success: bool | None = None
            if rule is not None:
                final = None
                if extractor is not None:
                    sim = extractor.sim_vector(env)[None] if extractor.has_sim else None
                    final = extractor.batch(np.asarray(obs).reshape(1, -1), sim)[0]
                # a step that both terminates and truncates counts as terminated, as SB3's TimeLimit flag does
                success = rule.holds(info_hit=hit, terminated=bool(terminated), final=final)
            episodes.append(EpisodeStats(seed=int(seed), env_return=total, length=length, success=success))
        finally:
            env.close()
    return PlayResult(episodes=episodes)


# -- the export --------------------------------------------------------------------------------------
class ParityReport(BaseModel):
    """How closely the ONNX file reproduces the torch policy.

    :param max_abs: max over observations and action dimensions of ``|a_onnx - a_torch|``
    :param per_dim_max: the same per action dimension
    :param observations: recorded observations compared
    :param episodes: the deterministic torch episodes they were recorded in (seeds ``seeds``)
    """

    model_config = ConfigDict(frozen=True)
    max_abs: float
    mean_abs: float
    per_dim_max: list[float]
    observations: int
    episodes: int
    seeds: list[int]
    tolerance: float = PARITY_TOLERANCE
    runtime: str = "onnxruntime"

    @property
    def passed(self) -> bool:
        return self.max_abs <= self.tolerance


class ExportResult(BaseModel):
    """What :func:`export_policy` wrote: the folder, the metadata and the parity report."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    directory: Path
    metadata: dict[str, Any]
    parity: ParityReport


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("rewardlab", "torch", "stable-baselines3", "onnx", "onnxruntime", "gymnasium", "mujoco", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "?"
    return found


def observation_layout(card: EnvCard, obs_dim: int) -> list[dict[str, Any]]:
    """The observation's columns as ``{name, source, columns, slice, shape, unit, doc}``, in column order.

    Fields a card reads from the observation (``obs[...]`` sources) name their columns. A ManiSkill card
    reads its fields from the env's actors instead, so its state observation is measured from the live
    env (:func:`maniskill_state_layout`). Columns neither names are one ``unnamed`` entry whose doc says
    why.
    """
    return describe_observation(card, obs_dim)["fields"]


def describe_observation(card: EnvCard, obs_dim: int) -> dict[str, Any]:
    """``{"layout_source": where the column layout comes from, "fields": [...]}`` (see
    :func:`observation_layout`)."""
    layout: list[dict[str, Any]] = []
    covered: set[int] = set()
    for name, spec in card.fields().items():
        if spec.kind != "obs":
            continue
        cols = spec.obs_columns(obs_dim)
        covered.update(cols)
        contiguous = cols == list(range(cols[0], cols[-1] + 1)) if cols else False
        layout.append({"name": name, "source": spec.source, "columns": cols,
                       "slice": [cols[0], cols[-1] + 1] if contiguous else None,
                       "shape": spec.shape, "unit": spec.unit, "doc": spec.doc})
    source = f"the card's observation fields (obs[...] sources in {card.id})"
    if not layout and card.simulator == "maniskill" and card.make_kwargs.get("obs_mode", "state") == "state":
        measured = maniskill_state_layout(card, obs_dim)
        if measured is not None:
            return measured
    layout.sort(key=lambda f: f["columns"][0] if f["columns"] else -1)
    rest = [c for c in range(obs_dim) if c not in covered]
    if rest:
        sim = [name for name, spec in card.fields().items() if spec.kind != "obs"]
        why = (f"the card reads its fields ({', '.join(sim[:4])}{', ...' if len(sim) > 4 else ''}) from the "
               f"simulator, not from observation columns, so it does not describe {card.env_id}'s observation"
               if sim and not layout else "observation columns the card does not name")
        if not layout:
            source = f"none: {why}"
        layout.append({"name": "unnamed", "source": None, "columns": rest, "slice": None, "shape": [len(rest)],
                       "unit": None, "doc": why})
    return {"layout_source": source, "fields": layout}


def maniskill_state_layout(card: EnvCard, obs_dim: int) -> dict[str, Any] | None:
    """A ManiSkill card's flat state observation, column by column, measured from the live env
    (:func:`rewardlab.sims.maniskill.state_layout`); each entry also names the card field whose values
    are equal at a reset (``same_as``, with that field's unit and doc), or for a pose the fields equal
    to its position and quaternion. None when the measured width is not ``obs_dim``.
    """
    from rewardlab.sims.maniskill import state_layout

    entries, card_values = state_layout(card)
    if sum(len(e["columns"]) for e in entries) != obs_dim:
        return None
    specs = card.fields()

    def same(values: np.ndarray, key: str) -> str | None:
        found = [n for n, v in card_values.items() if v.shape == values.shape and np.allclose(v, values, atol=1e-5)]
        if not found:
            return None
        leaf = key.rsplit(".", 1)[-1]
        best = max(found, key=lambda n: difflib.SequenceMatcher(None, leaf, n.rsplit(".", 1)[-1]).ratio())
        if not np.any(values) and difflib.SequenceMatcher(None, leaf, best.rsplit(".", 1)[-1]).ratio() < 0.5:
            return None  # zeros equal many fields: only a field of a like name is the same quantity
        return best

    fields: list[dict[str, Any]] = []
    for entry in entries:
        cols, values = entry["columns"], entry["values"]
        row: dict[str, Any] = {"name": entry["name"], "source": "state_dict['" + entry["name"].replace(".", "']['") + "']",
                               "columns": cols, "slice": [cols[0], cols[-1] + 1], "shape": [len(cols)],
                               "unit": None, "doc": None, "same_as": None}
        match = same(values, entry["name"])
        if match is not None:
            row.update(same_as=match, unit=specs[match].unit, doc=specs[match].doc)
        elif len(cols) == 7 and entry["name"].endswith("pose"):
            p, q = same(values[:3], entry["name"] + "_p"), same(values[3:], entry["name"] + "_q")
            row["unit"] = "m, then unitless quaternion"
            row["doc"] = ("pose: position x, y, z (m)" + (f" = card field {p}" if p else "") +
                          ", then orientation quaternion w, x, y, z" + (f" = card field {q}" if q else ""))
            row["same_as"] = [p, q] if p or q else None
        elif entry["name"].endswith("_pos"):  # ManiSkill's naming: a position or a displacement in world metres
            row.update(unit="m", doc="a position or displacement (x, y, z) in world metres, as ManiSkill's key "
                                     "names it; no card field equals it")
        fields.append(row)
    return {"layout_source": f"measured: ManiSkill's obs_mode='state_dict' observation of {card.env_id} at a reset "
                             "(seed 0), flattened in its order as obs_mode='state' is "
                             "(mani_skill.utils.common.flatten_state_dict); same_as names the card field with equal "
                             "values at that state (unit and doc are that field's)",
            "fields": fields}


def _reward_info(trial: TrialRef) -> dict[str, Any]:
    sha = (trial.record.program_id if trial.record is not None else None) or trial.program_id or (
        trial.result.reward_sha256 if trial.result is not None else None)
    reward: dict[str, Any] = {"source": trial.record.reward if trial.record is not None else None,
                              "program_sha256": sha, "lineage": []}
    if sha is None and (trial.trial_dir / "reward.py").is_file():
        import hashlib

        reward["program_sha256"] = hashlib.sha256((trial.trial_dir / "reward.py").read_text().encode()).hexdigest()
    if reward["program_sha256"] is None:
        reward["note"] = "trained on the env's own (or the sparse success) reward: no reward program"
    if reward["source"] is None and trial.run_id and trial.record is None and reward["program_sha256"] is not None:
        reward["source"] = f"a candidate of generation run {trial.run_id} (probe {trial.trial_dir.name})"
    if reward["source"] is None and reward["program_sha256"] is not None:
        reward["source"] = "reward.py in the trial directory"
    if sha is not None and trial.db is None:
        reward["lineage_note"] = "the trial is not in a run store: its program's lineage is unknown"
    if sha is not None and trial.db is not None:
        with RunStore(trial.db) as store:
            reward["lineage"] = [{"sha256": p.id, "origin": p.origin, "parent": p.parent_id, "created": p.created}
                                 for p in store.lineage(sha)]
        if not reward["lineage"]:
            reward["lineage_note"] = f"program {sha[:12]} is not in the run store {relative_path(trial.db)}"
    return reward


def export_policy(trial: TrialRef, dest: Path | None = None, parity_observations: int = 3000,
                  evaluation_episodes: int = 5, fmt: str = "onnx") -> ExportResult:
    """Export a trial's deterministic actor and check it against the torch policy.

    :param trial: from :func:`locate_trial`
    :param dest: the folder to create (default: a new ``<trial dir>/exports/onnx[-N]``); never reused
    :param parity_observations: at least this many observations are recorded from the torch policy's
        deterministic episodes on the evaluation seeds (whole episodes, so a few more)
    :param evaluation_episodes: the torch policy's deterministic evaluation stored with the export
        (seeds ``eval_seed(seed) + i``); ``play`` runs the ONNX file on the same seeds and compares
    :param fmt: ``onnx`` (:data:`EXPORT_FORMATS`)
    :raises UserError: an unknown format, a meaningless observation count, a policy that cannot be
        exported (discrete actions, image observations, an operator ONNX lacks)
    """
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    if parity_observations < 1:
        raise UserError(f"--parity-observations must be at least 1, got {parity_observations}")
    if evaluation_episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {evaluation_episodes}")
    try:
        import onnx  # noqa: F401  (checked here: the graph is written with torch, checked with onnx)
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError("ONNX export needs onnx and onnxruntime: pip install 'rewardlab[export]'") from None
    from rewardlab.runtime import limit_threads

    limit_threads()
    model = load_model(trial)
    norm = load_normalization(trial.trial_dir)
    folder = Path(dest) if dest is not None else new_directory(trial.trial_dir / "exports", fmt)
    if dest is not None:
        if folder.exists() and any(folder.iterdir()):
            raise UserError(f"{shown_path(folder)} exists and is not empty; exports never overwrite, pick another --dest")
        folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / ONNX_FILE
    write_onnx(model, norm, onnx_path)
    import onnx as onnx_lib

    onnx_lib.checker.check_model(str(onnx_path))

    # parity: observations the torch policy meets in its own deterministic episodes
    # (the first ``evaluation_episodes`` of them are the torch evaluation that ``play`` is compared with)
    reference = torch_actor(model, norm)
    recorded: list[np.ndarray] = []
    seeds: list[int] = []
    torch_episodes: list[EpisodeStats] = []
    start = eval_seed(trial.seed)
    while len(recorded) < parity_observations or len(seeds) < evaluation_episodes:
        seeds.append(start + len(seeds))
        torch_episodes += run_episodes(trial.card, lambda o: reference(o[None])[0], [seeds[-1]], record=recorded).episodes
    torch_eval = PlayResult(episodes=torch_episodes[:evaluation_episodes])
    obs = np.stack(recorded).astype(np.float64)
    a_torch = reference(obs).astype(np.float64)
    a_onnx = OnnxPolicy(onnx_path)(obs).astype(np.float64)
    diff = np.abs(a_onnx - a_torch)
    parity = ParityReport(max_abs=float(diff.max()), mean_abs=float(diff.mean()),
                          per_dim_max=diff.max(axis=0).tolist(), observations=len(obs), episodes=len(seeds), seeds=seeds)
    (folder / PARITY_FILE).write_text(parity.model_dump_json(indent=1))

    env = make_env(trial.card, seed=0)
    try:
        dt = getattr(env.unwrapped, "dt", None)
    finally:
        env.close()
    obs_dim = int(model.observation_space.shape[0])
    low, high = model.action_space.low, model.action_space.high
    result = trial.result
    metadata: dict[str, Any] = {
        "format": "onnx", "file": ONNX_FILE, "opset": OPSET,
        "input": {"name": "obs", "dtype": "float32", "shape": ["batch", obs_dim],
                  "meaning": "the raw observation as the env returns it (normalisation is inside the graph)"},
        "output": {"name": "action", "dtype": "float32", "shape": ["batch", int(low.shape[0])],
                   "meaning": "the action to apply, already in the env's units and bounds"},
        "card": trial.card.id, "env_id": trial.card.env_id, "simulator": trial.card.simulator,
        "instruction": trial.card.instruction,
        "observation": {"dim": obs_dim, **describe_observation(trial.card, obs_dim),
                        "normalization": None if norm is None else {
                            "folded_into_graph": True, "kind": "VecNormalize", "mean": norm.mean.tolist(),
                            "var": norm.var.tolist(), "epsilon": norm.epsilon, "clip": norm.clip}},
        "action": {"dim": int(low.shape[0]), "low": low.tolist(), "high": high.tolist(),
                   "meaning": getattr(trial.card.action, "doc", ""),
                   "postprocess": "rescaled from tanh [-1, 1]" if model.policy.squash_output else "clipped to bounds"},
        "control": {"dt_s": dt, "frequency_hz": None if not dt else 1.0 / float(dt),
                    "episode_steps": trial.card.episode_steps},
        "success": trial.card.success,
        "reward": _reward_info(trial),
        "training": {"run": trial.run_id, "trial": trial.trial_dir.name,
                     "key": trial.record.key if trial.record is not None else None,
                     "algo": trial.algo, "seed": trial.seed, "policy": type(model.policy).__name__,
                     "moe": _is_moe(model), "steps": int(model.num_timesteps),
                     "final_eval_env_return": result.eval.env_return if result else [],
                     "final_eval_note": "training's own final evaluation (its envs were reset by earlier "
                                        "evaluations, so its episodes are not those of the seeds below)"},
        "evaluation": {"seeds": [e.seed for e in torch_eval.episodes], "policy": "torch (SB3 predict, deterministic)",
                       "env_return": torch_eval.returns, "success": [e.success for e in torch_eval.episodes],
                       "length": [e.length for e in torch_eval.episodes], "mean_return": torch_eval.mean_return(),
                       "success_rate": torch_eval.success_rate()},
        "parity": {"max_abs": parity.max_abs, "tolerance": parity.tolerance, "passed": parity.passed,
                   "observations": parity.observations},
        "versions": _versions(),
    }
    (folder / METADATA).write_text(json.dumps(metadata, indent=1))
    return ExportResult(directory=folder, metadata=metadata, parity=parity)


def _is_moe(model: Any) -> bool:
    from rewardlab.moe.layers import moe_layers

    return bool(moe_layers(model.policy))


# -- play ---------------------------------------------------------------------------------------------
@dataclass
class ExportedPolicy:
    """An export folder read back: its metadata, card and ONNX policy (no torch)."""

    directory: Path
    metadata: dict[str, Any]
    card: EnvCard
    policy: OnnxPolicy = field(repr=False)


def load_export(directory: str | Path) -> ExportedPolicy:
    """Read an export folder written by :func:`export_policy`.

    :raises UserError: not a folder, or no ``metadata.json`` / ``policy.onnx`` in it
    """
    folder = Path(directory)
    if (folder / "exports").is_dir() and not (folder / METADATA).is_file():  # a trial dir: its latest export
        exports = sorted((p for p in (folder / "exports").iterdir() if (p / METADATA).is_file()),
                         key=lambda p: p.stat().st_mtime)
        if exports:
            folder = exports[-1]
    if not (folder / METADATA).is_file() or not (folder / ONNX_FILE).is_file():
        raise UserError(f"{shown_path(folder)} is not a policy export (no {METADATA} and {ONNX_FILE}); "
                        "write one with `rewardlab export RUN/TRIAL`")
    try:
        metadata = json.loads((folder / METADATA).read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{shown_path(folder / METADATA)} is not valid JSON: {e}") from None
    return ExportedPolicy(folder, metadata, load_card(metadata["card"]), OnnxPolicy(folder / ONNX_FILE))


def play(exported: ExportedPolicy, episodes: int | None = None, seed: int | None = None,
         wrap: Callable[[gym.Env, int], gym.Env] | None = None) -> PlayResult:
    """Run the exported ONNX policy for ``episodes`` deterministic episodes in the simulator.

    :param episodes: default: as many as the export's torch evaluation
    :param seed: the first episode's env seed (default: the torch evaluation's first seed, so the
        episodes are those the torch policy ran when exported)
    :param wrap: wraps each env (domain randomisation)
    :raises UserError: a meaningless episode count
    """
    eval_seeds = list(exported.metadata.get("evaluation", {}).get("seeds") or [])
    n = episodes if episodes is not None else (len(eval_seeds) or 5)
    if n < 1:
        raise UserError(f"--episodes must be at least 1, got {n}")
    first = seed if seed is not None else (
        eval_seeds[0] if eval_seeds else eval_seed(int(exported.metadata.get("training", {}).get("seed", 0))))
    return run_episodes(exported.card, exported.policy, [first + i for i in range(n)], wrap=wrap)


def compare_with_torch(exported: ExportedPolicy, result: PlayResult) -> float | None:
    """max |return_onnx - return_torch| over the episodes whose seeds the export's torch evaluation
    ran (None when no seed is shared)."""
    evaluation = exported.metadata.get("evaluation", {})
    torch_returns = dict(zip(evaluation.get("seeds", []), evaluation.get("env_return", [])))
    diffs = [abs(e.env_return - torch_returns[e.seed]) for e in result.episodes if e.seed in torch_returns]
    return max(diffs) if diffs else None
