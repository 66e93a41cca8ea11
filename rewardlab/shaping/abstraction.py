"""EXPRD beyond the gridworlds: an abstraction over a card's fields, its abstract MDP estimated by
sampling the real simulator with the scripted expert, and the designed reward exported as a reward
program (issue 8, part 7).

The abstraction (declared in the reward source, ``{name: exprd, budget: 3, abstraction: {...}}``):

- abstract *states*: the distance ``d = |target − (source + offset)|`` between two card fields (MetaWorld
  reach: ``goal_position`` and ``robot.ee_position`` with the fingertip offset ``[0, 0, −0.045]``), cut by
  increasing ``edges`` into ``len(edges) + 1`` cells; cell 0 (``d < edges[0]``) is the goal, where
  R̄ = 1 for every action (the sparse success reward);
- abstract *actions*: the continuous action's first ``k`` entries (k = the fields' size; MetaWorld's
  dx, dy, dz) classed by their cosine with ``target − source``: ``toward`` (cos ≥ ``cos``), ``away``
  (cos ≤ −``cos``), ``other`` (everything else, a zero move included).

The abstract model T̂(z'|z, a) is estimated from ``episodes`` seeded rollouts of ``steps`` steps, in stretches
of ``hold`` steps: a stretch follows the scripted expert with probability ``expert_share`` and otherwise
moves of one uniformly drawn class (toward the target, away from it, or orthogonal to it); the transition
is counted under the class of the action actually taken, with the classifier the reward program uses. The teacher is value
iteration on the estimated model (EXPRD's π_T); the report says per cell whether π_T agrees with the
scripted expert's usual class there.

Deviations (labelled): the reward program sees the state *after* the step (every rewardlab program does),
so it evaluates φ and the action class there, while the design's R(z, a) is indexed by the state before
it; a move is at most 1 cm, so the two differ only at a cell border. Only the distance is abstracted (a
1-D grid); an abstraction over more card features is the same code with more cells, not built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rewardlab.cards import BoxSpace, EnvCard
from rewardlab.errors import UserError
from rewardlab.sims.tabular import TabularMDP
from rewardlab.state import StateExtractor, StateView

#: Abstract actions, in the order of the designed table's columns.
ACTIONS = ("toward", "other", "away")


class CardAbstraction(BaseModel):
    """φ over card fields: distance cells × action classes (see the module docstring).

    :param target: card field the task brings ``source`` to (``goal_position``), shape ``(k,)``
    :param source: card field that moves (``robot.ee_position``), same shape
    :param offset: constant added to ``source`` (m; MetaWorld's fingertip centre is 0.045 m below the hand)
    :param edges: increasing distance edges (m, > 0); ``len(edges) + 1`` abstract states
    :param cos: cosine threshold of the ``toward`` / ``away`` classes, in (0, 1)
    :param episodes: rollouts sampled to estimate the abstract model
    :param steps: steps per rollout
    :param expert_share: probability of following the scripted expert for a stretch of ``hold`` steps
    :param hold: steps a drawn behaviour (the expert, or one class) is kept: MetaWorld's hand lags its
        target, so a class drawn anew every step would be credited with the previous steps' momentum
    :param seed: seed of the sampling (the env's goals and the behaviour's draws)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    target: str
    source: str
    offset: tuple[float, ...] = ()
    edges: tuple[float, ...] = Field(min_length=1)
    cos: float = Field(0.5, gt=0.0, lt=1.0)
    episodes: int = Field(20, ge=1)
    steps: int = Field(150, ge=1)
    expert_share: float = Field(0.3, ge=0.0, le=1.0)
    hold: int = Field(10, ge=1)
    seed: int = 0

    @field_validator("edges")
    @classmethod
    def _increasing(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(e <= 0 for e in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"edges must be increasing distances > 0, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> CardAbstraction:
        if self.target == self.source:
            raise ValueError(f"target and source are the same field {self.target!r}")
        return self

    @classmethod
    def parse(cls, data: Any, card: EnvCard, shaper: str = "exprd") -> CardAbstraction:
        """The abstraction from a reward source's ``abstraction`` mapping, checked against the card.

        :param shaper: the shaper's name, for messages
        :raises UserError: one line: not a mapping, a missing or unknown key, bad edges, a field the card
            lacks, fields of different shapes, or an action shorter than the fields
        """
        if not isinstance(data, dict):
            own = "true (the task's own) or " if shaper == "exprd" else ""
            raise UserError(f"shaper {shaper!r}: abstraction must be {own}a mapping with target, source and edges, "
                            f"got {data!r}")
        try:
            abstraction = cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            where = "".join(f" {p}" for p in err["loc"])
            raise UserError(f"shaper {shaper!r}: abstraction{where}: {err['msg']}".replace(": Value error, ", ": ")
                            ) from None
        fields = card.fields()
        for name in (abstraction.target, abstraction.source):
            if name not in fields:
                raise UserError(f"shaper {shaper!r}: abstraction field {name!r} is not in {card.id}; it has "
                                f"{', '.join(sorted(fields))}")
        k_t, k_s = fields[abstraction.target].size, fields[abstraction.source].size
        if k_t != k_s or fields[abstraction.target].shape != fields[abstraction.source].shape:
            raise UserError(f"shaper {shaper!r}: abstraction fields {abstraction.target} and {abstraction.source} have "
                            f"different shapes ({fields[abstraction.target].shape} and "
                            f"{fields[abstraction.source].shape})")
        if abstraction.offset and len(abstraction.offset) != k_s:
            raise UserError(f"shaper {shaper!r}: abstraction offset has {len(abstraction.offset)} entries, "
                            f"{abstraction.source} has {k_s}")
        if card.action.type != "box" or not card.action.shape or card.action.shape[0] < k_s:
            raise UserError(f"shaper {shaper!r}: an abstraction over card fields classes the first {k_s} entries of a "
                            f"continuous action; {card.id} has {card.action.type} actions of shape {card.action.shape}")
        return abstraction

    @property
    def fields(self) -> set[str]:
        """The card fields φ reads."""
        return {self.target, self.source}

    @property
    def n_states(self) -> int:
        return len(self.edges) + 1

    def state_names(self) -> tuple[str, ...]:
        bounds = (0.0, *self.edges)
        return tuple(f"d∈[{lo:.3f},{hi:.3f})" for lo, hi in zip(bounds, self.edges)) + (f"d≥{self.edges[-1]:.3f}",)

    def offset_of(self, view: StateView) -> np.ndarray:
        """``target − (source + offset)``, ``(B, k)``."""
        target = np.asarray(_field(view, self.target), dtype=np.float64)
        source = np.asarray(_field(view, self.source), dtype=np.float64)
        if self.offset:
            source = source + np.asarray(self.offset)
        return (target - source).reshape(len(target), -1)

    def cells(self, view: StateView) -> np.ndarray:
        """φ: the abstract state of each state, ``(B,)`` int (0 is the goal cell)."""
        dist = np.linalg.norm(self.offset_of(view), axis=-1)
        return (dist[:, None] >= np.asarray(self.edges)).sum(-1)

    def action_classes(self, view: StateView, actions: np.ndarray) -> np.ndarray:
        """The abstract action of each continuous action, ``(B,)`` int: 0 toward, 1 other, 2 away."""
        offset = self.offset_of(view)
        move = np.asarray(actions, dtype=np.float64).reshape(len(offset), -1)[:, :offset.shape[1]]
        cos = (move * offset).sum(-1) / (np.linalg.norm(move, axis=-1) * np.linalg.norm(offset, axis=-1) + 1e-9)
        return np.where(cos >= self.cos, 0, np.where(cos <= -self.cos, 2, 1))


def _field(view: StateView, dotted: str) -> Any:
    value: Any = view
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@dataclass
class SampledModel:
    """The estimated abstract MDP and what the sampling saw.

    :param mdp: T̂, R̄ (1 in the goal cell), γ, start distribution from the rollouts' first cells
    :param counts: transitions per (cell, class), ``(Z, 3)``
    :param expert_class: the scripted expert's most frequent class per cell (−1: the expert never was there)
    :param success_rate: fraction of steps per cell where the env reported success, ``(Z,)`` (NaN: unvisited)
    :param seconds: wall time of the sampling
    """

    mdp: TabularMDP
    counts: np.ndarray
    expert_class: np.ndarray
    success_rate: np.ndarray
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def estimate_card_mdp(card: EnvCard, abstraction: CardAbstraction, gamma: float) -> SampledModel:
    """The abstract MDP of ``card`` under ``abstraction``, estimated by sampling (see the module docstring).

    Unvisited (cell, class) pairs stay where they are (T̂(z|z, a) = 1) and are counted in ``counts`` as 0.

    :param gamma: discount of the abstract MDP (the learner's)
    :raises UserError: the task ships no scripted expert
    """
    import time

    from rewardlab.sims.base import get_simulator

    start_time = time.perf_counter()
    adapter = get_simulator(card.simulator)
    expert = adapter.expert(card)
    if expert is None:
        raise UserError(f"shaper 'exprd': an abstraction over card fields samples with the scripted expert, and "
                        f"{card.id} has none")
    extractor = StateExtractor(card, abstraction.fields)
    Z, A = abstraction.n_states, len(ACTIONS)
    counts = np.zeros((Z, A, Z))
    expert_counts = np.zeros((Z, A))
    visits, successes = np.zeros(Z), np.zeros(Z)
    starts = np.zeros(Z)
    rng = np.random.default_rng(abstraction.seed)
    assert isinstance(card.action, BoxSpace)  # CardAbstraction.parse refused other actions
    low, high = card.action.low_high()
    k = card.fields()[abstraction.source].size
    env = adapter.make_env(card, seed=abstraction.seed)
    try:
        for _ in range(abstraction.episodes):
            obs, _ = env.reset()  # the env was made with the seed: each reset draws its next goal
            view = _view(extractor, env, obs)
            z = int(abstraction.cells(view)[0])
            starts[z] += 1
            for t in range(abstraction.steps):
                offset = abstraction.offset_of(view)[0]
                if t % abstraction.hold == 0:  # a new stretch: the expert, or one class
                    from_expert = bool(rng.random() < abstraction.expert_share)
                    kind = int(rng.integers(A))
                    side = rng.normal(size=k)
                if from_expert:
                    action = np.clip(np.asarray(expert(obs, t), dtype=np.float64), low, high)
                else:
                    action = rng.uniform(low, high)
                    action[:k] = _move(kind, offset, side) * high[:k]
                a = int(abstraction.action_classes(view, action[None])[0])
                if from_expert:
                    expert_counts[z, a] += 1
                obs, _, terminated, truncated, info = env.step(action)
                view = _view(extractor, env, obs)
                nxt = int(abstraction.cells(view)[0])
                counts[z, a, nxt] += 1
                visits[nxt] += 1
                successes[nxt] += float(bool(info.get("success", False)))
                z = nxt
                if terminated or truncated:
                    break
    finally:
        env.close()
    n = counts.sum(-1, keepdims=True)
    T = np.where(n > 0, counts / np.maximum(n, 1), 0.0)
    unvisited = n[..., 0] == 0
    zs, as_ = np.nonzero(unvisited)
    T[zs, as_, zs] = 1.0
    R = np.zeros((Z, A))
    R[0] = 1.0
    mdp = TabularMDP(T, R, gamma, starts / starts.sum(), card.episode_steps, np.zeros(Z, dtype=bool),
                     abstraction.state_names(), ACTIONS)
    expert_class = np.where(expert_counts.sum(1) > 0, expert_counts.argmax(1), -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        success_rate = np.where(visits > 0, successes / np.maximum(visits, 1), np.nan)
    notes = [f"{len(zs)} of {Z * A} (cell, class) pairs never sampled: kept in place"] if len(zs) else []
    return SampledModel(mdp, n[..., 0], expert_class, success_rate, time.perf_counter() - start_time, notes)


def _view(extractor: StateExtractor, env: Any, obs: Any) -> StateView:
    obs_b = np.asarray(obs)[None]
    sim = extractor.sim_vector(env)[None] if extractor.has_sim else None
    return extractor.view(extractor.batch(obs_b, sim), obs_b)


def _move(kind: int, offset: np.ndarray, side: np.ndarray) -> np.ndarray:
    """A unit move of class ``kind`` relative to ``offset``: toward it, away from it, or along the part of
    ``side`` orthogonal to it."""
    unit = offset / (np.linalg.norm(offset) + 1e-12)
    if kind == 0:
        return unit
    if kind == 2:
        return -unit
    other = side - (side @ unit) * unit
    return other / (np.linalg.norm(other) + 1e-12)


def abstraction_program_source(abstraction: CardAbstraction, R: np.ndarray, rewarded: list[int], title: str) -> str:
    """The designed reward ``R (Z, 3)`` over abstract states as a reward program: it computes φ and the action
    class from the card fields with batched numpy and looks the value up; zero outside the ``rewarded``
    cells (EXPRD's sparsity)."""
    offset = f" + np.array({list(abstraction.offset)!r})" if abstraction.offset else ""
    edges = ", ".join(f"{e:.12g}" for e in abstraction.edges)
    names = abstraction.state_names()
    lines = [
        "import numpy as np",
        "",
        "",
        "def compute_dense_reward(self, action):",
        f'    """{title}',
        "",
        f"    Abstract state: the cell of |{abstraction.target} - ({abstraction.source}{offset})|",
        f"    among edges [{edges}] m; abstract action: the cosine of action[:k] with that offset",
        f"    (toward >= {abstraction.cos:g}, away <= -{abstraction.cos:g}, other between). Zero outside",
        f"    {len(rewarded)} rewarded cells. Designed by rewardlab's EXPRD shaper, not hand-written.",
        '    """',
        f"    offset = self.{abstraction.target} - (self.{abstraction.source}{offset})",
        "    dist = np.linalg.norm(offset, axis=-1)",
        f"    cell = (dist[..., None] >= np.array([{edges}])).sum(-1)",
        "    move = action[..., :offset.shape[-1]]",
        "    cos = (move * offset).sum(-1) / (np.linalg.norm(move, axis=-1) * dist + 1e-9)",
        f"    kind = np.where(cos >= {abstraction.cos:.12g}, 0, np.where(cos <= {-abstraction.cos:.12g}, 2, 1))",
        "    reward = np.zeros_like(dist)",
    ]
    for z in sorted(rewarded):
        t, o, a = (f"{R[z, j]:.12g}" for j in range(3))
        lines.append(f"    # {names[z]}: " + ", ".join(f"{n} {R[z, j]:+.3g}" for j, n in enumerate(ACTIONS)))
        lines.append(f"    reward = np.where(cell == {z}, np.where(kind == 0, {t}, np.where(kind == 1, {o}, {a})), reward)")
    lines.append('    return reward, {"designed": reward}')
    return "\n".join(lines) + "\n"
