"""The ``rewardlab`` command line (typer + rich); also ``python -m rewardlab``.

User errors (a bad card, spec, flag, reward program or a missing file) print one line and exit 2;
a rejected reward program in ``check`` exits 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load: see training.limit_threads

import typer
from rich.console import Console
from rich.table import Table

from rewardlab.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rewardlab: design, check and train dense reward functions for RL.")
envs_app = typer.Typer(no_args_is_help=True, help="List and show env cards.")
app.add_typer(envs_app, name="envs")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width


@envs_app.command("list")
def envs_list() -> None:
    """List every env card with its simulator and instruction."""
    from rewardlab.cards import list_cards

    table = Table("id", "simulator", "steps", "success", "instruction", box=None)
    table.columns[0].no_wrap = True
    for card in list_cards():
        table.add_row(card.id, card.simulator, str(card.episode_steps), card.success or "-", card.instruction)
    console.print(table)


@envs_app.command("show")
def envs_show(env_id: str = typer.Argument(..., help="card id, e.g. metaworld/drawer-open-v3, or a YAML path"),
              live: bool = typer.Option(False, help="also check the card against the live env")) -> None:
    """Print a card and its class-stub rendering (what an LLM sees)."""
    from rewardlab.cards import load_card, render_stubs

    card = load_card(env_id)
    console.rule(f"[bold]{card.id}[/bold]  ({card.path})")
    console.print(card.path.read_text() if card.path else card.model_dump_json(indent=2), markup=False, highlight=False)
    console.rule("class stubs")
    console.print(render_stubs(card), markup=False, highlight=False)
    ref = card.reference_reward_path()
    console.print(f"\nhand-written reference reward: {ref or 'none'}")
    if live:
        from rewardlab.sims import make_env

        card.check_live(make_env(card, seed=0))
        console.print("[green]card matches the live env[/green]")


@app.command()
def check(reward: Path = typer.Argument(..., help="reward program file"),
          env: str = typer.Option(..., "--env", help="card id the program is for"),
          states: int = typer.Option(256, help="sampled states to run it on"),
          seed: int = typer.Option(0, help="seed of the sampling rollouts")) -> None:
    """Static check + sandbox trial of a reward program; prints the verdict and component statistics."""
    from rewardlab.cards import load_card
    from rewardlab.checks import check_program

    card = load_card(env)
    if not reward.is_file():
        raise UserError(f"reward program file not found: {reward}")
    report = check_program(reward, card, n_states=states, seed=seed)
    if not report.ok:
        where = f" line {report.line}" if report.line else ""
        err_console.print(f"REJECTED [{report.rule}]{where}: {report.message}", markup=False, highlight=False, style="red")
        raise typer.Exit(1)
    console.print(f"[green]OK[/green] {reward} on {card.id}: runs {report.mode} over {states} sampled states "
                  f"in {report.seconds:.2f} s (sandbox process)")
    table = Table("term", "mean", "std", "min", "max", box=None)
    for name, s in [("total", report.total), *report.components.items()]:
        table.add_row(name, *(f"{s[k]:.4g}" for k in ("mean", "std", "min", "max")))
    console.print(table)


@app.command()
def train(env: str = typer.Option(..., "--env", help="card id"),
          reward: str = typer.Option("reference", help="env|builtin (the env's own), reference, or a program file"),
          algo: str = typer.Option("ppo", help="ppo, sac or td3"),
          steps: int = typer.Option(50_000, help="environment steps"),
          seed: int = typer.Option(0),
          eval_episodes: int = typer.Option(5, help="deterministic evaluation episodes"),
          out: Path = typer.Option(Path("runs/train"), help="run directory")) -> None:
    """Train one agent and evaluate it under the env's reward and the program's."""
    from rich.progress import BarColumn, Progress, TimeRemainingColumn

    from rewardlab.training import train as train_agent

    run_dir = out / f"{env.replace('/', '_')}-{Path(reward).stem}-{algo}-{seed}"
    with Progress("[progress.description]{task.description}", BarColumn(), "{task.completed}/{task.total}",
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(f"{algo} on {env}", total=steps)
        result = train_agent(env, reward, algo, steps, seed, run_dir, eval_episodes=eval_episodes,
                             progress=lambda done, total: bar.update(task, completed=min(done, total)))
    ev = result.eval
    table = Table("episodes", "env return", "program return", "success", box=None)
    mean = lambda xs: "-" if not xs or xs[0] is None else f"{sum(map(float, xs)) / len(xs):.4g}"  # noqa: E731
    table.add_row(str(len(ev["env_return"])), mean(ev["env_return"]), mean(ev["program_return"]), mean(ev["success"]))
    console.print(table)
    console.print(f"model, TensorBoard logs and result.json in {run_dir}")


# -- Text2Reward: generation, human feedback, lineage ----------------------------------------------
Provider = Annotated[str, typer.Option(help="openai (any OpenAI-compatible endpoint), replay (stored replies), "
                                            "offline (no-LLM baseline: retrieved reference rewards)")]
Model = Annotated[Optional[str], typer.Option(help="model name (else $REWARDLAB_MODEL)")]
BaseUrl = Annotated[Optional[str], typer.Option(help="endpoint, e.g. http://127.0.0.1:8000/v1 (else $OPENAI_BASE_URL)")]
ApiKey = Annotated[Optional[str], typer.Option(help="API key (else $OPENAI_API_KEY)")]
ProbeSteps = Annotated[int, typer.Option(help="training steps of each candidate's probe (0: rank by the checks)")]
Out = Annotated[Path, typer.Option(help="runs root: the SQLite store and run directories")]


@app.command()
def run(spec: Path = typer.Argument(..., help="experiment spec (YAML)"),
        out: Path = typer.Option(Path("runs"), help="runs root: the SQLite store and run directories"),
        resume: bool = typer.Option(False, "--resume", help="continue the latest run of this spec, skipping finished trials"),
        workers: Optional[int] = typer.Option(None, help="worker processes (default: the spec's, 2)"),
        backend: str = typer.Option("local", help="local worker processes (ray: later)"),
        provider: Optional[str] = typer.Option(None, help="override the provider of generated reward sources"),
        model: Model = None, base_url: BaseUrl = None) -> None:
    """Run an experiment spec: every task x reward x algorithm x seed, then write its report."""
    from rewardlab.runs.runner import run_experiment

    overrides = {"provider": provider, "model": model, "base_url": base_url}
    run_dir = run_experiment(spec, out=out, resume=resume, workers=workers, backend=backend, console=console,
                             provider_overrides=overrides)
    console.print(f"report: {run_dir / 'report.md'}")


@app.command()
def report(run: str = typer.Argument(..., help="run id or run directory"),
           out: Path = typer.Option(Path("runs"), help="runs root")) -> None:
    """(Re)write a run's report: tables with mean and 95% CI over seeds, learning-curve plots."""
    from rewardlab.runs.report import write_report

    console.print(f"report: {write_report(run, out=out)}")


