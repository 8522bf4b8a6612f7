"""Loss against parameter count: a power-law fit per series and the log-log plot of the sweep report.

A series is one model label (plus the sweep axes that change it); its fit is scaling_fit over its
finished runs, loss ~ C * parameters^-alpha, made when it has two or more parameter counts.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import LogFormatter

from kanlab.report.parts import table
from kanlab.report.plots import COLORS, MARKERS, STYLE
from kanlab.report.stats import ScalingFit, scaling_fit
from kanlab.report.tables import fmt_sci, loss_name, targets_of, task_name

Row = dict[str, Any]


def finished(row: Row) -> bool:
    """A finished run with a finite, positive final test loss (what statistics and fits use)."""
    loss = row["test_loss"]
    return row["status"] == "finished" and loss is not None and math.isfinite(loss) and loss > 0


def series_name(row: Row, names: Sequence[str]) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in row["axes"].items() if k in names and v is not None)
    return row["label"] + (f" [{extra}]" if extra else "")


def series(rows: Sequence[Row], names: Sequence[str]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(series_name(r, names), []).append(r)
    return out


def fits(task_rows: Sequence[Row], names: Sequence[str]) -> dict[str, tuple[ScalingFit, float, float]]:
    """Per series with two or more sizes: its fit and the range of parameter counts it was fitted on."""
    out = {}
    for name, runs in series(task_rows, names).items():
        done = [r for r in runs if finished(r) and r["param_count"]]
        x = [float(r["param_count"]) for r in done]
        if len(set(x)) >= 2:
            out[name] = (scaling_fit(x, [r["test_loss"] for r in done]), min(x), max(x))
    return out


def scaling_figure(task_rows: Sequence[Row], names: Sequence[str],
                   fits: dict[str, tuple[ScalingFit, float, float]], png: Path) -> tuple[str, str]:
    """The log-log plot of loss against parameters with one fit per series, and its table."""
    body = []
    with plt.style.context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
        for n, (name, runs) in enumerate(series(task_rows, names).items()):
            done = [r for r in runs if finished(r) and r["param_count"]]
            color = COLORS[n % len(COLORS)]
            x = np.array([r["param_count"] for r in done], dtype=float)
            y = np.array([r["test_loss"] for r in done], dtype=float)
            label = name
            if name in fits:
                fit = fits[name][0]
                grid = np.geomspace(x.min(), x.max(), 50)
                ax.plot(grid, fit.predict(grid), color=color, lw=1.4)
                label = f"{name}: alpha = {fit.exponent:.2f} ± {fit.stderr:.2f}"
                body.append([name, str(fit.n), f"{fit.exponent:.3g}", f"{fit.stderr:.2g}",
                             fmt_sci(fit.coefficient)])
            if done:
                ax.scatter(x, y, color=color, marker=MARKERS.get(runs[0]["family"], "o"), s=22, alpha=0.75,
                           label=label)
        loss = f"test {loss_name(targets_of(task_rows[0]))}"
        ax.set(xscale="log", yscale="log", xlabel="parameters", ylabel=f"final {loss}",
               title=f"{task_name(task_rows[0])}: loss ~ C * parameters^-alpha")
        ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))  # "300", not "3 x 10^2"
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=100)
        plt.close(fig)
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    caption = "Final test MSE of every finished run against its parameter count; lines: least-squares fits."
    figure = (f'<div class="plots"><figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
              f"<figcaption>{escape(caption)}</figcaption></figure></div>")
    if not body:
        return figure, '<p class="note">No series has two or more parameter counts: no exponent to fit.</p>'
    return figure, table(["Series", "Runs", "Exponent alpha", "Std error", "C"], body, 1)
