"""``rewardlab export``, ``play``, ``robustness`` and ``randomize feasible|propose``: a trained policy
taken out of Python (ONNX), run without torch, and tested against perturbed physics.

``play``, ``robustness`` and ``randomize`` run the exported ONNX file with onnxruntime: they never load
torch (a test checks it), so they run where the policy will be deployed."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rewardlab.cli.app import app, console, err_console

Out = typer.Option(Path("runs"), help="runs root: the SQLite store and run directories")
ExportArg = typer.Argument(..., help="an export folder (or a trial directory: its latest export)")
randomize_app = typer.Typer(no_args_is_help=True, help="Domain randomisation ranges (DrEureka style; MuJoCo envs only).")
app.add_typer(randomize_app, name="randomize")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@app.command("export")
def export_cmd(trial: str = typer.Argument(..., help="RUN/TRIAL (run id / trial directory name), RUN/PROBE of a generation run "
                                                 "(e.g. r0-s0) or a trial directory"),
               fmt: str = typer.Option("onnx", "--format", help="export format: onnx"),
               out: Path = Out,
               env: str | None = typer.Option(None, help="the card, for a `rewardlab train` directory that does not name it"),
               dest: Path | None = typer.Option(None, help="folder to write (default: a new <trial>/exports/onnx)"),
               parity_observations: int = typer.Option(3000, help="observations recorded from the torch policy for "
                                                       "the parity check"),
               episodes: int = typer.Option(5, help="torch evaluation episodes stored with the export (play "
                                                 "compares with them)")) -> None:
    """Export a trained policy's deterministic actor (observation normalisation folded in) with its
    metadata and a parity report against the torch policy."""
    from rewardlab.export import export_policy, locate_trial
    from rewardlab.paths import shown_path

    found = locate_trial(trial, out, env)

    result = export_policy(found, dest, parity_observations=parity_observations, evaluation_episodes=episodes, fmt=fmt)
    p = result.parity
    table = Table("policy", "algo", "steps", "parity max |a_onnx - a_torch|", "observations", "goal", box=None)
    table.add_row(found.name, found.algo, str(result.metadata["training"]["steps"]), f"{p.max_abs:.3g}",
                  str(p.observations), f"<= {p.tolerance:g}")
    console.print(table)
    evaluation = result.metadata["evaluation"]
    console.print(f"torch evaluation on seeds {evaluation['seeds'][0]}..{evaluation['seeds'][-1]}: mean return "
                  f"{_fmt(evaluation['mean_return'])}, success {_fmt(evaluation['success_rate'])}")
    console.print(f"policy.onnx, metadata.json and parity.json in {shown_path(result.directory)}")
    if not p.passed:
        err_console.print(f"error: parity {p.max_abs:.3g} is above the goal {p.tolerance:g}", markup=False, highlight=False)
        raise typer.Exit(1)


@app.command()
def play(export: Path = ExportArg,
         episodes: int | None = typer.Option(None, help="episodes (default: as many as the export's torch evaluation)"),
         seed: int | None = typer.Option(None, help="first episode's seed (default: the torch evaluation's)"),
         ranges: Path | None = typer.Option(None, help="domain randomisation ranges (YAML) to play under "
                                                      "(MuJoCo envs only)")) -> None:
    """Run an exported ONNX policy in the simulator (onnxruntime, no torch); report return and success
    and compare with the torch policy's evaluation on the same seeds."""
    from rewardlab.export import compare_with_torch, load_export
    from rewardlab.export import play as play_policy

    exported = load_export(export)
    wrap = None
    if ranges is not None:
        from rewardlab.randomization import load_ranges, randomized

        wrap = randomized(load_ranges(ranges))
    result = play_policy(exported, episodes, seed, wrap=wrap)
    table = Table("seed", "return", "length", "success", box=None)
    for e in result.episodes:
        table.add_row(str(e.seed), f"{e.env_return:.4g}", str(e.length), "-" if e.success is None else str(e.success))
    console.print(table)
    console.print(f"mean return {_fmt(result.mean_return())}, success {_fmt(result.success_rate())} over "
                  f"{len(result.episodes)} episodes (onnxruntime{', randomised' if wrap else ''})")
    diff = compare_with_torch(exported, result)
    if diff is not None and wrap is None:
        console.print(f"torch evaluation on the same seeds: max |return difference| {diff:.3g}")


