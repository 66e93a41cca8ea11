"""``rewardlab e2cl play|report``: run an E2CL agent (a trained one or an LLM) step by step in the household;
summarise an E2CL experiment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rewardlab.cli.app import app, console
from rewardlab.errors import UserError

e2cl_app = typer.Typer(no_args_is_help=True, help="E2CL agents in the household environment.")
app.add_typer(e2cl_app, name="e2cl")


def find_model(path: Path, algo: str = "e2cl") -> Path:
    """A trained agent's ``model.pt``: the file itself, a trial directory, or a run directory (its first
    trial of ``algo`` by seed).

    :raises UserError: nothing trained there
    """
    if path.is_file():
        return path
    if (path / "model.pt").is_file():
        return path / "model.pt"
    found = []
    for result in sorted(path.glob("trials/*/result.json")):
        data = json.loads(result.read_text())
        if data.get("trainer") == "e2cl" and data.get("algo") == algo and (result.parent / "model.pt").is_file():
            found.append(result.parent / "model.pt")
    if not found:
        raise UserError(f"no trained {algo} agent (model.pt) at {path}; pass a trial directory, a run directory "
                        "of an e2cl experiment, or a model.pt")
    return found[0]


@e2cl_app.command("play")
def play(
    task: str = typer.Option(..., help='the instruction, e.g. "put the apple in the fridge"'),
    agent: str = typer.Option(..., help="a trained agent (model.pt, trial or run directory) or 'llm'"),
    home: int = typer.Option(0, help="home id: every id >= 0 is a generated home; 0-15 are the training "
                           "homes, the unseen-home split's ids start at 1000 (rewardlab.household.tasks)"),
    seed: int = typer.Option(0, help="seed of the episode"),
    speculative: bool = typer.Option(True, help="E2CL's speculative inference (else execute the planned step)"),
    algo: str = typer.Option("e2cl", help="which algorithm's trial to take from a run directory"),
    max_steps: int = typer.Option(30, help="step limit"),
    model: str | None = typer.Option(None, help="llm: model name (else $REWARDLAB_MODEL)"),
    base_url: str | None = typer.Option(None, help="llm: OpenAI-compatible endpoint (else $OPENAI_BASE_URL)"),
    api_key: str | None = typer.Option(None, help="llm: API key (else $OPENAI_API_KEY)"),
    memory: Path | None = typer.Option(None, help="llm: E2CL datasets (a JSONL file, trial or run directory) "
                                       "whose corrections are retrieved as few-shot examples"),
) -> None:
    """Run one episode and show each step: the proposal, the predicted feedback, the correction and the
    env's real feedback."""
    from rewardlab.e2cl.agents import Agent, SeqAgent
    from rewardlab.e2cl.inference import run_episodes
    from rewardlab.household.env import HouseholdEnv
    from rewardlab.household.tasks import parse_task

    parse_task(task)  # an unknown task is one line before anything loads
    if home < 0:
        raise UserError(f"--home must be >= 0 (got {home})")
    runner: Agent
    if agent == "llm":
        from rewardlab.e2cl.llm import CorrectionMemory, LLMAgent
        from rewardlab.text2reward.providers import make_provider

        provider = make_provider("openai", model=model, base_url=base_url, api_key=api_key)
        runner = LLMAgent(provider, getattr(provider, "model", model or ""),
                          CorrectionMemory.from_path(memory) if memory is not None else None)
    else:
        runner = SeqAgent.load(find_model(Path(agent), algo))
    env = HouseholdEnv(max_steps=max_steps)

    def show(_: int, e: dict[str, Any]) -> None:
        console.print(f"[bold]step {e['t'] + 1}[/bold]  proposal: {e['proposal']}", highlight=False)
        if e["predicted_feedback"] is not None:
            console.print(f"  predicted feedback: {e['predicted_feedback']}", highlight=False)
        if e["correction"] is not None:
            verdict = "accepted" if e["accepted"] else "rejected"
            console.print(f"  correction: {e['correction']} (re-check: {e['correction_predicted_feedback']}; {verdict})",
                          highlight=False)
        console.print(f"  executed: {e['executed']}  env: {e['env_feedback']}", highlight=False)

    console.print(f"task: {task}  home: {home}", highlight=False)
    stats = run_episodes(runner, [env], [seed], speculative, options=[{"home": home, "task": task}], on_step=show)[0]
    console.print(f"success: {stats.success}  executability: {stats.executability:.2f} "
                  f"({stats.executable}/{stats.steps} steps)  corrections fired {stats.fired}, accepted {stats.accepted}",
                  highlight=False)


@e2cl_app.command("report")
def report(run: str = typer.Argument(..., help="a run directory or run id"),
           out: Path = typer.Option(Path("runs"), help="runs root: the SQLite store and run directories")) -> None:
    """Success and executability per split and algorithm, mean and 95% CI over seeds (``e2cl_report.md``)."""
    from rewardlab.e2cl.report import write_e2cl_report

    path = write_e2cl_report(run, out)
    console.print(path.read_text(), markup=False, highlight=False)
    console.print(f"written to {path}", highlight=False)


@e2cl_app.command("feasibility")
def feasibility(
    card: str = typer.Option("mujoco/Reacher-v5", help="a MuJoCo env card"),
    ppo_steps: int = typer.Option(50_000, help="PPO training steps per seed (the plain policy)"),
    data_steps: int = typer.Option(3_000, help="policy steps of feasibility data collection per seed"),
    seeds: str = typer.Option("0,1,2", help="comma-separated seeds"),
    v_max: float = typer.Option(10.0, help="joint-speed limit in rad/s"),
    episodes: int = typer.Option(20, help="evaluation episodes per seed"),
    out: Path = typer.Option(Path("runs/e2cl-feasibility"), help="where the PPO trials (reused per card, seed "
                                                        "and budget) and a new results folder per call go"),
) -> None:
    """E2CL's continuous-control variant: a learned feasibility model and corrector as a wrapper around
    a PPO policy under a joint-speed limit; violation rate and success, plain vs corrected."""
    from rewardlab.e2cl.control.feasibility import feasibility_experiment
    from rewardlab.runtime import limit_threads

    limit_threads()
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers (got {seeds!r})") from None
    if not seed_list:
        raise UserError("--seeds names no seed")
    rows = feasibility_experiment(card, ppo_steps, data_steps, seed_list, v_max, episodes, out)
    from rewardlab.paths import new_directory, safe_name

    result_dir = new_directory(out, f"feasibility-{safe_name(card)}")  # never overwrites an earlier result
    settings = {"card": card, "ppo_steps": ppo_steps, "data_steps": data_steps, "seeds": seed_list, "v_max": v_max,
                "episodes": episodes}
    (result_dir / "results.json").write_text(json.dumps({"settings": settings, "seeds": rows}, indent=1))
    def shown(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for r in rows:
        p, c = r["plain"], r["corrected"]
        console.print(f"seed {r['seed']}: violation rate {p['violation_rate']:.3f} -> {c['violation_rate']:.3f}; "
                      f"success {shown(p['success'], 2)} -> {shown(c['success'], 2)}; final distance "
                      f"{shown(p['final_distance'], 3)} -> {shown(c['final_distance'], 3)} m; corrections fired "
                      f"{r['fired']:.1%} of steps, taken {r['accepted']:.1%}", highlight=False)
    console.print(f"written to {result_dir / 'results.json'}", highlight=False)
