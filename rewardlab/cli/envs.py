"""``rewardlab envs list|show``: the env cards."""

from __future__ import annotations

import typer
from rich.table import Table

from rewardlab.cli.app import app, console

envs_app = typer.Typer(no_args_is_help=True, help="List and show env cards.")
app.add_typer(envs_app, name="envs")


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
        from rewardlab.sims import verify_card

        verify_card(card, use_cache=False)
        console.print("[green]card matches the live env[/green]")
