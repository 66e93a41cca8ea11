"""Text2Reward's env accessors as card fields: ``self.env._get_pos_goal()`` reads ``goal_position``.

Each family may declare, in ``envs/<family>/compat.yaml``, expressions its published programs use and
the card field each reads. The sandbox rewrites them before its policy runs, and the state extractor
sees the field they read, so such a program runs unmodified and extracts what it needs.
"""

from __future__ import annotations

import ast
import functools

import yaml

from rewardlab.resources import resource_dir


@functools.cache
def compat_aliases() -> dict[str, str]:
    """Text2Reward's env accessors -> card fields, from every family's ``envs/<family>/compat.yaml``
    (``self.env._get_pos_goal(): goal_position``); where two families name the same expression, the
    first in alphabetical order is used."""
    table: dict[str, str] = {}
    try:
        folder = resource_dir("envs")
    except FileNotFoundError:
        return table
    for path in sorted(folder.glob("*/compat.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        for expr, field_name in (data.get("compat_aliases") or {}).items():
            table.setdefault(str(expr), str(field_name))
    return table


def apply_aliases(tree: ast.Module) -> ast.Module:
    """Rewrite each aliased accessor (``self.env._get_pos_goal()``) into the card field it reads
    (``self.goal_position``), before the policy sees the tree."""
    aliases = {ast.dump(ast.parse(expr, mode="eval").body): field for expr, field in compat_aliases().items()}
    if not aliases:
        return tree

    class Rewrite(ast.NodeTransformer):
        def visit(self, node: ast.AST) -> ast.AST:
            if isinstance(node, ast.expr) and (target := aliases.get(ast.dump(node))) is not None:
                new = ast.parse(f"self.{target}", mode="eval").body
                return ast.copy_location(new, node)
            return super().visit(node)

    rewritten = Rewrite().visit(tree)
    assert isinstance(rewritten, ast.Module)
    return ast.fix_missing_locations(rewritten)