def _print_generation(result: "object") -> None:
    r = result  # a GenerationResult
    best = f"{r.best_program_id[:12]} (score {r.best_score:.3g})" if r.best_program_id else "none passed the checks"
    console.print(f"run {r.run_id}: {r.candidates} candidates, {r.rejected} rejected after retries, "
                  f"{r.first_attempt_failures} failed at first; {r.tokens} tokens; {r.stopped}")
    console.print(f"best reward: {best}")
    if r.best_program_id:
        console.print(f"  saved as {r.run_dir / 'best_reward.py'}; refine with: rewardlab refine {r.best_program_id[:12]} "
                      "--feedback \"...\"", markup=False)


@app.command()
def generate(env: str = typer.Option(..., "--env", help="card id"),
             instruction: Optional[str] = typer.Option(None, help="the task in words (default: the card's)"),
             provider: Provider = "offline", model: Model = None, base_url: BaseUrl = None, api_key: ApiKey = None,
             samples: int = typer.Option(4, help="programs per round"),
             rounds: int = typer.Option(3, help="rounds of training reflection"),
             few_shot: int = typer.Option(0, help="retrieved reference rewards in the prompt (0: zero-shot)"),
             temperature: float = typer.Option(0.7),
             max_tokens: int = typer.Option(2048, help="cap on each reply"),
             token_budget: Optional[int] = typer.Option(None, help="stop asking after this many tokens"),
             fix_attempts: int = typer.Option(2, help="error-feedback retries per candidate"),
             probe_steps: ProbeSteps = 20_000,
             probe_algo: Optional[str] = typer.Option(None, help="ppo, sac or td3 (default: sac on MetaWorld, else ppo)"),
             final_steps: int = typer.Option(0, help="train the best program this long at the end"),
             eval_episodes: int = typer.Option(3),
             success_target: Optional[float] = typer.Option(None, help="stop once a probe reaches this success rate"),
             memory: bool = typer.Option(True, help="use the correction memory in error prompts"),
             seed: int = typer.Option(0), out: Out = Path("runs")) -> None:
    """Generate reward programs with an LLM: sample, check, rank, probe-train, reflect, repeat."""
    from rewardlab.text2reward.loop import GenerationConfig, generate as run_generation

    cfg = GenerationConfig(card_id=env, instruction=instruction, provider=provider, model=model, base_url=base_url,
                           api_key=api_key, samples=samples, rounds=rounds, few_shot=few_shot, temperature=temperature,
                           max_tokens=max_tokens, token_budget=token_budget, fix_attempts=fix_attempts,
                           probe_steps=probe_steps, probe_algo=probe_algo, final_steps=final_steps,
                           eval_episodes=eval_episodes, success_target=success_target, use_memory=memory, seed=seed)
    _print_generation(run_generation(cfg, out=out, console=console))


