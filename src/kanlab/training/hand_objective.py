"""The full-batch MSE and its gradient for a stack of layers that differentiate themselves by hand.

native_objective.mse_objective covers stacks of plain KANLinear layers. A stack may also hold
layers of a higher package (the symbolic workflow's SymbolicKANLinear) whose forward is simple
enough to differentiate by hand. Such a layer offers `by_hand()`, returning a HandLayer (or None
when its current state has no hand-written form); a KANLinear on the native path is one through
NativeLayer. `hand_objective` chains them on the optimizer's flat parameter vector without
autograd, as mse_objective does, and train() uses it where mse_objective does not apply.

Legend: b batch, i in_features, o out_features of a layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from kanlab.layers.kan import _native, native_build
from kanlab.layers.kan.layer import KANLinear
from kanlab.models.stack import Stack
from kanlab.training.lbfgs import Objective


class Values:
    """A layer's tensors (HandLayer.tensors, by position) at the point evaluated, or their gradients:
    as tensors, or as the addresses the native kernels take (None: absent, or frozen in a gradient)."""

    __slots__ = ("addresses", "tensors")

    def __init__(self, tensors: list[torch.Tensor | None]) -> None:
        self.tensors = tensors
        self.addresses = [None if t is None else t.data_ptr() for t in tensors]

    def tensor(self, k: int) -> torch.Tensor | None:
        """Tensor k."""
        return self.tensors[k]

    def address(self, k: int) -> int | None:
        """The address of tensor k's data."""
        return self.addresses[k]


class HandLayer(Protocol):
    """A layer's forward and backward on given values of the tensors it reads."""

    tensors: tuple[torch.Tensor | None, ...]  # what it reads (parameters, buffers), in its order

    def forward(self, h: torch.Tensor, values: Values) -> tuple[torch.Tensor, Any]:
        """(b, i) -> (b, o), and what backward needs."""
        ...

    def backward(self, saved: Any, gy: torch.Tensor, values: Values, grads: Values,
                 need_gx: bool) -> torch.Tensor | None:
        """Write d loss / d tensors into grads (where it has a place); return d loss / d input if asked."""
        ...


class NativeLayer:
    """A KANLinear on the native kernels as a HandLayer: tensors (coef, spline_weight, base_weight, bias)."""

    tensors: tuple[torch.Tensor | None, ...]

    def __init__(self, layer: KANLinear) -> None:
        self.layer = layer
        self.tensors = (layer.coef, layer.spline_weight, layer.base_weight, layer.bias)

    @staticmethod
    def of(layer: KANLinear) -> NativeLayer | None:
        """NativeLayer(layer) where the kernels can run it (the native path, a float64 contiguous grid)."""
        if layer.resolved_path() != "native" or layer.grid.dtype != torch.float64:
            return None
        return NativeLayer(layer) if layer.grid.is_contiguous() else None

    def _head(self, h: torch.Tensor, aux: torch.Tensor | None, values: Values) -> list[Any]:
        layer = self.layer
        # None on a uniform grid. Built (and cached) outside the objective's inference mode: the
        # autograd path reads the same cached table later and must be able to save it for backward.
        with torch.inference_mode(False):
            table = _native.cells(layer.grid, layer.order, layer.uniform)
        return _native.head(h, aux, layer.out_features, layer.grid, table, layer.order, values.address(0),
                            values.address(1), values.address(2), layer.base)

    def forward(self, h: torch.Tensor, values: Values) -> tuple[torch.Tensor, Any]:
        lib = native_build.library(h.dtype)
        assert lib is not None  # resolved_path() == "native" built it
        aux = _native.aux_of(h, self.layer.base)
        out = h.new_empty(len(h), self.layer.out_features)                      # (b, o)
        _native.check(lib.kan_forward(*self._head(h, aux, values), values.address(3), out.data_ptr(), None,
                                      _native.work_threads(h, self.layer.coef)))
        return out, (h, aux)

    def backward(self, saved: Any, gy: torch.Tensor, values: Values, grads: Values,
                 need_gx: bool) -> torch.Tensor | None:
        h, aux = saved
        lib = native_build.library(h.dtype)
        assert lib is not None
        gx = torch.empty_like(h) if need_gx else None
        gy = gy.contiguous()
        _native.check(lib.kan_backward(*self._head(h, aux, values), gy.data_ptr(), None, _native.ptr(gx),
                                       *(grads.address(k) for k in range(4)),
                                       _native.work_threads(h, self.layer.coef)))
        return gx


