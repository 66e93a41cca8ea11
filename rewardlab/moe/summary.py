"""The routing section of a run report: the last recorded diagnostics of each trial's MoE layers, read
from the ``moe_diagnostics.json`` that :class:`rewardlab.moe.sb3.MoECallback` writes (json only, no torch:
the report imports it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

#: The metrics shown, in order (the rest stay in the JSON and TensorBoard).
SHOWN = ("load_imbalance", "utilization_entropy", "dead_experts", "drop_rate", "router_entropy", "active_experts",
         "change_rate", "task_expert_mi")


def last_diagnostics(trial_dir: str | Path) -> dict[str, dict[str, float]]:
    """``{layer key (moe/<role>/<layer>): {metric: latest value}}`` for one trial; empty when it had no MoE."""
    path = Path(trial_dir) / "moe_diagnostics.json"
    if not path.is_file():
        return {}
    layers: dict[str, dict[str, float]] = {}
    for row in json.loads(path.read_text()).get("history", []):
        for key, value in row.items():
            if key == "step":
                continue
            parts = key.split("/", 3)  # moe / role / layer (dotted, no slash) / metric (may hold a slash)
            if len(parts) == 4:
                layers.setdefault("/".join(parts[:3]), {})[parts[3]] = value
    return layers


def routing_section(trials: list[tuple[str, str | Path | None]]) -> list[str]:
    """Markdown lines: one row per (trial, MoE layer) with the :data:`SHOWN` metrics; ``[]`` when no trial
    has MoE diagnostics.

    :param trials: ``(trial label, trial directory)`` pairs
    """
    rows = []
    for label, directory in trials:
        if directory is None:
            continue
        for layer, metrics in sorted(last_diagnostics(directory).items()):
            cells = [f"{metrics[m]:.3g}" if m in metrics and math.isfinite(metrics[m]) else "-" for m in SHOWN]
            shown = label.replace("|", "\\|")  # trial keys hold "|"; escaped, they stay one table cell
            rows.append(f"| {shown} | {layer.removeprefix('moe/')} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["## Routing (MoE policies)", "",
            "Last recorded values of each MoE layer (training batch; change rate on the fixed probe batch). "
            "All of them over time: TensorBoard under `moe/`, and each trial's `moe_diagnostics.json` "
            "(with saturation against the final routing).", "",
            "| trial | layer | " + " | ".join(SHOWN) + " |", "|---|---|" + "---|" * len(SHOWN), *rows, ""]
