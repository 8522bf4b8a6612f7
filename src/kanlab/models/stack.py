"""Models are Stacks of layers built from a ModelConfig (see kanlab.models.spec for the spec grammar)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from kanlab.layers.kan.layer import KANLinear
from kanlab.models.spec import (
    FAMILIES,
    LayerClass,
    ModelConfig,
    format_spec,
    layer_args,
)

# The spec names are re-exported by the package (kanlab.models), where users look for them.
__all__ = ["KAN", "MLP", "Stack", "build", "count_flops", "count_params", "param_count"]


class Stack(nn.Module):
    """Layers applied in order: (b, in_features) -> (b, out_features).

    Args:
        layers: modules mapping (b, width_i) -> (b, width_i+1).
        config: the ModelConfig they were built from, if any; gives `spec`.
    """

    def __init__(self, layers: Iterable[nn.Module], *, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        if len(self.layers) == 0:
            raise ValueError("a Stack needs at least one layer")
        self.config = config
        self.spec = format_spec(config) if config is not None else "custom"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model output: (b, in_features) -> (b, out_features)."""
        for layer in self.layers:
            x = layer(x)
        return x

    def kan_layers(self) -> list[KANLinear]:
        """The B-spline KAN layers in order, for update_grid / refine by the training loop."""
        return [layer for layer in self.layers if isinstance(layer, KANLinear)]

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"


def _all_layer_args(cfg: ModelConfig) -> list[tuple[LayerClass, int, int, dict[str, Any]]]:
    return [
        (FAMILIES[b.family].layer, a, o, opts)
        for j, b in enumerate(cfg.blocks)
        for a, o, opts in layer_args(b.family, b.widths, b.options, j == 0)
    ]


def build(cfg: ModelConfig) -> Stack:
    """Build the model cfg describes (parameters drawn from the global torch RNG)."""
    return Stack([cls(a, o, **opts) for cls, a, o, opts in _all_layer_args(cfg)], config=cfg)


def KAN(widths: Sequence[int], **layer_options: Any) -> Stack:  # noqa: N802 (a model name)
    """A B-spline KAN, e.g. KAN([2, 5, 1], grid_size=5); options go to every KANLinear."""
    return build(ModelConfig.single("kan", widths, **layer_options))


def MLP(widths: Sequence[int], activation: str = "tanh", **layer_options: Any) -> Stack:  # noqa: N802
    """An MLP of Dense layers: `activation` on the hidden layers, a linear output layer."""
    return build(ModelConfig.single("mlp", widths, activation=activation, **layer_options))


def param_count(model: nn.Module) -> int:
    """Number of trainable (requires_grad) parameters of model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_params(cfg: ModelConfig) -> int:
    """Parameter count of build(cfg), from each layer class's num_params; builds nothing."""
    return sum(cls.num_params(a, o, **opts) for cls, a, o, opts in _all_layer_args(cfg))


def count_flops(cfg: ModelConfig, *, local: bool = False) -> int:
    """Forward multiply-adds per sample of build(cfg) ("FLOPs" in kanlab), from each layer's num_flops.

    What is counted: the multiply-adds of the weighted sums, the products of a learnable weight
    with a per-sample value, as a dense matmul evaluates them (one multiply-add = one multiply
    and one add; torch.utils.flop_counter counts it as 2 FLOPs). Per layer of in -> out:
    mlp in*out; kan in*out*(grid_size + order), + in*out with a weighted base branch;
    chebyshev in*out*(degree + 1); fourier 2*in*out*frequencies; rbf in*out*grid_size, + in*out
    with a base branch; tanhquad 2*in*out. Elementwise work is not counted: the basis values
    (per input), the activations (per node, or per edge for tanhquad), the bias adds; measured
    time per step (match = "time") is what includes it.

    Args:
        cfg: the model.
        local: count B-spline KAN layers by their local support (order + 1 bases per input, as
            the gather and native paths evaluate them) instead of every basis.
    Returns:
        Multiply-adds per sample of one forward pass.
    """
    return sum(cls.num_flops(a, o, local=local, **opts) for cls, a, o, opts in _all_layer_args(cfg))


class EdgeLayer(Protocol):
    """A layer that can report its per-edge responses (every family but Dense)."""

    def edge_responses(self, x: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def layer_inputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of each layer of model.layers (or of model itself) when model runs on x: (n, width) each."""
    inputs = []
    for layer in getattr(model, "layers", [model]):
        inputs.append(x)
        x = layer(x)
    return inputs


@torch.no_grad()
def edge_samples(layer: EdgeLayer, h: torch.Tensor, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every edge's response on a uniform grid over the range of the layer input h.

    Args:
        layer: a layer with edge_responses (any family but Dense).
        h: (n, i) the layer's inputs on the data.
        points: grid points per input.
    Returns:
        xs (P, i) and responses (P, o, i).
    """
    lo, hi = h.min(0).values, h.max(0).values
    t = torch.linspace(0, 1, points, dtype=h.dtype, device=h.device).unsqueeze(1)
    xs = lo + (hi - lo) * t                                                          # (P, i)
    return xs, layer.edge_responses(xs)                                              # (P, o, i)
