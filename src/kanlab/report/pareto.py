"""Loss against cost: test loss of every finished run against parameters, FLOPs and time per step.

One panel per cost (log-log axes), one colour per family; each family's Pareto front joins the
runs that no other run of the family beats on both axes (no cheaper or equally cheap run has a
lower or equal loss), as a staircase from the cheapest run to the lowest loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from kanlab.report.style import COLORS, DPI, MARKERS, STYLE

Row = dict[str, Any]
PARETO_CAPTION = ("Every finished run's final loss against its parameters, FLOPs per sample and measured "
                  "time per step (log axes); lines: each family's Pareto front, the runs that no cheaper run "
                  "of the family beats.")
COSTS = (("param_count", "parameters"), ("flops", "FLOPs per sample (multiply-adds)"),
         ("time_per_step", "seconds per training step"))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, loss) points that no other point dominates, by increasing cost.

    A point is dominated when another has a cost and a loss at most its own, one of them lower.
    Among identical points one is kept.

    Args:
        points: (cost, loss) pairs.
    Returns:
        The front: costs increasing, losses decreasing.
    """
    front: list[tuple[float, float]] = []
    for cost, loss in sorted(set(points)):
        if not front or loss < front[-1][1]:
            front.append((cost, loss))
    return front


def _tick(value: float, _: int) -> str:
    return f"{value:g}" if 1e-4 <= abs(value) < 1e6 else f"{value:.0e}"


def _value(row: Row, key: str) -> float | None:
    v = row.get(key)
    return float(v) if v is not None and math.isfinite(float(v)) and float(v) > 0 else None


def pareto_figure(rows: Sequence[Row], out: Path | str, *, loss_name: str, title: str) -> Path:
    """Three panels of final test loss against parameters, FLOPs and time per step, with each family's front.

    Args:
        rows: store rows (finished runs with a positive test loss are drawn); flops may be None
            for runs recorded before kanlab counted them (they are left out of that panel).
        out: output path stem (a report figure: PNG only, fixed margins, as it is drawn for every
            task of every report).
        loss_name: the y axis, e.g. "test MSE".
        title: figure title.
    Returns:
        The PNG path.
    """
    done = [r for r in rows if r["status"] == "finished" and _value(r, "test_loss") is not None]
    families = list(dict.fromkeys(r["family"] for r in done))
    with plt.style.context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.17, top=0.87, wspace=0.28)
        for ax, (key, name) in zip(axes, COSTS, strict=True):
            for n, family in enumerate(families):
                points = [(c, float(r["test_loss"])) for r in done if r["family"] == family
                          and (c := _value(r, key)) is not None]
                if not points:
                    continue
                color = COLORS[n % len(COLORS)]
                ax.scatter(*zip(*points, strict=True), color=color, marker=MARKERS.get(family, "o"), s=20,
                           alpha=0.6, label=family)
                front = pareto_front(points)
                ax.step(*zip(*front, strict=True), where="post", color=color, lw=1.4)
                ax.scatter(*zip(*front, strict=True), s=70, facecolors="none", edgecolors=color, lw=1.2)
            ax.set(xscale="log", yscale="log", xlabel=name, ylabel=f"final {loss_name}")
            for axis in (ax.xaxis, ax.yaxis):  # 1, 2, 5 per decade: labels also on axes spanning less
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(FuncFormatter(_tick))
                axis.set_minor_formatter(NullFormatter())
            ax.tick_params(axis="x", labelrotation=25)  # narrow ranges fall back to many linear ticks
        if done:
            axes[0].legend(loc="best", fontsize=8, title="family (circled: its front)", title_fontsize=8)
        else:
            axes[1].text(0.5, 0.5, "no finished runs", ha="center", transform=axes[1].transAxes, color="0.4")
        fig.suptitle(title)
        stem = Path(out)
        png = stem.parent / (stem.name if stem.suffix.lower() == ".png" else f"{stem.name}.png")
        png.parent.mkdir(parents=True, exist_ok=True)
        try:
            fig.savefig(png, dpi=DPI)
        finally:
            plt.close(fig)
        return png
