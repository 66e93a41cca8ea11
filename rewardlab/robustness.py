"""How an exported policy stands up to perturbed physics, and DrEureka-style randomisation ranges.

Anchor: DrEureka (Ma et al., RSS 2024, eureka-research/DrEureka): after training, *RAPP* perturbs one
physics parameter at a time until the policy fails, which gives each parameter a feasible range; an
LLM then writes domain-randomisation ranges inside them, with a reason per range, warned that
randomising too widely slows learning. Here, over the parameters of :mod:`rewardlab.randomization`:

- :func:`robustness_grid`: a policy's return and success over a 2-D grid of fixed perturbations, as a
  JSON table and a heat-map PNG (:func:`write_grid`).
- :func:`feasible_ranges`: RAPP, one parameter at a time, outward from nominal until the policy fails.
- :func:`propose_ranges`: the prompt (``prompts/randomization.j2``) with the measured feasible
  ranges, the provider's reply parsed and checked against them (a range outside is refused with one
  line), and everything stored: the exchange in the run store, the ranges, the prompt and the
  feasible ranges in the proposal's run directory.

The policy is the exported ONNX file (:mod:`rewardlab.export`): what is measured is what is deployed,
and nothing here loads torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from rewardlab.cards import describe_validation_error
from rewardlab.errors import UserError, one_line
from rewardlab.export import ExportedPolicy, PlayResult, play
from rewardlab.paths import relative_path, shown_path
from rewardlab.randomization import PARAMETERS, SCALES, RandomizationRanges, fixed_ranges, parse_ranges, randomized
from rewardlab.resources import resource_dir


# -- robustness over a grid ---------------------------------------------------------------------------
def parse_axis(text: str) -> tuple[str, list[float]]:
    """``mass=0.5:1.5:5`` (``low:high:count``, evenly spaced) or ``mass=0.5,1,2`` (listed values).

    :raises UserError: an unknown parameter or a malformed list (one line)
    """
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or name not in PARAMETERS:
        raise UserError(f"--grid {text!r}: expected PARAMETER=LOW:HIGH:COUNT or PARAMETER=V1,V2,... with PARAMETER "
                        f"one of {', '.join(PARAMETERS)}")
    try:
        if ":" in values:
            low, high, count = values.split(":")
            n = int(count)
            if n < 1:
                raise ValueError
            points = np.linspace(float(low), float(high), n).tolist()
        else:
            points = [float(v) for v in values.split(",")]
    except ValueError:
        raise UserError(f"--grid {text!r}: {values!r} is not LOW:HIGH:COUNT (COUNT >= 1) or a list of numbers") from None
    if name == "action_latency":
        points = [float(round(p)) for p in points]
    try:
        fixed_ranges({name: points[0]}), fixed_ranges({name: points[-1]})
    except ValidationError as e:
        raise UserError(f"--grid {text!r}: {describe_validation_error(e)}") from None
    return name, sorted(dict.fromkeys(points))


class RobustnessGrid(BaseModel):
    """A policy's mean return and success rate at every cell of a 2-D grid of fixed perturbations.

    :param x, y: ``(parameter, values)`` of the two axes
    :param mean_return: ``[i_y][i_x]`` mean env return over ``episodes`` episodes
    :param success: ``[i_y][i_x]`` success rate (None: the card has no success rule)
    """

    model_config = ConfigDict(frozen=True)
    card: str
    policy: str
    x_name: str
    x_values: list[float]
    y_name: str
    y_values: list[float]
    episodes: int
    seeds: list[int]
    mean_return: list[list[float]]
    success: list[list[float | None]]
    nominal_return: float
    wall_s: float


def robustness_grid(exported: ExportedPolicy, x: tuple[str, list[float]], y: tuple[str, list[float]],
                    episodes: int = 3, seed: int | None = None) -> RobustnessGrid:
    """Evaluate the exported policy at every ``(x, y)`` perturbation, the same seeded episodes per cell.

    :param x, y: ``(parameter, values)`` from :func:`parse_axis`; two different parameters
    :param episodes: episodes per cell (at least 1)
    :param seed: first episode seed (default: the export's evaluation seeds)
    :raises UserError: the same parameter twice, no episodes
    """
    import time

    if x[0] == y[0]:
        raise UserError(f"the grid needs two different parameters, got {x[0]} twice")
    if episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {episodes}")
    start = time.perf_counter()
    nominal = play(exported, episodes, seed)
    returns: list[list[float]] = []
    success: list[list[float | None]] = []
    for yv in y[1]:
        row_r: list[float] = []
        row_s: list[float | None] = []
        for xv in x[1]:
            result = play(exported, episodes, seed, wrap=randomized(fixed_ranges({x[0]: xv, y[0]: yv})))
            row_r.append(result.mean_return())
            row_s.append(result.success_rate())
        returns.append(row_r)
        success.append(row_s)
    return RobustnessGrid(card=exported.card.id, policy=relative_path(exported.directory), x_name=x[0],
                          x_values=list(x[1]), y_name=y[0], y_values=list(y[1]), episodes=episodes,
                          seeds=[e.seed for e in nominal.episodes], mean_return=returns, success=success,
                          nominal_return=nominal.mean_return(), wall_s=time.perf_counter() - start)


def plot_grid(grid: RobustnessGrid, path: Path) -> Path:
    """Heat maps of the grid (mean return; success rate when the card has a rule) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, np.ndarray]] = [("mean return", np.array(grid.mean_return, dtype=float))]
    if any(v is not None for row in grid.success for v in row):
        panels.append(("success rate", np.array([[np.nan if v is None else v for v in row] for row in grid.success])))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, values) in zip(axes[0], panels):
        image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis",
                          vmin=0.0 if title == "success rate" else None, vmax=1.0 if title == "success rate" else None)
        ax.set_xticks(range(len(grid.x_values)), [f"{v:g}" for v in grid.x_values])
        ax.set_yticks(range(len(grid.y_values)), [f"{v:g}" for v in grid.y_values])
        ax.set_xlabel(f"{grid.x_name} ({PARAMETERS[grid.x_name]['unit']})")
        ax.set_ylabel(f"{grid.y_name} ({PARAMETERS[grid.y_name]['unit']})")
        low, high = image.get_clim()
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if np.isfinite(values[i, j]):
                    bright = high > low and (values[i, j] - low) / (high - low) > 0.6  # dark text on yellow
                    ax.text(j, i, f"{values[i, j]:.4g}" if title == "mean return" else f"{values[i, j]:.2g}",
                            ha="center", va="center", color="k" if bright else "w", fontsize=7)
        ax.set_title(title)
        fig.colorbar(image, ax=ax)
    fig.suptitle(f"{grid.card}: exported policy {grid.policy}, {grid.episodes} episodes per cell (seeds "
                 f"{grid.seeds[0]}..{grid.seeds[-1]}); other parameters nominal", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- feasible ranges (RAPP) ---------------------------------------------------------------------------
#: Values tried outward from nominal, per parameter, until the policy fails.
SEARCH: dict[str, tuple[list[float], list[float]]] = {
    **{name: ([0.8, 0.6, 0.4, 0.25, 0.1], [1.25, 1.5, 2.0, 3.0, 5.0]) for name in SCALES},
    "obs_noise": ([], [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]),
    "action_latency": ([], [1, 2, 3, 4, 6, 8]),
}


class FeasibleRange(BaseModel):
    """One parameter's measured range: the furthest values tried on each side where the policy still
    met the criterion, and the first values where it failed (None: it never failed within the search)."""

    model_config = ConfigDict(frozen=True)
    low: float
    high: float
    failed_below: float | None
    failed_above: float | None
    tried: dict[str, float]


class FeasibleRanges(BaseModel):
    """RAPP's result for one exported policy.

    :param criterion: what "the policy still works" meant
    """

    model_config = ConfigDict(frozen=True)
    card: str
    policy: str
    criterion: str
    episodes: int
    seeds: list[int]
    nominal_return: float
    nominal_success: float | None
    ranges: dict[str, FeasibleRange]


def feasible_ranges(exported: ExportedPolicy, episodes: int = 3, parameters: Sequence[str] | None = None,
                    return_fraction: float = 0.5, success_floor: float = 0.5) -> FeasibleRanges:
    """Perturb one parameter at a time, outward from nominal through :data:`SEARCH`, until the policy
    fails (DrEureka's RAPP); the feasible range is what lies between the failures.

    The policy works at a value when its success rate is at least ``success_floor`` (cards with a
    success rule, when the nominal policy meets it), else when its mean return is at least
    ``return_fraction`` of the nominal mean return.

    :param episodes: seeded episodes per value (the same seeds at every value)
    :param parameters: which to measure (default: all of :data:`PARAMETERS`)
    :raises UserError: no episodes, an unknown parameter, a fraction outside (0, 1]
    """
    if episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {episodes}")
    if not 0 < return_fraction <= 1 or not 0 < success_floor <= 1:
        raise UserError("the failure thresholds must lie in (0, 1]")
    names = list(parameters or PARAMETERS)
    unknown = [n for n in names if n not in PARAMETERS]
    if unknown:
        raise UserError(f"unknown parameter {unknown[0]!r}; expected one of {', '.join(PARAMETERS)}")
    nominal = play(exported, episodes)
    nominal_success = nominal.success_rate()
    if nominal_success is not None and nominal_success >= success_floor:
        criterion = f"success rate >= {success_floor:g} over {episodes} episodes"

        def works(r: PlayResult) -> bool:
            rate = r.success_rate()
            return rate is not None and rate >= success_floor
    else:
        threshold = return_fraction * nominal.mean_return()
        criterion = (f"mean return >= {return_fraction:g} x the nominal {nominal.mean_return():.4g} over {episodes} "
                     "episodes" + (" (the nominal policy does not meet the card's success rule)" if nominal_success
                                   is not None else ""))

        def works(r: PlayResult) -> bool:
            return r.mean_return() >= threshold

    found: dict[str, FeasibleRange] = {}
    for name in names:
        base = float(PARAMETERS[name]["nominal"])
        tried: dict[str, float] = {}
        bounds: list[float] = []
        fails: list[float | None] = []
        for side in SEARCH[name]:
            edge, failed = base, None
            for value in side:
                result = play(exported, episodes, wrap=randomized(fixed_ranges({name: value})))
                tried[f"{value:g}"] = result.mean_return()
                if not works(result):
                    failed = value
                    break
                edge = value
            bounds.append(edge)
            fails.append(failed)
        found[name] = FeasibleRange(low=min(bounds), high=max(bounds), failed_below=fails[0] if SEARCH[name][0] else None,
                                    failed_above=fails[-1], tried=dict(sorted(tried.items(), key=lambda kv: float(kv[0]))))
    return FeasibleRanges(card=exported.card.id, policy=relative_path(exported.directory), criterion=criterion,
                          episodes=episodes, seeds=[e.seed for e in nominal.episodes],
                          nominal_return=nominal.mean_return(), nominal_success=nominal_success, ranges=found)


# -- ranges proposed by an LLM ------------------------------------------------------------------------
OFFLINE_RANGES_MODEL = "offline-feasible-midrange"
OFFLINE_HEADER = "# offline baseline (no LLM): the middle half of each measured feasible range, around nominal"


class OfflineRangesProvider:
    """A clearly labelled NO-LLM baseline for :func:`propose_ranges`: it answers with the middle half
    of each measured feasible range (the half nearest nominal), so the pipeline runs with no endpoint.

    :param feasible: the measured ranges (the request cannot be read back into numbers reliably)
    :param log: the exchange log every answer is written to
    """

    name = "offline"

    def __init__(self, feasible: FeasibleRanges, log: Any = None):
        self.feasible = feasible
        self.log = log

    def complete(self, request: Any) -> Any:
        from rewardlab.llm.base import LLMReply

        lines = [OFFLINE_HEADER]
        for name, r in self.feasible.ranges.items():
            base = float(PARAMETERS[name]["nominal"])
            low, high = base - 0.5 * (base - r.low), base + 0.5 * (r.high - base)
            if name == "action_latency":
                low, high = float(int(low)), float(int(high))
            lines.append(f"{name}: [{low:.4g}, {high:.4g}]  # half-way from nominal {base:g} to the measured edges")
        text = "```yaml\n" + "\n".join(lines) + "\n```"
        reply = LLMReply(texts=[text] * request.n, model=OFFLINE_RANGES_MODEL, provider=self.name)
        if self.log is not None:
            reply.exchange_id = self.log.record(self.name, request, reply, None)
        return reply


def render_prompt(exported: ExportedPolicy, feasible: FeasibleRanges) -> str:
    """The DrEureka-style prompt (``prompts/randomization.j2``) with the measured feasible ranges."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resource_dir("prompts"))),
                             undefined=jinja2.StrictUndefined, autoescape=False)
    meta = exported.metadata
    return env.get_template("randomization.j2").render(
        card=exported.card, parameters=PARAMETERS, feasible=feasible, control=meta.get("control", {}),
        training=meta.get("training", {})).strip()


_YAML_BLOCK = re.compile(r"```(?:ya?ml)?\s*\n(.*?)```", re.S)


def check_reply(text: str, feasible: FeasibleRanges, tolerance: float = 1e-9) -> RandomizationRanges:
    """The ranges in a reply (its first ``yaml`` block, else the whole text), checked to lie inside
    the feasible ranges and to contain nominal.

    :raises UserError: no ranges, bad YAML, a bad field, a range outside its feasible range (one line)
    """
    match = _YAML_BLOCK.search(text)
    ranges = parse_ranges(match.group(1) if match else text, "the reply's ranges")
    if not ranges.items():
        raise UserError("the reply's ranges: it sets no parameter")
    for name, r in ranges.items():
        f = feasible.ranges.get(name)
        if f is None:
            raise UserError(f"the reply's ranges: field {name!r} was not measured (measured: {', '.join(feasible.ranges)})")
        if r.low < f.low - tolerance or r.high > f.high + tolerance:
            raise UserError(f"the reply's ranges: field {name!r} [{r.low:g}, {r.high:g}] leaves the feasible range "
                            f"[{f.low:g}, {f.high:g}] where the policy still works")
        base = float(PARAMETERS[name]["nominal"])
        if not r.low <= base <= r.high:
            raise UserError(f"the reply's ranges: field {name!r} [{r.low:g}, {r.high:g}] excludes the nominal value {base:g}")
    return ranges


@dataclass(frozen=True)
class Proposal:
    """What :func:`propose_ranges` stored: the run, its folder, the checked ranges and the exchange."""

    run_id: str
    directory: Path
    ranges: RandomizationRanges
    exchange_id: int | None
    provider: str
    model: str


def propose_ranges(exported: ExportedPolicy, feasible: FeasibleRanges, out: Path = Path("runs"),
                   provider: str = "offline", model: str | None = None, base_url: str | None = None,
                   api_key: str | None = None, timeout: float = 60.0, max_retries: int = 3,
                   temperature: float = 0.2) -> Proposal:
    """Ask a provider for domain-randomisation ranges inside the measured feasible ones, check the
    reply, and store it like a reward program: a run (``spec_name`` ``randomize``) in the run store
    with the exchange, and ``prompt.md``, ``feasible.json``, ``reply.md`` and ``ranges.yaml`` in its folder.

    :param provider: ``offline`` (:class:`OfflineRangesProvider`, labelled baseline) or ``openai`` /
        ``openai_compat`` (any OpenAI-compatible endpoint, :func:`rewardlab.text2reward.providers.make_provider`)
    :raises UserError: an unknown provider, a failed request, a reply that does not check (the run is
        kept, ``failed``, with the reply and the reason)
    """
    from rewardlab.llm.base import LLMRequest
    from rewardlab.llm.log import ExchangeLog
    from rewardlab.store import DB_NAME, RunStore
    from rewardlab.text2reward.providers import make_provider

    if provider not in ("offline", "openai", "openai_compat"):
        raise UserError(f"unknown provider {provider!r} for range proposals; use offline or openai")
    prompt = render_prompt(exported, feasible)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    run_id = f"randomize-{stamp}"
    record = {"kind": "domain randomisation proposal", "export": str(exported.directory), "card": exported.card.id,
              "provider": provider, "model": model, "base_url": base_url, "feasible": feasible.model_dump()}
    with RunStore(out / DB_NAME) as store:
        log = ExchangeLog(store, run_id)
        if provider == "offline":
            llm: Any = OfflineRangesProvider(feasible, log)
        else:  # built before the run is recorded: a missing model is one line and no run
            llm = make_provider(provider, model=model, base_url=base_url, api_key=api_key, timeout=timeout,
                                max_retries=max_retries, log=log)
        store.create_run(run_id, "randomize", yaml.safe_dump(record, sort_keys=False))
        folder = out / run_id
        folder.mkdir()
        (folder / "prompt.md").write_text(prompt + "\n")
        (folder / "feasible.json").write_text(feasible.model_dump_json(indent=1))
        request = LLMRequest(messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                             model=getattr(llm, "model", None) or OFFLINE_RANGES_MODEL, temperature=temperature,
                             metadata={"purpose": "domain randomisation", "card_id": exported.card.id})
        try:
            reply = llm.complete(request)
            text = reply.texts[0]
            (folder / "reply.md").write_text(text + "\n")
            ranges = check_reply(text, feasible)
        except UserError as e:
            store.set_run_status(run_id, "failed", one_line(str(e)))
            raise UserError(f"{e} (run {run_id} keeps the exchange)") from None
        (folder / "ranges.yaml").write_text(ranges.to_yaml())
        store.set_run_status(run_id, "done")
    return Proposal(run_id, folder, ranges, reply.exchange_id, provider, reply.model)


SYSTEM = ("You are a robotics engineer preparing a policy trained in simulation for a real robot. You write "
          "domain randomisation ranges as YAML, with a reason for each range in a comment.")


def write_json(path: Path, model: BaseModel) -> Path:
    """``model`` as JSON at ``path``.

    :raises UserError: the file exists (results are never overwritten)
    """
    if path.exists():
        raise UserError(f"{shown_path(path)} exists; results are never overwritten, pick another path")
    path.write_text(model.model_dump_json(indent=1))
    return path


def write_grid(grid: RobustnessGrid, folder: Path, stem: str = "robustness") -> tuple[Path, Path]:
    """``<stem>.json`` and ``<stem>.png`` in ``folder`` (created when missing).

    :raises UserError: either file exists already (results are never overwritten)
    """
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".png"):
        if (folder / f"{stem}{suffix}").exists():
            raise UserError(f"{shown_path(folder / (stem + suffix))} exists; results are never overwritten, "
                            "pick another --save folder")
    return write_json(folder / f"{stem}.json", grid), plot_grid(grid, folder / f"{stem}.png")
