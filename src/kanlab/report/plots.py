"""Figures of runs: a `*_figure` function draws from arrays (kanlab.plot hands it a live model's),
a `plot_*` function reads a run folder or store rows, draws through it and saves PNG and SVG.

Every plot_* function takes an output path stem (a trailing .png/.svg is dropped), writes
`<stem>.png` and `<stem>.svg`, closes its figure and returns the PNG path (None when the plot does
not apply to the run, e.g. an image plot of a function task). Sizes are fixed in inches at DPI,
so a PNG is exactly figsize * DPI pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from kanlab.report.classes import plot_confusion
from kanlab.report.edges import plot_edges
from kanlab.report.fits import fit_figure, image_figure, prediction_arrays
from kanlab.report.style import COLORS, MARKERS, STYLE, read_json, run_title, save
from kanlab.report.tables import mean_std

LOG_KEYS = ("loss", "rmse", "mse")
PRETTY = {"loss": "MSE", "test_loss": "test MSE", "train_loss": "train MSE", "test_rmse": "test RMSE",
          "psnr": "PSNR (dB)"}


def _predictions(run_dir: Path) -> dict[str, np.ndarray] | None:
    path = Path(run_dir) / "predictions.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        out = {k: np.asarray(z[k]) for k in z.files}
    return {**out, **prediction_arrays(out["coords_test"], out["y_test"], out["y_pred"])}


def plot_fit(run_dir: Path, out: Path | str) -> Path | None:
    """fit_figure of a run's test predictions, saved.

    Args:
        run_dir: run folder with predictions.npz (config.json/final.json for the title).
        out: output path stem.
    Returns:
        The PNG path, or None for image tasks or a run without predictions.
    """
    pred = _predictions(run_dir)
    if pred is None or pred["image_shape"].size or str(pred.get("target_kind", "value")) == "class":
        return None  # images and classes have their own plots (plot_image, classes.plot_confusion)
    return save(fit_figure(pred["coords_test"], pred["y_test"], pred["y_pred"], run_title(run_dir)), out)


def plot_image(run_dir: Path, out: Path | str) -> Path | None:
    """image_figure of an image run's test predictions (every pixel), saved.

    Args:
        run_dir: run folder of an image task (predictions.npz with a (2,) image_shape).
        out: output path stem.
    Returns:
        The PNG path, or None for non-image tasks or a run without predictions.
    """
    pred = _predictions(run_dir)
    if pred is None or pred["image_shape"].size != 2:
        return None
    h, w = (int(v) for v in pred["image_shape"])
    target, recon = pred["y_test"].reshape(h, w, -1), pred["y_pred"].reshape(h, w, -1)   # (h, w, T)
    psnr = read_json(run_dir, "final.json").get("psnr")
    return save(image_figure(target, recon, run_title(run_dir), psnr), out)


def _series(records: Sequence[dict[str, Any]], key: str, log: bool) -> dict[int, float]:
    out = {}
    for rec in records:
        value = rec.get(key)
        if value is not None and math.isfinite(value) and (value > 0 or not log):
            out[int(rec["step"])] = float(value)
    return out


def curves_figure(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], key: str = "test_loss",
                  *, title: str | None = None, ylabel: str | None = None) -> Figure:
    """Curves of several runs against step; seeds of one label share a colour (thin) with a bold median.

    A label's first run marks its grid refinements (a change of its records' grid_size) with a
    dotted vertical line.

    Args:
        runs: (label, records) pairs; records are History records, curve rows or metrics.jsonl
            objects with "step".
        key: the record field to plot (log axis when it names a loss, RMSE or MSE).
        title: figure title (default: the key's name).
        ylabel: the y axis (default: the key's name).
    Returns:
        The figure (not managed by pyplot).
    """
    log = any(part in key for part in LOG_KEYS)
    labels = list(dict.fromkeys(label for label, _ in runs))
    with plt.style.context(STYLE):
        fig = Figure(figsize=(8, 5), layout="constrained")
        ax = fig.subplots()
        drawn = False
        for n, label in enumerate(labels):
            color = COLORS[n % len(COLORS)]
            members = [recs for lab, recs in runs if lab == label]
            series = [_series(recs, key, log) for recs in members]
            series = [s for s in series if s]
            if not series:
                continue
            drawn = True
            legend = label if len(members) == 1 else f"{label} ({len(members)} runs)"
            for s in series if len(series) > 1 else []:
                ax.plot(list(s), list(s.values()), color=color, lw=0.8, alpha=0.35)
            common = sorted(set.intersection(*(set(s) for s in series)))
            if common:
                median = [float(np.median([s[step] for s in series])) for step in common]
                ax.plot(common, median, color=color, lw=2.0, label=legend)
            else:  # seeds evaluated at different steps: no median, the thin lines carry the label
                ax.plot([], [], color=color, lw=2.0, label=legend)
            grids = [(int(r["step"]), r["grid_size"]) for r in members[0] if r.get("grid_size") is not None]
            for (_, before), (step, after) in zip(grids, grids[1:], strict=False):
                if after != before:
                    ax.axvline(step, color=color, ls=":", lw=0.9, alpha=0.6)
        if log:
            ax.set_yscale("log")
        name = ylabel or PRETTY.get(key, key)
        ax.set(xlabel="step", ylabel=name, title=title or f"{name} during training")
        if drawn:
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, "no finite values to plot", ha="center", transform=ax.transAxes, color="0.4")
    return fig


def plot_curves(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], out: Path | str, key: str = "test_loss",
                *, title: str | None = None, ylabel: str | None = None) -> Path:
    """curves_figure, saved to the output path stem out; returns the PNG path."""
    return save(curves_figure(runs, key, title=title, ylabel=ylabel), out)


def train_and_test(records: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """A run's records as ("train", ...) and ("test", ...) curves of one key, "loss", for curves_figure."""
    return [(name, [{"step": r["step"], "loss": r.get(f"{name}_loss"), "grid_size": r.get("grid_size")}
                    for r in records]) for name in ("train", "test")]


def plot_loss_vs_params(rows: Sequence[dict[str, Any]], out: Path | str, key: str = "test_loss",
                        *, title: str | None = None, ylabel: str | None = None) -> Path:
    """Final loss against parameter count (log-log), mean +- sample std over finished seeds per label.

    Args:
        rows: store rows (ResultsStore.runs()); only finished runs with a finite value count.
        out: output path stem.
        key: the row field to plot.
        title: figure title.
        ylabel: the y axis (default: "final" and the key's name).
    Returns:
        The PNG path.
    """
    groups: dict[str, dict[int, list[float]]] = {}
    families: dict[str, str] = {}
    for row in rows:
        value = row.get(key)
        families.setdefault(row["label"], row["family"])
        if row["status"] == "finished" and value is not None and math.isfinite(value) and value > 0:
            groups.setdefault(row["label"], {}).setdefault(int(row["param_count"]), []).append(float(value))
    with plt.style.context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
        for n, label in enumerate(families):
            if label not in groups:
                continue
            params = sorted(groups[label])
            stats = [mean_std(groups[label][p]) for p in params]
            means = np.array([m for m, _ in stats], dtype=float)
            stds = np.array([s or 0.0 for _, s in stats], dtype=float)
            lower = np.minimum(stds, 0.9 * means)  # keep the bar above zero on the log axis
            ax.errorbar(params, means, yerr=np.stack([lower, stds]), color=COLORS[n % len(COLORS)],
                        marker=MARKERS.get(families[label], "o"), ms=7, lw=1.2, capsize=4, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        # plain numbers ("300", "2000") instead of 3x10^2 on the often less-than-a-decade size axis
        ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.set(xlabel="parameters", ylabel=ylabel or f"final {PRETTY.get(key, key)}",
               title=title or f"final {PRETTY.get(key, key)} vs parameters (mean, bars: std over seeds)")
        if groups:
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, "no finished runs", ha="center", transform=ax.transAxes, color="0.4")
        return save(fig, out)


def plot_run(run_dir: Path, out_dir: Path) -> list[Path]:
    """Every per-run plot that applies (fit, image, edges, train/test curves) into out_dir.

    Args:
        run_dir: a run folder.
        out_dir: folder for <name>.png and <name>.svg.
    Returns:
        The PNG paths written (FileNotFoundError when run_dir is not a run folder).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (it has no config.json)")
    written = []
    makers: list[tuple[str, Callable[[Path, Path | str], Path | None]]] = [
        ("fit", plot_fit), ("image", plot_image), ("confusion", plot_confusion), ("edges", plot_edges)]
    for name, make in makers:
        png = make(run_dir, out_dir / name)
        if png is not None:
            written.append(png)
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        classes = any("test_accuracy" in r for r in records)  # class targets: the loss is cross-entropy
        written.append(plot_curves(train_and_test(records), out_dir / "curves", key="loss",
                                   title=run_title(run_dir), ylabel="cross-entropy" if classes else None))
    return written


def draw_run(folder: Path) -> list[Path]:
    """plot_run into folder/plots: the drawing function the commands hand to runs.execute."""
    return plot_run(folder, Path(folder) / "plots")