@app.command()
def robustness(export: Path = ExportArg,
               grid: list[str] = typer.Option(..., "--grid", help="an axis, twice: PARAM=LOW:HIGH:COUNT or PARAM=V1,V2,..."),
               episodes: int = typer.Option(3, help="episodes per grid cell (the same seeds in every cell)"),
               seed: int | None = typer.Option(None, help="first episode's seed (default: the export's evaluation seeds)"),
               save: Path | None = typer.Option(None, help="folder for robustness.json and .png (default: a new "
                                                "one in the export)")) -> None:
    """Evaluate an exported policy over a 2-D grid of fixed physics perturbations; write a heat map (MuJoCo
    envs only: gymnasium MuJoCo, MetaWorld)."""
    from rewardlab.errors import UserError
    from rewardlab.export import load_export
    from rewardlab.paths import new_directory, shown_path
    from rewardlab.robustness import parse_axis, robustness_grid, write_grid

    if len(grid) != 2:
        raise UserError(f"--grid must be given exactly twice (two axes), got {len(grid)}")
    axes = [parse_axis(g) for g in grid]
    exported = load_export(export)
    result = robustness_grid(exported, axes[0], axes[1], episodes=episodes, seed=seed)
    folder = save if save is not None else new_directory(exported.directory, "robustness")
    json_path, png = write_grid(result, Path(folder))
    console.print(f"nominal mean return {result.nominal_return:.4g}; {len(result.x_values)} x {len(result.y_values)} cells "
                  f"x {episodes} episodes in {result.wall_s:.0f} s")
    console.print(f"{shown_path(json_path)}, {shown_path(png)}")


@randomize_app.command("feasible")
def randomize_feasible(export: Path = ExportArg,
                       episodes: int = typer.Option(3, help="episodes per tried value"),
                       param: list[str] | None = typer.Option(None, "--param", help="parameters to measure (default: all)"),
                       save: Path | None = typer.Option(None, help="write the ranges as JSON here")) -> None:
    """Measure each parameter's feasible range: perturb it outward until the policy fails (RAPP; MuJoCo envs
    only)."""
    from rewardlab.export import load_export
    from rewardlab.paths import shown_path
    from rewardlab.robustness import feasible_ranges, write_json

    result = feasible_ranges(load_export(export), episodes, param or None)
    _show_feasible(result)
    if save is not None:
        console.print(f"written {shown_path(write_json(save, result))}")


def _show_feasible(result: object) -> None:
    from rewardlab.robustness import FeasibleRanges

    assert isinstance(result, FeasibleRanges)
    console.print(f"works when: {result.criterion}")
    table = Table("parameter", "feasible", "fails below", "fails above", box=None)
    for name, r in result.ranges.items():
        table.add_row(name, f"[{r.low:g}, {r.high:g}]", _fmt(r.failed_below), _fmt(r.failed_above))
    console.print(table)


@randomize_app.command("propose")
def randomize_propose(export: Path = ExportArg,
                      feasible: Path | None = typer.Option(None, help="feasible ranges (JSON from `randomize feasible --save`); "
                                                           "default: measure them now"),
                      episodes: int = typer.Option(3, help="episodes per tried value when measuring"),
                      provider: str = typer.Option("offline", help="offline (labelled no-LLM baseline) or openai"),
                      model: str | None = typer.Option(None, help="model name (openai; else REWARDLAB_MODEL)"),
                      base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint (else OPENAI_BASE_URL)"),
                      api_key: str | None = typer.Option(None, help="API key (else OPENAI_API_KEY)"),
                      out: Path = Out) -> None:
    """Ask the LLM provider for domain randomisation ranges inside the measured feasible ranges
    (DrEureka); check the reply and store it with the exchange."""
    from rewardlab.errors import UserError
    from rewardlab.export import load_export
    from rewardlab.paths import shown_path
    from rewardlab.robustness import FeasibleRanges, feasible_ranges, propose_ranges

    exported = load_export(export)
    if feasible is not None:
        if not feasible.is_file():
            raise UserError(f"no feasible ranges file {feasible}")
        try:
            measured = FeasibleRanges.model_validate_json(feasible.read_text())
        except ValueError as e:
            raise UserError(f"{feasible} is not a feasible-ranges file: {' '.join(str(e).split())[:160]}") from None
    else:
        measured = feasible_ranges(exported, episodes)
        _show_feasible(measured)
    proposal = propose_ranges(exported, measured, out, provider, model, base_url, api_key)
    table = Table("parameter", "proposed", "feasible", box=None)
    for name, r in proposal.ranges.items():
        f = measured.ranges[name]
        table.add_row(name, f"[{r.low:g}, {r.high:g}]", f"[{f.low:g}, {f.high:g}]")
    console.print(table)
    label = " (offline baseline, no LLM)" if proposal.provider == "offline" else ""
    console.print(f"run {proposal.run_id}{label}: ranges.yaml, prompt.md, reply.md in {shown_path(proposal.directory)}")
