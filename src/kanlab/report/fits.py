"""Pictures of predictions against targets: fit_figure (curves, maps, parity) and image_figure.

They draw from arrays: report.plots hands them a run folder's predictions.npz, kanlab.plot a live
model's predictions. Legend: n test points, d raw inputs, T targets, (h, w) an image's shape.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from kanlab.report.style import COLORS, STYLE
from kanlab.report.tables import fmt_sci


def prediction_arrays(coords: np.ndarray, y_test: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """predictions.npz's coords_test, y_test and y_pred as float64 2-D arrays, overflow as NaN."""
    n = len(coords)
    out = {}
    for key, value in (("coords_test", coords), ("y_test", y_test), ("y_pred", y_pred)):
        # float64 and non-finite for overflow: a diverged model's float32 outputs can be huge.
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.asarray(value).astype(np.float64).reshape(n, -1)                # (n, d) or (n, T)
            out[key] = np.where(np.abs(v) < 1e150, v, np.nan)
    return out


def fit_figure(x: np.ndarray, y: np.ndarray, yhat: np.ndarray, name: str) -> Figure:
    """Prediction against target: a curve with its error below (1D), three maps (2D) or a parity plot.

    Args:
        x: (n, d) raw inputs; y, yhat: (n, T) targets and predictions (prediction_arrays).
        name: the title's start (the test MSE follows it).
    Returns:
        The figure (not managed by pyplot).
    """
    title = f"{name}: test MSE {fmt_sci(float(np.mean((yhat - y) ** 2)))}"
    with plt.style.context(STYLE):
        fig = Figure(layout="constrained")
        if x.shape[1] == 1:
            fig.set_size_inches(8, 5.5)
            ax, ax_err = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
            order = np.argsort(x[:, 0])
            xs = x[order, 0]
            for t in range(min(y.shape[1], 4)):
                suffix = f" (output {t})" if y.shape[1] > 1 else ""
                ax.plot(xs, y[order, t], color="0.15", lw=2.4, label=f"target{suffix}")
                ax.plot(xs, yhat[order, t], color=COLORS[t], lw=1.5, ls="--", label=f"prediction{suffix}")
                ax_err.plot(xs, yhat[order, t] - y[order, t], color=COLORS[t], lw=1.0)
            ax_err.axhline(0.0, color="0.3", lw=0.8)
            ax.set(ylabel="y", title=title)
            ax_err.set(xlabel="x", ylabel="prediction - target")
            ax.legend(loc="best")
        elif x.shape[1] == 2:
            fig.set_size_inches(13, 4.4)
            axes = fig.subplots(1, 3)
            size = float(np.clip(20000 / len(x), 2, 40))
            lo, hi = float(y[:, 0].min()), float(y[:, 0].max())
            panels = [("target", y[:, 0], "viridis", lo, hi), ("prediction", yhat[:, 0], "viridis", lo, hi),
                      ("|error|", np.abs(yhat[:, 0] - y[:, 0]), "magma", None, None)]
            for ax, (panel, values, cmap, vmin, vmax) in zip(axes, panels, strict=True):
                sc = ax.scatter(x[:, 0], x[:, 1], c=values, s=size, cmap=cmap, vmin=vmin, vmax=vmax, lw=0)
                ax.set(title=panel, xlabel="x0", ylabel="x1")
                ax.grid(False)
                fig.colorbar(sc, ax=ax, shrink=0.9)
            fig.suptitle(title)
        else:
            fig.set_size_inches(6, 6)
            ax = fig.subplots()
            for t in range(min(y.shape[1], 4)):
                ax.scatter(y[:, t], yhat[:, t], s=6, alpha=0.5, color=COLORS[t], lw=0, label=f"output {t}")
            lo, hi = float(min(y.min(), yhat.min())), float(max(y.max(), yhat.max()))
            ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="perfect fit")
            ax.set(xlabel="target", ylabel="prediction", title=title)
            ax.legend(loc="upper left")
    return fig


def image_figure(target: np.ndarray, recon: np.ndarray, name: str, psnr: float | None = None) -> Figure:
    """Target image, reconstruction and absolute error map with a colorbar; PSNR in the title.

    Args:
        target, recon: (h, w, T) images (T = 1 grey or 3 RGB, values in [0, 1]).
        name: the title's start.
        psnr: shown in the title (default from the MSE, peak 1.0 as runs define it).
    Returns:
        The figure (not managed by pyplot).
    """
    h, w = target.shape[:2]
    error = np.abs(recon - target).mean(axis=2)                                        # (h, w)
    lo, hi = float(target.min()), float(target.max())
    if target.shape[2] == 3:
        shown = [np.clip(target, 0, 1), np.clip(recon, 0, 1)]
    else:
        shown = [target[..., 0], recon[..., 0]]
    mse = float(np.mean((recon - target) ** 2))
    if psnr is None and mse > 0:
        psnr = 10 * math.log10(1.0 / mse)
    psnr_text = "n/a" if psnr is None else f"{psnr:.2f} dB"
    with plt.style.context(STYLE):
        panel = 4.0  # inches per image panel
        fig = Figure(figsize=(3 * panel + 0.8, panel * h / w + 0.9), layout="constrained")
        axes = fig.subplots(1, 3)
        for ax, img in zip(axes, shown, strict=False):
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        im = axes[2].imshow(error, cmap="inferno", vmin=0.0)
        fig.colorbar(im, ax=axes[2], shrink=0.85, label="|error|")
        for ax, panel_name in zip(axes, ("target", "reconstruction", "|error|"), strict=True):
            ax.set_title(panel_name)
            ax.set_axis_off()
        fig.suptitle(f"{name}: PSNR {psnr_text}, test MSE {fmt_sci(mse)}")
    return fig
