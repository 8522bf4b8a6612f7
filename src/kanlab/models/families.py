"""The layer families a model block can be made of (FAMILIES): each family's class, the options
kanlab adds to its defaults, and the options its constructor accepts."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from typing import Any, Protocol

from torch import nn

from kanlab.layers._common import check_choice
from kanlab.layers.activations import RBFKAN, ChebyshevKAN, FourierKAN
from kanlab.layers.dense import ACTIVATIONS, Dense
from kanlab.layers.kan.layer import KANLinear
from kanlab.layers.tanh_quadratic import TanhQuadratic


class LayerClass(Protocol):
    """A layer family's class: built as cls(in, out, **options), counted by num_params and num_flops."""

    def __call__(self, *args: Any, **kwargs: Any) -> nn.Module: ...
    def num_params(self, *args: Any, **kwargs: Any) -> int: ...
    def num_flops(self, *args: Any, **kwargs: Any) -> int: ...


@dataclass(frozen=True)
class Family:
    """A layer class, the options kanlab adds to its defaults, and an optional per-layer rule."""

    layer: LayerClass
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # (options, index in block, layers in block, block is first in the stack) -> layer options
    per_layer: Callable[[dict[str, Any], int, int, bool], dict[str, Any]] | None = None
    managed: tuple[str, ...] = ()  # options per_layer sets; users may not pass them


def _mlp_layer(options: dict[str, Any], index: int, n_layers: int, first_block: bool) -> dict[str, Any]:
    check_choice(options["activation"], ACTIVATIONS, "activation")
    act = "identity" if index == n_layers - 1 else options["activation"]
    return {**options, "activation": act, "first": first_block and index == 0 and act == "sine"}


FAMILIES: dict[str, Family] = {
    "kan": Family(KANLinear),
    "mlp": Family(Dense, {"activation": "tanh"}, _mlp_layer, managed=("first",)),
    "tanhquad": Family(TanhQuadratic),
    "rbf": Family(RBFKAN),
    "chebyshev": Family(ChebyshevKAN),
    "fourier": Family(FourierKAN),
}


@cache  # a constructor's signature is read once: budget matching and a tune's checks ask thousands of times
def allowed_options(family: str) -> tuple[str, ...]:
    """Options a block of this family accepts: its constructor's, less the managed ones."""
    check_choice(family, tuple(FAMILIES), "model family")
    # device and dtype are not options: a config must be writable as text; use model.to().
    fam = FAMILIES[family]
    skip = ("in_features", "out_features", "device", "dtype", *fam.managed)
    params = inspect.signature(fam.layer).parameters.values()
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return tuple(name for name in named if name not in skip)


def layer_args(
    family: str, widths: tuple[int, ...], options: Mapping[str, Any], first_block: bool
) -> list[tuple[int, int, dict[str, Any]]]:
    """(in, out, options) of each layer of a block of `family`: its defaults and per-layer rule applied."""
    fam = FAMILIES[family]
    merged, n = {**fam.defaults, **options}, len(widths) - 1
    rule = fam.per_layer or (lambda opts, *_: opts)
    return [(a, b, rule(merged, i, n, first_block)) for i, (a, b) in enumerate(pairwise(widths))]