@app.command()
def refine(reward_id: str = typer.Argument(..., help="reward program id (or a unique prefix)"),
           feedback: str = typer.Option(..., help="what should change, in words"),
           observed: Optional[str] = typer.Option(None, help="what the trained agent was seen doing"),
           provider: Provider = "offline", model: Model = None, base_url: BaseUrl = None, api_key: ApiKey = None,
           samples: int = typer.Option(1, help="revisions to ask for"),
           probe_steps: ProbeSteps = 20_000, seed: int = typer.Option(0), out: Out = Path("runs")) -> None:
    """Revise a stored reward program from human feedback; the new version's parent is REWARD_ID."""
    from rewardlab.text2reward.loop import GenerationConfig, refine as run_refine

    cfg = GenerationConfig(card_id="", provider=provider, model=model, base_url=base_url, api_key=api_key,
                           samples=samples, rounds=1, probe_steps=probe_steps, seed=seed)
    _print_generation(run_refine(reward_id, feedback, cfg, observed=observed, out=out, console=console))


@app.command()
def lineage(reward_id: str = typer.Argument(..., help="reward program id (or a unique prefix)"),
            out: Out = Path("runs")) -> None:
    """Show a reward program's family tree (its ancestors' root and every revision) with scores."""
    from rich.text import Text
    from rich.tree import Tree

    from rewardlab.runs.store import DB_NAME, RunStore

    db = out / DB_NAME
    if not db.is_file():
        raise UserError(f"no run store at {db}; pass --out to where your runs are")
    with RunStore(db) as store:
        target = store.find_program(reward_id)
        root = store.lineage(target.id)[-1]

        def label(pid: str, origin: str) -> Text:
            cands = store.candidates(program_id=pid)
            scores = [c["score"] for c in cands if c["score"] is not None]
            status = cands[-1]["status"] if cands else "stored"
            error = next((c["error"] for c in reversed(cands) if c["error"]), None)
            text = f"{pid[:12]}  {origin}  {status}"
            text += f"  score {max(scores):.3g}" if scores else ""
            text += f"  ({error})" if error and status == "rejected" else ""
            return Text(text + ("  <- this one" if pid == target.id else ""))

        def grow(node: Tree, pid: str, seen: set[str]) -> None:
            for child in store.children(pid):
                if child.id not in seen:
                    seen.add(child.id)
                    grow(node.add(label(child.id, child.origin)), child.id, seen)

        tree = Tree(label(root.id, root.origin))
        grow(tree, root.id, {root.id})
        console.print(tree)


memory_app = typer.Typer(no_args_is_help=True, help="The correction memory: (failing code, feedback, fixed code) pairs.")
app.add_typer(memory_app, name="memory")


@memory_app.command("seed")
def memory_seed(family: Optional[str] = typer.Option(None, help="only cards of this simulator family"),
                out: Out = Path("runs")) -> None:
    """Seed teacher-guided pairs: realistic mistakes made in the hand-written rewards, with the checks'
    real feedback and the original as the fix (E2CL's teacher-guided exploration, for reward code)."""
    from rewardlab.cards import list_cards
    from rewardlab.runs.store import DB_NAME, RunStore
    from rewardlab.text2reward.memory import seed_teacher_pairs

    cards = [c for c in list_cards() if family is None or c.family == family]
    if not cards:
        raise UserError(f"no env cards of family {family!r}")
    with RunStore(out / DB_NAME) as store:
        seed_teacher_pairs(store, cards=cards)
        _memory_table(store)


@memory_app.command("stats")
def memory_stats(out: Out = Path("runs")) -> None:
    """Pairs in the memory per family and rule, and how often generated programs failed at first."""
    from rewardlab.runs.store import DB_NAME, RunStore
    from rewardlab.text2reward.memory import first_attempt_stats

    with RunStore(out / DB_NAME) as store:
        _memory_table(store)
        console.print(first_attempt_stats(store))


def _memory_table(store: "object") -> None:
    from rewardlab.text2reward.memory import CorrectionMemory

    table = Table("family", "origin", "rule", "pairs", box=None)
    for origin, families in CorrectionMemory(store).counts().items():
        for fam, rules in families.items():
            for rule, n in sorted(rules.items()):
                table.add_row(fam, origin, rule, str(n))
    console.print(table)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except UserError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
