"""The report's pictures of a live model (kanlab.plot's functions): the arrays a run folder saves,
computed from the model in hand, drawn by the same *_figure functions the report uses.

Legend: n rows, d inputs, t targets, P points per edge, (h, w) an image's shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from kanlab.models.edges import edge_arrays
from kanlab.report.edges import edges_figure
from kanlab.report.fits import fit_figure, image_figure, prediction_arrays
from kanlab.report.plots import curves_figure, train_and_test
from kanlab.training.evaluation import Data, target_kind
from kanlab.training.loop import History
from kanlab.training.quickfit import as_data


def _like_model(model: nn.Module, x: Any) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.unsqueeze(1) if t.ndim == 1 else t                                           # (n,) -> (n, 1)
    p = next(model.parameters(), None)
    return t.to(p) if p is not None else t


def edges(model: nn.Module, x: torch.Tensor | np.ndarray, *, title: str | None = None) -> Figure:
    """Every edge function of every per-edge layer (KAN, RBF, Chebyshev, Fourier, tanh-quadratic) of model.

    Each layer's edges are drawn over the range its own input takes when model runs on x, knots
    marked for B-spline layers, with each edge's peak-to-peak amplitude above it: the report's
    edge picture (kanlab.report.edges), from the same arrays a run folder's edges.npz holds.

    Args:
        model: a stack (model.layers applied in order) or a single layer.
        x: (n, d) inputs (1-D: one column), cast to the model's dtype and device.
        title: figure title (default: "learned edge functions").
    Returns:
        A matplotlib Figure (not managed by pyplot: a notebook shows it once, nothing is shown
        otherwise); a ValueError when model has no per-edge layers (an MLP's are linear).
    """
    arrays = edge_arrays(model, _like_model(model, x))
    fig = edges_figure(arrays, title or "learned edge functions")
    if fig is None:
        raise ValueError(f"{type(model).__name__} has no per-edge layers to draw (Dense layers' edges are "
                         "linear): plot.edges draws KAN, RBF, Chebyshev, Fourier and tanh-quadratic layers")
    return fig


@torch.no_grad()
def fit(model: nn.Module, data: Data | Sequence[Any], *, title: str | None = None) -> Figure:
    """The model's test predictions against the targets: a curve and its error (1 input), target,
    prediction and |error| maps (2 inputs), the image, its reconstruction and |error| (image tasks),
    or a parity plot (more inputs).

    Args:
        model: the model; it runs on the test inputs in its own dtype.
        data: a Dataset (drawn over its raw coords_test, an image in its image_shape), (x, y) or
            (x_train, y_train, x_test, y_test) (kanlab.fit's forms).
        title: the title's start (default: the model's class name).
    Returns:
        A matplotlib Figure (not managed by pyplot); a ValueError for class targets.
    """
    d = as_data(data)
    if target_kind(d) == "class":
        raise ValueError("plot.fit draws value targets; for class targets the report's confusion matrix "
                         "(kanlab plot RUN_DIR) shows the predictions")
    y_pred = model(_like_model(model, d.x_test))                                       # (n, t)
    coords = getattr(d, "coords_test", d.x_test)                                      # (n, d)
    pred = prediction_arrays(coords.cpu().numpy(), d.y_test.cpu().numpy(), y_pred.cpu().numpy())
    name = title or type(model).__name__
    shape = getattr(d, "image_shape", None)
    if shape is not None:
        h, w = shape
        return image_figure(pred["y_test"].reshape(h, w, -1), pred["y_pred"].reshape(h, w, -1), name)
    return fit_figure(pred["coords_test"], pred["y_test"], pred["y_pred"], name)


def curves(history_or_histories: History | Mapping[str, History] | Sequence[History], *,
           title: str | None = None) -> Figure:
    """Loss curves against step on a log axis, grid refinements dotted.

    Args:
        history_or_histories: one History (its train and test loss), a {label: History} mapping
            or a sequence of Histories ("run 0", "run 1", ...: the test loss of each).
        title: figure title (default: the loss's name).
    Returns:
        A matplotlib Figure (not managed by pyplot).
    """
    h = history_or_histories
    if isinstance(h, History):
        classes = any("test_accuracy" in r for r in h.records)  # class targets: the loss is cross-entropy
        return curves_figure(train_and_test(h.records), "loss", title=title,
                             ylabel="cross-entropy" if classes else None)
    named = list(h.items()) if isinstance(h, Mapping) else [(f"run {n}", v) for n, v in enumerate(h)]
    bad = [label for label, v in named if not isinstance(v, History)]
    if bad or not named:
        raise TypeError("plot.curves expects a History, a {label: History} mapping or a list of Histories"
                        + (f"; not a History: {', '.join(map(str, bad))}" if bad else ""))
    return curves_figure([(label, v.records) for label, v in named], "test_loss", title=title)
