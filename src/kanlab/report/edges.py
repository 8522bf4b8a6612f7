"""The picture that shows what a KAN learned: every edge function of every layer, knots marked."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from kanlab.report.style import COLORS, STYLE, run_title, save

MAX_EDGES = 12  # rows (outputs) and columns (inputs) of an edge grid shown per layer
# Edge-grid geometry in inches: cell size, margins, per-layer header.
CELL_W, CELL_H, LEFT, RIGHT, HEAD, TOP, BOTTOM, MIN_W = 1.15, 0.9, 0.75, 0.25, 0.62, 0.55, 0.55, 7.0


def _edge_layer(ax: Axes, xs: np.ndarray, ys: np.ndarray, knots: np.ndarray | None, color: Any) -> None:
    # One axes per layer, data box [0, cols] x [0, rows] with one unit cell per edge (row 0 on top):
    # hundreds of small axes would cost seconds per run, collections cost milliseconds.
    _, rows, cols = ys.shape                                                       # ys: (P, r, c)
    masked = np.ma.masked_invalid(ys)
    y_lo = np.ma.filled(masked.min(axis=0), 0.0)                                  # (r, c)
    amp = np.ma.filled(masked.max(axis=0), 0.0) - y_lo                            # (r, c)
    scale = float(amp.max()) if amp.size and amp.max() > 0 else 1.0
    curves, alphas, boxes, marks, zeros = [], [], [], [], []
    for o in range(rows):
        y0, y1 = rows - 1 - o + 0.06, rows - o - 0.16                             # box bottom and top
        for i in range(cols):
            x0, x1 = i + 0.05, i + 0.95
            lo, hi = float(xs[:, i].min()), float(xs[:, i].max())
            u = x0 + (x1 - x0) * (xs[:, i] - lo) / (hi - lo if hi > lo else 1.0)  # (P,)
            gain = 0.8 * (y1 - y0) / (amp[o, i] or 1.0)  # edge value v is drawn at offset + gain * v
            offset = y0 + 0.1 * (y1 - y0) - gain * y_lo[o, i]
            keep = np.isfinite(ys[:, o, i])
            if keep.sum() > 1:
                curves.append(np.column_stack([u[keep], offset + gain * ys[keep, o, i]]))
                alphas.append(0.3 + 0.7 * float(amp[o, i]) / scale)
            else:  # a diverged run's edges
                ax.text((x0 + x1) / 2, (y0 + y1) / 2, "not finite", ha="center", va="center", fontsize=7,
                        color="0.45")
            boxes.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
            if y_lo[o, i] < 0 < y_lo[o, i] + amp[o, i]:
                zeros.append([(x0, offset), (x1, offset)])
            if knots is not None:
                inside = knots[i][(knots[i] >= lo) & (knots[i] <= hi)]
                for k in x0 + (x1 - x0) * (inside - lo) / (hi - lo if hi > lo else 1.0):
                    marks.append([(k, y0), (k, y0 + 0.07)])
            ax.text(x1, y1 + 0.02, f"{amp[o, i]:.2g}", ha="right", va="bottom", fontsize=6.5, color="0.45")
            if o == 0:
                ax.text(x0, y1 + 0.02, f"in {i}", ha="left", va="bottom", fontsize=8)
            if i == 0:
                ax.text(x0 - 0.06, (y0 + y1) / 2, f"out {o}", ha="right", va="center", fontsize=8)
    rgba = [(*matplotlib.colors.to_rgb(color), a) for a in alphas]
    layers: list[tuple[str, list[Any], Any, float]] = [("zero lines", zeros, "0.86", 0.8),
        ("cell boxes", boxes, "0.78", 0.8), ("knots", marks, "0.4", 0.9), ("edge curves", curves, rgba, 1.6)]
    for name, segments, colors, width in layers:
        ax.add_collection(LineCollection(segments, colors=colors, linewidths=width, label=name))
    ax.set(xlim=(0, cols), ylim=(0, rows))
    ax.set_axis_off()


def edges_figure(arrays: Mapping[str, np.ndarray], title: str) -> Figure | None:
    """Every edge function of every layer in arrays (edges.npz's contents): a grid per layer.

    Rows are a layer's outputs, columns its inputs (at most MAX_EDGES of each; a note says when
    the grid is cut). Each edge is scaled to its cell; the number above it is its peak-to-peak
    amplitude, and a line fades with that amplitude relative to the layer's largest edge. Each
    layer is one axes whose "edge curves" collection holds the finite edges, output-major.

    Args:
        arrays: layers (the layer indices), layer{l}_x (P, in), layer{l}_y (P, out, in) and
            optional layer{l}_knots (in, m), as kanlab.runs.edge_arrays returns them.
        title: figure title.
    Returns:
        The figure (not managed by pyplot), or None when there are no per-edge layers.
    """
    layers = [int(v) for v in arrays.get("layers", np.zeros(0))]
    if not layers:
        return None
    shapes = [arrays[f"layer{l}_y"].shape[1:] for l in layers]                        # (out, in) each
    grids = [(min(o, MAX_EDGES), min(i, MAX_EDGES)) for o, i in shapes]
    width = max(LEFT + max(c for _, c in grids) * CELL_W + RIGHT, MIN_W)
    height = TOP + sum(HEAD + r * CELL_H for r, _ in grids) + BOTTOM
    with plt.style.context(STYLE):
        fig = Figure(figsize=(width, height))
        fig.suptitle(title, y=1 - 0.12 / height, va="top", fontsize=12)
        top = TOP
        for n, (l, (n_out, n_in), (rows, cols)) in enumerate(zip(layers, shapes, grids, strict=True)):
            note = "" if (rows, cols) == (n_out, n_in) else f" (first {rows} x {cols} edges shown)"
            dims = f"{n_in} input{'s' * (n_in != 1)} → {n_out} output{'s' * (n_out != 1)}"
            fig.text(0.5, 1 - (top + 0.2) / height, f"layer {l}: {dims}{note}", ha="center", va="top",
                     fontsize=10.5, weight="bold")
            left = (width - cols * CELL_W) / 2 + (LEFT - RIGHT) / 2
            bottom = top + HEAD + rows * CELL_H
            box = (left / width, 1 - bottom / height, cols * CELL_W / width, rows * CELL_H / height)
            ax = fig.add_axes(box)
            knots = arrays.get(f"layer{l}_knots")                                  # (in, m) or None
            _edge_layer(ax, arrays[f"layer{l}_x"][:, :cols], arrays[f"layer{l}_y"][:, :rows, :cols],
                        None if knots is None else knots[:cols], COLORS[n % len(COLORS)])
            top = bottom
        caption = "x: the input range seen in training; number: peak-to-peak amplitude; faint: small edge"
        if any(f"layer{l}_knots" in arrays for l in layers):
            caption += "; ticks: spline knots"
        fig.text(0.5, 0.15 / height, caption, ha="center", fontsize=8, color="0.4", wrap=True)
    return fig


def plot_edges(run_dir: Path, out: Path | str, *, title: str | None = None) -> Path | None:
    """edges_figure of a run folder's edges.npz, saved.

    Args:
        run_dir: run folder with edges.npz (see edges_figure).
        out: output path stem.
        title: figure title (default: the run's label, task and seed).
    Returns:
        The PNG path, or None when the run has no per-edge layers.
    """
    path = Path(run_dir) / "edges.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        arrays = {k: np.asarray(z[k]) for k in z.files}
    fig = edges_figure(arrays, title or f"{run_title(run_dir)}: learned edge functions")
    return None if fig is None else save(fig, out)
