"""Grid changes of a whole stack, first layer first: each KAN layer's knots moved to its own
inputs (update_grids) or refined to a finer grid (refine_grids), as the training loop's stages ask."""

from __future__ import annotations

import torch
from torch import nn

from kanlab.layers.kan.layer import KANLinear
from kanlab.training.regularization import kan_like_layers, stack_layers


def kan_layers(model: nn.Module) -> list[KANLinear]:
    """Every B-spline KAN layer of model, in module order."""
    return [m for m in model.modules() if isinstance(m, KANLinear)]


@torch.no_grad()
def update_grids(model: nn.Module, x: torch.Tensor, grid_eps: float = 0.02, margin: float = 0.0) -> None:
    """Move each KAN layer's knots to the quantiles of its own input on batch x, first layer first.

    Args:
        model: a stack (see regularization.stack_layers) or a single KANLinear.
        x: (b, d) model input batch.
        grid_eps: 0 = pure quantiles, 1 = uniform over each input's range.
        margin: each grid covers its input's range widened by this fraction on each side.
    """
    kan = kan_layers(model)
    if not kan:
        return
    kan_like_layers(model)  # raises if a KAN layer is nested where the walk cannot reach it
    layers = stack_layers(model)
    for j, layer in enumerate(layers):
        update = getattr(layer, "update_grid", None)  # KANLinear, or a wrapper such as SymbolicKANLinear
        if callable(update):
            update(x, grid_eps, margin)
        if j < len(layers) - 1:
            x = layer(x)  # the next layer's input, after this layer's refit


REFINE_ROWS = 4096  # refine_grids keeps each layer's function on at most this many training inputs


@torch.no_grad()
def refine_grids(model: nn.Module, grid_size: int, x: torch.Tensor | None = None) -> None:
    """Grid extension of every KAN layer to grid_size intervals, first layer first.

    Args:
        model: a stack (see regularization.stack_layers) or a single KANLinear.
        grid_size: the new number of intervals.
        x: (n, d) model inputs (e.g. the training set): each layer's refit also keeps its function
            on its own inputs there (KANLinear.refine's x), at most REFINE_ROWS of them, evenly
            spaced; None refits on the grid's range only.
    """
    if not kan_layers(model):
        return
    kan_like_layers(model)  # raises if a KAN layer is nested where the walk cannot reach it
    if x is not None and len(x) > REFINE_ROWS:
        x = x[:: -(-len(x) // REFINE_ROWS)]
    layers = stack_layers(model)
    for j, layer in enumerate(layers):
        refine = getattr(layer, "refine", None)  # KANLinear, or a wrapper such as SymbolicKANLinear
        if callable(refine) and getattr(layer, "grid_size", None) != grid_size:
            refine(grid_size, x)
        if x is not None and j < len(layers) - 1:
            x = layer(x)  # the next layer's input, after this layer's refit
