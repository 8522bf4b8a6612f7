"""Edge and node importance, and pruning a KAN to a genuinely smaller one.

Scores follow the KAN paper (Liu et al. 2024, sec. 2.5.1): an edge's score is its mean absolute
response over the data, |phi_oi|_1 = mean_n |phi_oi(h_i)| on the layer's actual inputs h; a hidden
node's incoming score is the largest score of the edges into it, its outgoing score the largest
of the edges out of it, and it is kept when both exceed the threshold. Model inputs and outputs
are always kept.

One change from the paper, on by default (centered=True): the score is taken around the edge's
mean, mean_n |phi_oi(h_i) - mean_n phi_oi|. A constant edge carries no information (its value
can sit in a bias), yet the paper's score counts its offset: a node fed only by constant edges
would survive pruning and block the formula. prune() builds new, smaller layers from the kept
rows and columns (coefficients, weights, knots, bias, symbolic choices) so the parameter count
really shrinks, and moves a removed node's mean outgoing responses into the next layer's bias
(absorb=True), so with centered scores the output changes by at most the sum of the removed
edges' centered deviations.

Legend: n data rows, i in_features, o out_features, h hidden width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kanlab.layers.kan.layer import KANLinear
from kanlab.models.stack import Stack, layer_inputs, param_count
from kanlab.symbolic.layer import KanLayer, SymbolicKANLinear
from kanlab.symbolic.snap import stack_of


def _response_means(
    layer: KanLayer, h: torch.Tensor, centered: bool, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scores mean_n |phi_oi - centre| and the means mean_n phi_oi, each (o, i), in row chunks."""
    plain_sum = h.new_zeros(layer.out_features, layer.in_features)
    for k in range(0, len(h), chunk):
        plain_sum += layer.edge_responses(h[k : k + chunk]).sum(0)
    mean = plain_sum / len(h)                                                       # (o, i)
    centre = mean if centered else torch.zeros_like(mean)
    abs_sum = torch.zeros_like(mean)
    for k in range(0, len(h), chunk):
        abs_sum += (layer.edge_responses(h[k : k + chunk]) - centre).abs().sum(0)   # (chunk, o, i) summed
    return abs_sum / len(h), mean


@torch.no_grad()
def edge_scores(model: nn.Module, x: torch.Tensor, *, centered: bool = True) -> list[torch.Tensor]:
    """Each layer's edge scores mean_n |phi_oi(h_i) - m_oi| on the data (m = mean, or 0 if not centered).

    Args:
        model: a stack of KANLinear / SymbolicKANLinear layers.
        x: (n, d) model inputs, e.g. the training set.
        centered: measure around each edge's mean (see the module docstring); False = the paper's.
    Returns:
        One (o, i) tensor per layer.
    """
    pairs = zip(stack_of(model), layer_inputs(model, x), strict=True)
    return [_response_means(layer, h, centered)[0] for layer, h in pairs]


@dataclass(frozen=True)
class NodeScores:
    """Incoming and outgoing scores of the hidden nodes between layer `layer` and the next."""

    layer: int
    incoming: tuple[float, ...]
    outgoing: tuple[float, ...]


def node_scores(model: nn.Module, x: torch.Tensor, *, centered: bool = True) -> list[NodeScores]:
    """Incoming (max over edges in) and outgoing (max over edges out) scores of every hidden node."""
    edges = edge_scores(model, x, centered=centered)
    return [
        NodeScores(j, tuple(edges[j].max(1).values.tolist()), tuple(edges[j + 1].max(0).values.tolist()))
        for j in range(len(edges) - 1)
    ]


@dataclass(frozen=True)
class PruneReport:
    """What prune did.

    Attributes:
        threshold: the node score threshold.
        widths_before, widths_after: model widths (input, hidden..., output).
        kept: per hidden layer, the indices of the nodes kept.
        params_before, params_after: trainable parameter counts.
        max_output_change: max |y_pruned - y| over the data x prune was given.
    """

    threshold: float
    widths_before: tuple[int, ...]
    widths_after: tuple[int, ...]
    kept: tuple[tuple[int, ...], ...]
    params_before: int
    params_after: int
    max_output_change: float

    def __str__(self) -> str:
        return (f"pruned at {self.threshold:g}: widths {list(self.widths_before)} -> "
                f"{list(self.widths_after)}, parameters {self.params_before} -> {self.params_after}, "
                f"max output change on the data {self.max_output_change:.3g}")


def _take(layer: KanLayer, rows: torch.Tensor, cols: torch.Tensor) -> KanLayer:
    if isinstance(layer, KANLinear):
        return layer.subset(rows, cols)
    new = SymbolicKANLinear(layer.kan.subset(rows, cols))
    with torch.no_grad():
        new.fn_index.copy_(layer.fn_index[rows][:, cols])
        new.affine.copy_(layer.affine[rows][:, cols])
    return new


def _widths(layers: list[KanLayer]) -> tuple[int, ...]:
    return (layers[0].in_features, *(layer.out_features for layer in layers))


@torch.no_grad()
def prune(
    model: nn.Module, x: torch.Tensor, threshold: float = 1e-2, *, centered: bool = True, absorb: bool = True
) -> tuple[Stack, PruneReport]:
    """Remove every hidden node whose incoming or outgoing score is at most threshold.

    Args:
        model: a stack of KANLinear / SymbolicKANLinear layers (not changed).
        x: (n, d) model inputs the scores are measured on (the training inputs).
        threshold: node score threshold (the paper's 1e-2).
        centered: score edges around their mean (module docstring); False = the paper's scores.
        absorb: add a removed node's mean outgoing responses to the next layer's bias.
    Returns:
        (the pruned Stack, a PruneReport).
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")
    layers = stack_of(model)
    edges = edge_scores(model, x, centered=centered)
    keep = [torch.arange(layers[0].in_features)]
    for j in range(len(layers) - 1):
        incoming, outgoing = edges[j].max(1).values, edges[j + 1].max(0).values   # (h,), (h,)
        alive = ((incoming > threshold) & (outgoing > threshold)).nonzero().squeeze(1)
        if alive.numel() == 0:
            best = float(torch.minimum(incoming, outgoing).max())
            raise ValueError(
                f"pruning at threshold {threshold:g} would remove every node of hidden layer {j + 1} "
                f"(its best node scores {best:.3g}); use a threshold below that"
            )
        keep.append(alive)
    keep.append(torch.arange(layers[-1].out_features))
    new_layers = [_take(layer, keep[j + 1], keep[j]) for j, layer in enumerate(layers)]
    if absorb:
        inputs = layer_inputs(model, x)
        for j in range(1, len(layers)):
            gone = torch.ones(layers[j].in_features, dtype=torch.bool)
            gone[keep[j]] = False
            target = new_layers[j]
            bias = target.kan.bias if isinstance(target, SymbolicKANLinear) else target.bias
            if gone.any() and bias is not None:
                mean = _response_means(layers[j], inputs[j], False)[1]                    # (o, i)
                bias.add_(mean[keep[j + 1]][:, gone].sum(1))
    pruned = Stack(list[nn.Module](new_layers))
    pruned.train(model.training)
    report = PruneReport(
        threshold=float(threshold), widths_before=_widths(layers), widths_after=_widths(new_layers),
        kept=tuple(tuple(k.tolist()) for k in keep[1:-1]),
        params_before=param_count(model), params_after=param_count(pruned),
        max_output_change=float((pruned(x) - model(x)).abs().max()),
    )
    return pruned, report