def hand_layer(layer: nn.Module) -> HandLayer | None:
    """The layer's HandLayer, or None if it has none (then autograd trains it)."""
    if type(layer) is KANLinear:
        return NativeLayer.of(layer)
    by_hand = getattr(layer, "by_hand", None)
    return by_hand() if callable(by_hand) else None


def hand_objective(model: nn.Module, params: Sequence[torch.Tensor], x: torch.Tensor,
                   y: torch.Tensor) -> Objective | None:
    """f(flat) -> (mean squared error, its gradient) for a Stack whose every layer has a HandLayer.

    Args:
        model: a kanlab Stack (or one layer).
        params: the trainable parameters in the flat vector's order (the optimizer's); those that
            no layer's forward reads in its present state get a zero gradient.
        x, y: (b, in_features) inputs and (b, out_features) targets in the parameters' dtype.
    Returns:
        The objective, or None where it does not apply (then train with a closure as usual).
    """
    hands = [hand_layer(layer) for layer in (model.layers if type(model) is Stack else [model])]
    if not params or any(hand is None for hand in hands):
        return None
    dtype = params[0].dtype
    if any(p.dtype != dtype for p in params) or x.dtype != dtype or y.dtype != dtype:
        return None
    if x.device.type != "cpu" or y.ndim != 2 or len(y) != len(x):
        return None
    ours = {id(p) for p in model.parameters()}
    offsets: dict[int, tuple[int, int]] = {}
    at = 0
    for p in params:
        if id(p) not in ours or id(p) in offsets:
            return None  # a parameter of something else, or given twice
        offsets[id(p)] = (at, p.numel())
        at += p.numel()
    # The objective copies each point into one buffer and writes each gradient into another, so
    # that every layer's views of them (and their addresses) are made once, here.
    point, grad = torch.empty(at, dtype=dtype), torch.empty(at, dtype=dtype)

    def views(vector: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        start, n = offsets[id(t)]
        return vector[start:start + n].view(t.shape)

    values, grads = [], []
    read: set[int] = set()
    for hand in hands:
        assert hand is not None
        row: list[torch.Tensor | None] = []
        grad_row: list[torch.Tensor | None] = []
        for t in hand.tensors:
            if t is not None and id(t) in offsets:
                if id(t) in read:
                    return None  # read by two layers: their backwards would each write its gradient
                read.add(id(t))
                row.append(views(point, t))
                grad_row.append(views(grad, t))
            elif t is not None and (t.requires_grad or t.dtype != dtype or not t.is_contiguous()):
                return None  # trained but not by this optimizer, or unreadable by the kernels
            else:
                row.append(t)  # frozen (read as it is, no gradient) or absent
                grad_row.append(None)
        values.append(Values(row))
        grads.append(Values(grad_row))
    layers: list[HandLayer] = hands  # type: ignore[assignment]
    x, y = x.contiguous(), y.contiguous()

    @torch.compiler.disable  # the kernels read raw addresses, which tracing cannot follow
    def objective(flat: torch.Tensor) -> tuple[float, torch.Tensor]:
        if flat.shape != (at,) or flat.dtype != dtype or flat.device.type != "cpu":
            raise ValueError(f"the objective takes a flat CPU {dtype} vector of {at} parameters, got "
                             f"{tuple(flat.shape)} {flat.dtype} on {flat.device}")
        # inference mode: a few microseconds less per tensor operation than no_grad (no version
        # counters, no view tracking); only the buffers made above are written, and the gradient
        # returned is a copy made outside it, an ordinary tensor
        with torch.inference_mode():
            point.copy_(flat)
            grad.zero_()  # parameters no layer reads now keep a zero gradient
            h, saved = x, []
            for layer, v in zip(layers, values, strict=True):
                h, s = layer.forward(h, v)
                saved.append(s)
            if h.shape != y.shape:
                raise ValueError(f"the model's output {tuple(h.shape)} does not match the targets' "
                                 f"{tuple(y.shape)}")
            residual = h - y
            loss = float(torch.dot(residual.view(-1), residual.view(-1))) / residual.numel()
            gy = residual.mul_(2.0 / residual.numel())                     # d loss / d output
            for n in range(len(layers) - 1, -1, -1):
                gx = layers[n].backward(saved[n], gy, values[n], grads[n], n > 0)
                if gx is not None:
                    gy = gx
        return loss, grad.clone()  # LBFGS keeps gradients: each call returns its own

    return objective
