"""``rewardlab memory seed|stats``: the correction memory."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rewardlab.cli.app import app, console
from rewardlab.store import RunStore

memory_app = typer.Typer(no_args_is_help=True, help="The correction memory: (failing code, feedback, fixed code) pairs.")
app.add_typer(memory_app, name="memory")
Out = typer.Option(Path("runs"), help="runs root: the SQLite store and run directories")


@memory_app.command("seed")
def memory_seed(family: str | None = typer.Option(None, help="only cards of this simulator family"),
                out: Path = Out) -> None:
    """Seed teacher-guided pairs: realistic mistakes made in the hand-written rewards, with the checks'
    real feedback and the original as the fix (E2CL's teacher-guided exploration, for reward code)."""
    from rewardlab.cards import list_cards
    from rewardlab.errors import UserError
    from rewardlab.store import DB_NAME
    from rewardlab.text2reward.memory import seed_teacher_pairs

    cards = [c for c in list_cards() if family is None or c.family == family]
    if not cards:
        raise UserError(f"no env cards of family {family!r}")
    with RunStore(out / DB_NAME) as store:
        seed_teacher_pairs(store, cards=cards)
        _memory_table(store)


@memory_app.command("stats")
def memory_stats(out: Path = Out) -> None:
    """Pairs in the memory per family and rule, and how often generated programs failed at first."""
    from rewardlab.store import DB_NAME
    from rewardlab.text2reward.memory import first_attempt_stats

    with RunStore(out / DB_NAME) as store:
        _memory_table(store)
        console.print(first_attempt_stats(store))


def _memory_table(store: RunStore) -> None:
    from rewardlab.text2reward.memory import CorrectionMemory

    table = Table("family", "origin", "rule", "pairs", box=None)
    for origin, families in CorrectionMemory(store).counts().items():
        for fam, rules in families.items():
            for rule, n in sorted(rules.items()):
                table.add_row(fam, origin, rule, str(n))
    console.print(table)
