"""Learning curves as SVG (matplotlib, Agg): env and program return, success rate, and each reward
component's per-episode sum over training, from a stored :class:`~rewardlab.types.TrialResult`."""

from __future__ import annotations

import io

from rewardlab.types import CurvePoint


def curves_svg(curve: list[CurvePoint], title: str = "") -> str:
    """Three panels side by side: returns, success rate, components; each against training steps.

    :param curve: the stored learning curve (step 0 is the untrained policy)
    :return: an SVG document (text); panels with no data say so
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p.step for p in curve]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 2.8))
    ret, succ, comp = axes
    for name, values in (("env return", [p.return_env for p in curve]),
                         ("program return", [p.return_program for p in curve])):
        if any(v is not None for v in values):
            ret.plot(steps, [float("nan") if v is None else v for v in values], marker="o", ms=3, label=name)
    ret.set_title("learning curve (return per episode)", fontsize=9)
    successes = [p.success for p in curve]
    if any(v is not None for v in successes):
        succ.plot(steps, [float("nan") if v is None else v for v in successes], marker="o", ms=3, color="tab:green")
        succ.set_ylim(-0.05, 1.05)
    else:
        succ.text(0.5, 0.5, "the card has no success rule", ha="center", va="center", transform=succ.transAxes)
    succ.set_title("success rate", fontsize=9)
    names = sorted({k for p in curve for k in p.components})
    for name in names:
        comp.plot(steps, [p.components.get(name, float("nan")) for p in curve], marker="o", ms=3, label=name)
    if not names:
        comp.text(0.5, 0.5, "the program names no components", ha="center", va="center", transform=comp.transAxes)
    comp.set_title("reward components (sum per episode)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("training steps", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    return buffer.getvalue()
