"""RMSE against grid size for runs that extend their grid (the KAN paper's Figure 2.3).

Per model label: the median over finished seeds of the train and test RMSE at the end of each grid
stage, drawn on log-log axes with the least-squares slope of log RMSE on log G (stats.scaling_fit)
and the G^-4 line that cubic-spline theory predicts (anchored at the first grid's test RMSE).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from kanlab.report.parts import table
from kanlab.report.plots import COLORS, STYLE
from kanlab.report.stats import scaling_fit
from kanlab.report.tables import fmt_sci

THEORY_EXPONENT = 4  # RMSE ~ G^-(k + 1) for splines of order k = 3


@dataclass(frozen=True)
class GridSeries:
    """One label's stages: grid sizes and the median train/test RMSE over seeds at each."""

    label: str
    grids: tuple[int, ...]
    train_rmse: tuple[float, ...]
    test_rmse: tuple[float, ...]
    seeds: int

    def slope(self, which: str) -> float | None:
        """The fitted log-log slope of train or test RMSE against G (None below two grid sizes)."""
        values = self.train_rmse if which == "train" else self.test_rmse
        if len(set(self.grids)) < 2 or not all(math.isfinite(v) and v > 0 for v in values):
            return None
        return -scaling_fit(self.grids, values).exponent


def _stages(row: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(row.get("final_json") or "{}").get("stages") or []


def grid_series(task_rows: Sequence[dict[str, Any]]) -> list[GridSeries]:
    """Per label with finished runs of two or more grid stages: its GridSeries (medians over seeds)."""
    by_label: dict[str, dict[int, tuple[list[float], list[float]]]] = {}
    seeds: dict[str, int] = {}
    for r in task_rows:
        stages = _stages(r)
        if r["status"] != "finished" or len(stages) < 2:
            continue
        seeds[r["label"]] = seeds.get(r["label"], 0) + 1
        per_grid = by_label.setdefault(r["label"], {})
        for st in stages:
            train, test = per_grid.setdefault(int(st["grid_size"]), ([], []))
            train.append(float(st["train_rmse"]))
            test.append(float(st["test_rmse"]))
    out = []
    for label, per_grid in by_label.items():
        grids = tuple(sorted(per_grid))
        out.append(GridSeries(label, grids, tuple(statistics.median(per_grid[g][0]) for g in grids),
                              tuple(statistics.median(per_grid[g][1]) for g in grids), seeds[label]))
    return out


def draw(ax: Axes, series: Sequence[GridSeries]) -> None:
    """Draw each series' train (dashed) and test (solid) RMSE, its fitted slopes and a G^-4 line."""
    for n, s in enumerate(series):
        color = COLORS[n % len(COLORS)]
        g = np.array(s.grids, dtype=float)
        for which, values, style in (("train", s.train_rmse, "--"), ("test", s.test_rmse, "-")):
            slope = s.slope(which)
            fitted = "" if slope is None else f", slope {slope:.2f}"
            ax.plot(g, values, style, color=color, marker="o", ms=5, label=f"{s.label} {which}{fitted}",
                    gid=f"{s.label}|{which}")
        anchor = s.test_rmse[0]
        ax.plot(g, anchor * (g / g[0]) ** -THEORY_EXPONENT, ":", color=color, lw=1.2,
                label=f"{s.label}: G^-{THEORY_EXPONENT}", gid=f"{s.label}|theory")
    ax.set(xscale="log", yscale="log", xlabel="grid size G", ylabel="RMSE (median over seeds)")


def plot_grid_scaling(series: Sequence[GridSeries], png: Path, title: str) -> Path:
    """The log-log figure of draw() saved as png."""
    with plt.style.context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
        draw(ax, series)
        ax.set_title(title)
        ax.legend(loc="best", fontsize=8)
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=100)
        plt.close(fig)
    return png


def grid_table(series: Sequence[GridSeries]) -> str:
    """One row per (label, grid size): seeds, median train and test RMSE; then the fitted slopes."""
    body = [[s.label, str(g), str(s.seeds), fmt_sci(tr), fmt_sci(te)]
            for s in series for g, tr, te in zip(s.grids, s.train_rmse, s.test_rmse, strict=True)]
    slopes = [[s.label, *(f"{v:.2f}" if v is not None else "-" for v in (s.slope("train"), s.slope("test")))]
              for s in series]
    return (table(["Model", "Grid size", "Seeds", "Train RMSE (median)", "Test RMSE (median)"], body, 1)
            + table(["Model", "Train slope", "Test slope"], slopes, 1))
