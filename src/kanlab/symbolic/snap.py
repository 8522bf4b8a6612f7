"""Snapping a KAN's edges to symbolic functions: suggest, fix one edge, auto-fix every edge.

A model here is a stack (`.layers` applied in order, e.g. models.Stack) of KANLinear layers;
symbolize() wraps each in a SymbolicKANLinear so its edges can be fixed. Edges are fitted on a
uniform grid of `points` samples spanning the range the edge's input takes on the data x.

Legend: n data rows, P sample points, i in_features, o out_features.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from kanlab.layers.kan.layer import KANLinear
from kanlab.models.stack import Stack, edge_samples, layer_inputs
from kanlab.symbolic import library as symlib
from kanlab.symbolic.fit import EdgeFit, fit_function, suggest
from kanlab.symbolic.layer import KanLayer, SymbolicKANLinear

POINTS = 201


def stack_of(model: nn.Module) -> list[KanLayer]:
    """model.layers as a list, checked to be KAN layers; a ValueError for anything else."""
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"expected a stack of layers (models.Stack), got {type(model).__name__}")
    checked: list[KanLayer] = []
    for j, layer in enumerate(layers):
        if not isinstance(layer, (KANLinear, SymbolicKANLinear)):
            raise ValueError(
                f"layer {j} is a {type(layer).__name__}; pruning, symbolic edges and formulas need "
                "KANLinear (or SymbolicKANLinear) layers only"
            )
        checked.append(layer)
    return checked


def symbolize(model: nn.Module) -> Stack:
    """A copy of model with every KANLinear wrapped in a SymbolicKANLinear (all edges still splines).

    Args:
        model: a stack of KANLinear / SymbolicKANLinear layers.
    Returns:
        A new Stack; the original model is not changed.
    """
    layers: list[nn.Module] = []
    for layer in stack_of(model):
        layer = copy.deepcopy(layer)
        layers.append(layer if isinstance(layer, SymbolicKANLinear) else SymbolicKANLinear(layer))
    return Stack(layers)


def _symbolic_layer(model: nn.Module, index: int) -> SymbolicKANLinear:
    layers = stack_of(model)
    if not 0 <= index < len(layers):
        raise IndexError(f"layer {index} does not exist; the model has {len(layers)} layers")
    layer = layers[index]
    if not isinstance(layer, SymbolicKANLinear):
        raise ValueError(f"layer {index} is a {type(layer).__name__}; call snap.symbolize(model) first")
    return layer


def _samples(
    model: nn.Module, x: torch.Tensor, index: int, o: int, i: int, points: int
) -> tuple[torch.Tensor, torch.Tensor]:
    layers = stack_of(model)
    if not 0 <= index < len(layers):
        raise IndexError(f"layer {index} does not exist; the model has {len(layers)} layers")
    layer = layers[index]
    if not (0 <= o < layer.out_features and 0 <= i < layer.in_features):
        raise IndexError(
            f"edge (o={o}, i={i}) is outside layer {index} ({layer.in_features} -> {layer.out_features})"
        )
    xs, r = edge_samples(layer, layer_inputs(model, x)[index], points)
    return xs[:, i], r[:, o, i]


def suggest_edge(
    model: nn.Module, x: torch.Tensor, layer: int, o: int, i: int,
    library: Sequence[str] = symlib.NAMES, *, top: int = 5, points: int = POINTS,
) -> list[EdgeFit]:
    """The best `top` symbolic fits of edge (o, i) of layer `layer`, best first.

    Args:
        model: a stack of KAN layers (plain or symbolic).
        x: (n, d) model inputs that set the edge's input range.
        layer, o, i: which edge: layer index, output node, input node.
        library: symlib names to try.
        top: how many to return.
        points: samples of the edge over its input range.
    Returns:
        EdgeFits ranked as in symbolic.suggest.
    """
    return suggest(*_samples(model, x, layer, o, i, points), library, top=top)


def fix_edge(
    model: nn.Module, layer: int, o: int, i: int, name: str, *,
    x: torch.Tensor | None = None, constants: tuple[float, float, float, float] | None = None,
    points: int = POINTS,
) -> EdgeFit | None:
    """Fix edge (o, i) of layer `layer` to c * name(a * x + b) + d; (a, b, c, d) keep training.

    Args:
        model: a stack whose layer `layer` is a SymbolicKANLinear (see symbolize).
        layer, o, i: which edge.
        name: a symlib function name.
        x: (n, d) model inputs: fit (a, b, c, d) to the edge's current response on their range.
        constants: (a, b, c, d) to use as they are (instead of x).
        points: samples of the edge when fitting.
    Returns:
        The fit when x was given, else None.
    """
    target = _symbolic_layer(model, layer)
    symlib.get(name)
    if (x is None) == (constants is None):
        raise ValueError("fix_edge needs exactly one of x (fit the constants) or constants=(a, b, c, d)")
    fit = None
    if x is not None:
        fit = fit_function(*_samples(model, x, layer, o, i, points), name)
        if fit.r2 == -math.inf:
            raise ValueError(f"{name!r} is undefined for every affine map tried on edge ({layer}, {o}, {i})")
        constants = (fit.a, fit.b, fit.c, fit.d)
    assert constants is not None
    target.fix(o, i, name, *constants)
    return fit


@dataclass(frozen=True)
class EdgeChoice:
    """What auto_fix did with one edge: its best fit, and whether that was good enough to fix."""

    layer: int
    o: int
    i: int
    fit: EdgeFit
    fixed: bool

    def __str__(self) -> str:
        verb = "fixed" if self.fixed else "left as spline, best"
        return f"layer {self.layer} edge ({self.o}, {self.i}): {verb} {self.fit}"


def auto_fix(
    model: nn.Module, x: torch.Tensor, library: Sequence[str] = symlib.NAMES, *,
    r2_threshold: float = 0.99, zero_below: float = 1e-3, layers: Sequence[int] | None = None,
    points: int = POINTS,
) -> list[EdgeChoice]:
    """Fix every spline edge whose best symbolic fit reaches r2_threshold, first layer first.

    Layers are done in order so that each layer's edges are fitted on the inputs the fixed
    earlier layers produce. An edge whose peak-to-peak response is at most zero_below times the
    largest in its layer is a constant: it becomes "0" (c = 0, d = its mean) whatever R^2 says.

    Args:
        model: a stack of SymbolicKANLinear layers (see symbolize); changed in place.
        x: (n, d) model inputs that set each edge's input range.
        library: symlib names to choose from.
        r2_threshold: the R^2 a best fit needs to be fixed (-inf fixes every edge).
        zero_below: relative amplitude below which an edge is fixed to a constant.
        layers: indices of the layers to do (default: all).
        points: samples per edge.
    Returns:
        One EdgeChoice per edge that was a spline.
    """
    names = symlib.check_names(list(library))
    choices = []
    for index in range(len(stack_of(model))) if layers is None else layers:
        layer = _symbolic_layer(model, index)
        edges = layer.spline_edges()
        if not edges:
            continue
        xs, r = edge_samples(layer, layer_inputs(model, x)[index], points)
        amplitude = r.amax(0) - r.amin(0)                                            # (o, i)
        for o, i in edges:
            if amplitude[o, i] <= zero_below * amplitude.max():
                best = fit_function(xs[:, i], r[:, o, i], symlib.ZERO)
                ok = True
            else:
                best = suggest(xs[:, i], r[:, o, i], names, top=1)[0]
                ok = best.r2 >= r2_threshold and best.r2 > -math.inf
            if ok:
                layer.fix(o, i, best.name, best.a, best.b, best.c, best.d)
            choices.append(EdgeChoice(index, o, i, best, ok))
    return choices


def spline_edges(model: nn.Module) -> list[tuple[int, int, int]]:
    """(layer, o, i) of every edge that is not symbolic (all edges of a plain KANLinear)."""
    out = []
    for index, layer in enumerate(stack_of(model)):
        if isinstance(layer, SymbolicKANLinear):
            out += [(index, o, i) for o, i in layer.spline_edges()]
        else:
            out += [(index, o, i) for o in range(layer.out_features) for i in range(layer.in_features)]
    return out
