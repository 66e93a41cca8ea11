"""``rewardlab train``: one agent on one task with one reward source."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table

from rewardlab.cli.app import app, console
from rewardlab.config import Budget, Evaluation, TrainConfig, validate_config
from rewardlab.types import TrialResult

_FLAGS = {"seed": "--seed", "budget.steps": "--steps", "steps": "--steps", "evaluation.episodes": "--eval-episodes",
          "episodes": "--eval-episodes", "evaluation.every": "--eval-every", "every": "--eval-every",
          "algo": "--algo", "trainer": "--trainer"}


#: The file in a train run's directory that says what was trained (the review page reads it).
SETTINGS_NAME = "train.yaml"


def write_settings(run_dir: Path, card_id: str, source_name: str, reward: str, shaper: str | None,
                   config: TrainConfig, shaper_params: dict[str, object] | None = None) -> None:
    """Write what the run trains (card, reward source and shaper with its parameters, algorithm, seed,
    budget, and the preset overrides the options made: an MoE policy's router and experts, randomisation
    ranges) as ``run_dir/train.yaml``: ``result.json`` holds the outcome, not the task, and the directory
    name cannot be parsed back."""
    import yaml

    settings = {"kind": "train", "card_id": card_id, "reward": source_name, "reward_given": reward, "shaper": shaper,
                "shaper_params": shaper_params or {}, **config.model_dump(mode="json")}
    (run_dir / SETTINGS_NAME).write_text(yaml.safe_dump(settings, sort_keys=False))


def _moe_policy_kwargs(algo: str, router: str, experts: int) -> dict[str, object]:
    """``--policy moe``'s policy_kwargs; a router whose default settings (which the CLI cannot set, e.g. top-k's
    k=2) do not fit ``--experts`` is refused naming the ``--experts`` values that fit."""
    from rewardlab.errors import UserError
    from rewardlab.moe.routers import ROUTER_CLASSES, make_router
    from rewardlab.moe.sb3 import moe_policy_kwargs

    try:
        return moe_policy_kwargs(algo, router, n_experts=experts)
    except UserError as e:
        if router not in ROUTER_CLASSES:
            raise

        def fits(n: int) -> bool:
            try:
                make_router(router, 4, n)
            except UserError:
                return False
            return True

        ok = [n for n in range(1, 17) if fits(n)]
        which = (f">= {ok[0]}" if ok and ok == list(range(ok[0], 17)) else ", ".join(map(str, ok)) or "none up to 16")
        raise UserError(f"--experts {experts} does not fit --router {router} with its default settings, which the CLI "
                        f"cannot change ({e}): use --experts {which}, or set the router in a spec's policy_kwargs") from None


@app.command()
def train(env: str = typer.Option(..., "--env", help="card id (or card YAML)"),
          reward: str | None = typer.Option(None, help="env|builtin (the env's own), reference, or a program file "
                                            "(default: reference; env with --shaper)"),
          shaper: str | None = typer.Option(None, help="a registered shaper added to the reward (pbrs, exprd, ...)"),
          budget: int | None = typer.Option(None, "--budget", help="the shaper's budget B (exprd: rewarded states)"),
          potential: str | None = typer.Option(None, help="pbrs: the potential (a program file, or V*)"),
          neural: bool = typer.Option(False, "--neural", help="explors, explob, selfrs: the neural variant, for an "
                                      "SB3 learner (ppo), as {name: explors, neural: true} in a spec"),
          algo: str = typer.Option("ppo", help="the trainer's algorithm: ppo, sac, td3, dqn or reinforce (neural) for sb3"),
          trainer: str = typer.Option("sb3", help="registered trainer"),
          steps: int = typer.Option(50_000, help=f"{Budget.model_fields['steps'].description} "
                                    "(episodes per run for --trainer tabular)"),
          seed: int = typer.Option(0, help="seed of the agent, its envs and (offset) its evaluation envs"),
          eval_episodes: int = typer.Option(Evaluation().episodes, help=Evaluation.model_fields["episodes"].description),
          eval_every: int | None = typer.Option(None, help=Evaluation.model_fields["every"].description),
          out: Path = typer.Option(Path("runs/train"), help="folder of run directories (a new one per run)"),
          policy: str = typer.Option("mlp", help="mlp (the preset's network) or moe (mixture-of-experts layers)"),
          router: str | None = typer.Option(None, help="with --policy moe: the router, with its default settings "
                                            "(default topk; topk, prototyping, expert_choice, norm_sigmoid, softmax, "
                                            "modified_softmax, dense_to_sparse, tsallis, soft_moe)"),
          experts: int = typer.Option(4, help="with --policy moe: routed experts per layer"),
          randomize: Path | None = typer.Option(None, help="domain randomisation ranges (YAML) for the training envs "
                                                "(evaluation stays nominal)")) -> None:
    """Train one agent and evaluate it under the env's reward and the program's."""
    from rich.progress import BarColumn, Progress, TimeRemainingColumn

    from rewardlab.cards import load_card
    from rewardlab.errors import UserError
    from rewardlab.paths import new_directory, relative_path, safe_name
    from rewardlab.program import CompatModeWarning
    from rewardlab.sims import verify_card
    from rewardlab.sources import parse_source, resolve_source
    from rewardlab.training import validate
    from rewardlab.training.sb3 import BudgetWarning, SlowRewardWarning

    if policy not in ("mlp", "moe"):
        raise UserError(f"--policy must be mlp or moe (got {policy!r})")
    if policy != "moe" and (router is not None or experts != 4):
        raise UserError("--router and --experts need --policy moe")
    overrides = {}
    if policy == "moe":
        if trainer != "sb3":
            raise UserError(f"--policy moe needs the SB3 trainer (--trainer sb3 with --algo ppo, sac or td3; "
                            f"got --trainer {trainer})")
        if experts < 1:
            raise UserError(f"--experts must be >= 1 (got {experts})")
        overrides["policy_kwargs"] = _moe_policy_kwargs(algo, router or "topk", experts)
    if randomize is not None:
        from rewardlab.randomization import load_ranges

        overrides["randomization"] = {name: r.as_list() for name, r in load_ranges(randomize).items()}
    config = validate_config(TrainConfig, {"trainer": trainer, "algo": algo, "seed": seed, "budget": {"steps": steps},
                                           "evaluation": {"episodes": eval_episodes, "every": eval_every},
                                           "overrides": overrides},
                             "rewardlab train", _FLAGS)
    card = load_card(env)
    verify_card(card)
    base = reward or ("env" if shaper else "reference")
    if shaper is None and (budget is not None or potential is not None):
        raise UserError("--budget and --potential are a shaper's settings; give --shaper too")
    if neural:
        from rewardlab.shaping.explors import NEURAL_SHAPERS

        if shaper is None:
            raise UserError("--neural is a shaper's setting (explors, explob, selfrs); give --shaper too")
        if shaper not in NEURAL_SHAPERS:
            raise UserError(f"--neural applies to {', '.join(NEURAL_SHAPERS)}; shaper {shaper!r} has no neural variant")
        if trainer == "tabular":
            raise UserError(f"--neural {shaper} trains an SB3 learner (--trainer sb3, --algo ppo or reinforce); "
                            "drop --neural for the tabular trainer")
    if shaper is not None:
        params: dict[str, object] = {k: v for k, v in (("budget", budget), ("potential", potential)) if v is not None}
        if neural:
            params["neural"] = True
        name = f"{shaper}-neural" if neural else shaper  # the label in reports and the run's name
        source = parse_source({"name": name, "base": base, "shaper": {"name": shaper, **params}})
    else:
        source = parse_source(base)
    resolved = resolve_source(source, card)  # reads and statically checks the program before anything is made
    if shaper is not None:
        from rewardlab.shaping.base import check_shaper_for

        check_shaper_for(card, shaper, source.shaper.params, trainer, algo)  # type: ignore[union-attr]
    chosen = validate(card, config)
    learner = f"{algo}-moe_{router or 'topk'}-e{experts}" if policy == "moe" else algo  # an MoE run is told apart by name
    run_dir = new_directory(out, f"{safe_name(card.id)}-{source.name}-{learner}-{seed}")
    try:
        write_settings(run_dir, card.id, source.name, reward or base, shaper, config,
                       source.shaper.params if shaper is not None else None)  # type: ignore[union-attr]
        with Progress("[progress.description]{task.description}", BarColumn(), "{task.completed}/{task.total}",
                      TimeRemainingColumn(), console=console) as bar, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SlowRewardWarning)
            warnings.simplefilter("always", CompatModeWarning)
            warnings.simplefilter("always", BudgetWarning)
            task = bar.add_task(f"{algo} on {card.id}", total=steps)
            result = chosen.train(card, resolved, config, run_dir,
                                  progress=lambda done, total: bar.update(task, completed=min(done, total)))
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # a failed training leaves no half-written run behind
        raise
    shown = {str(w.message) for w in caught
             if issubclass(w.category, (SlowRewardWarning, CompatModeWarning, BudgetWarning))}
    for message in sorted(shown):  # each once, as one line
        console.print(f"[yellow]warning:[/] {message}", highlight=False)
    ev = result.eval

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    if result.trainer == "tabular":
        _print_tabular(result, run_dir, fmt)
        return
    table = Table("episodes", "env return", "program return", "success", box=None)
    table.add_row(str(ev.episodes), fmt(ev.mean("env_return")), fmt(ev.mean("program_return")), fmt(ev.mean("success")))
    console.print(table)
    console.print(f"model, TensorBoard logs and result.json in {relative_path(run_dir)}")


def _print_tabular(result: TrialResult, run_dir: Path, fmt: Callable[[float | None], str]) -> None:
    """The tabular trainer's summary: it trains ``runs`` learners for ``steps`` episodes each and evaluates each
    learner's policy exactly on the model (no evaluation episodes, no model file, no TensorBoard logs)."""
    import numpy as np

    from rewardlab.paths import relative_path

    runs = result.eval.episodes  # one exact value per run, stored as one "episode" each
    curves = np.load(run_dir / "curves.npz")
    table = Table("runs", "episodes each", "final value (mean over runs)", "target", "optimum", box=None)
    table.add_row(str(runs), str(result.steps), fmt(result.eval.mean("env_return")), fmt(float(curves["target"])),
                  fmt(float(curves["optimum"])))
    console.print(table)
    written = ", ".join(sorted(p.name for p in run_dir.iterdir()))
    console.print(f"{written} in {relative_path(run_dir)}", highlight=False)
