"""The full-batch MSE and its gradient for a stack of layers that differentiate themselves by hand.

native_objective.mse_objective covers stacks of plain KANLinear layers. A stack may also hold
layers of a higher package (the symbolic workflow's SymbolicKANLinear) whose forward is simple
enough to differentiate by hand. Such a layer offers `by_hand()`, returning a HandLayer (or None
when its current state has no hand-written form); a KANLinear on the native path is one through
NativeLayer. `hand_objective` chains them on the optimizer's flat parameter vector without
autograd, as mse_objective does, and train() uses it where mse_objective does not apply.

LBFGS calls an objective about 23 times per step on the same data, so everything a call reads or
writes is made once, when the objective is built: the flat point and gradient buffers, each
layer's output and input gradient, and each layer's own work (HandLayer.bind). A call is then the
layers' forwards, the residual, and their backwards.

Legend: b batch, i in_features, o out_features of a layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from kanlab.layers.kan import _native, native_build
from kanlab.layers.kan.bases import BASES
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


@dataclass(frozen=True)
class Buffers:
    """What one layer reads and writes in every call of an objective: the same tensors each time.

    Attributes:
        h: (b, i) its input (the data, or the previous layer's out).
        out: (b, o) where forward writes its output.
        gy: (b, o) d loss / d out, there when backward runs.
        gx: (b, i) where backward writes d loss / d h, or None when nothing needs it.
        data: whether h is the data (the same values at every call), not a layer's output.
    """

    h: torch.Tensor
    out: torch.Tensor
    gy: torch.Tensor
    gx: torch.Tensor | None
    data: bool = False


class Bound(Protocol):
    """A layer bound to its buffers and to the values of its tensors: forward and backward take
    nothing and return nothing."""

    def forward(self) -> None:
        """Write the layer's output of buffers.h into buffers.out."""
        ...

    def backward(self) -> None:
        """Write d loss / d tensors into the gradient values, and d loss / d h into buffers.gx if there."""
        ...


class HandLayer(Protocol):
    """A layer's forward and backward by hand, on buffers and values given once."""

    tensors: tuple[torch.Tensor | None, ...]  # what it reads (parameters, buffers), in its order
    out_features: int

    def bind(self, buffers: Buffers, values: Values, grads: Values) -> Bound:
        """The layer on these buffers, reading values and writing grads (None entries: no gradient)."""
        ...


@dataclass
class NativeCalls:
    """kan_forward's and kan_backward's arguments for one layer on fixed buffers (see native_calls)."""

    forward: tuple[Any, ...]
    backward: tuple[Any, ...]
    keep: tuple[Any, ...]  # every tensor the addresses point into, held as long as the arguments


def native_calls(layer: KANLinear, h: torch.Tensor, aux: torch.Tensor | None, out: torch.Tensor,
                 gy: torch.Tensor | None, gx: torch.Tensor | None, params: Sequence[int | None],
                 grads: Sequence[int | None], mass: torch.Tensor | None = None,
                 weight: torch.Tensor | None = None) -> NativeCalls:
    """The native kernels' arguments for layer on these buffers.

    Args:
        layer: a KANLinear whose grid is float64 and contiguous.
        h, aux, out, gy, gx: (b, i) input, its aux (_native.aux_of) or None, (b, o) output, (b, o)
            d loss / d out, (b, i) d loss / d h or None.
        params, grads: addresses of (coef, spline_weight, base_weight, bias) and of their
            gradients (None: absent, or no gradient wanted).
        mass, weight: the sparsity term's (o, i) float64 buffers (native_objective), or None.
    """
    table = _native.cells(layer.grid, layer.order, layer.uniform)  # None on a uniform grid
    threads = _native.work_threads(h, layer.coef)
    head = _native.head(h, aux, layer.out_features, layer.grid, table, layer.order, params[0], params[1],
                        params[2], layer.base)
    return NativeCalls((*head, params[3], out.data_ptr(), _native.ptr(mass), threads),
                       (*head, _native.ptr(gy), _native.ptr(weight), _native.ptr(gx), *grads, threads),
                       (table, layer.grid, h, aux, out, gy, gx, mass, weight))


class NativeLayer:
    """A KANLinear on the native kernels as a HandLayer: tensors (coef, spline_weight, base_weight, bias)."""

    tensors: tuple[torch.Tensor | None, ...]

    def __init__(self, layer: KANLinear) -> None:
        self.layer = layer
        self.tensors = (layer.coef, layer.spline_weight, layer.base_weight, layer.bias)
        self.out_features = layer.out_features

    @staticmethod
    def of(layer: KANLinear) -> NativeLayer | None:
        """NativeLayer(layer) where the kernels can run it (the native path, a float64 contiguous grid)."""
        if layer.resolved_path() != "native" or layer.grid.dtype != torch.float64:
            return None
        return NativeLayer(layer) if layer.grid.is_contiguous() else None

    def bind(self, buffers: Buffers, values: Values, grads: Values) -> Bound:
        return _BoundNative(self.layer, buffers, values, grads)


class _BoundNative:
    def __init__(self, layer: KANLinear, buffers: Buffers, values: Values, grads: Values) -> None:
        lib = native_build.library(buffers.h.dtype)
        assert lib is not None  # NativeLayer.of: resolved_path() == "native" built it
        self.lib, self.h = lib, buffers.h  # the kernels' buffers are held by self.calls
        # b(x)'s aux (torch.sigmoid or torch.tanh of h): computed here once for the data, else at
        # every forward (refresh)
        aux_fn = None if layer.base is None else BASES[layer.base].aux
        self.aux = None if aux_fn is None else torch.empty_like(buffers.h)
        self.refresh = None if buffers.data else aux_fn
        if buffers.data and self.aux is not None and aux_fn is not None:
            aux_fn(buffers.h, out=self.aux)  # type: ignore[call-arg]
        self.calls = native_calls(layer, buffers.h, self.aux, buffers.out, buffers.gy, buffers.gx,
                                  values.addresses, grads.addresses)

    def forward(self) -> None:
        if self.refresh is not None:
            self.refresh(self.h, out=self.aux)  # type: ignore[call-arg]
        _native.check(self.lib.kan_forward(*self.calls.forward))

    def backward(self) -> None:
        _native.check(self.lib.kan_backward(*self.calls.backward))


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
        The objective, or None where it does not apply (then train with a closure as usual). It
        reads the model's grids and frozen tensors as they are when it is built: build it again
        after changing them (train() builds one per LBFGS step).
    """
    hands = [hand_layer(layer) for layer in (model.layers if type(model) is Stack else [model])]
    if not params or any(hand is None for hand in hands):
        return None
    dtype = params[0].dtype
    if any(p.dtype != dtype for p in params) or x.dtype != dtype or y.dtype != dtype:
        return None
    if x.device.type != "cpu" or y.ndim != 2 or len(y) != len(x):
        return None
    if y.shape[1] != hands[-1].out_features:  # type: ignore[union-attr]
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
    point, grad = torch.zeros(at, dtype=dtype), torch.zeros(at, dtype=dtype)

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
    x, y = x.contiguous(), y.contiguous()
    layers: list[HandLayer] = hands  # type: ignore[assignment]
    outs = [x.new_empty(len(x), layer.out_features) for layer in layers]    # (b, o) each
    gxs = [None, *(torch.empty_like(out) for out in outs[:-1])]           # d loss / d each layer's input
    gys = [*gxs[1:], outs[-1]]  # the last layer's: the residual, written over its output
    bound = [layer.bind(Buffers(h, out, gy, gx, data=h is x), v, g)
             for layer, h, out, gy, gx, v, g in zip(layers, [x, *outs[:-1]], outs, gys, gxs, values, grads,
                                                    strict=True)]
    return _HandObjective(bound, point, grad, outs[-1], y, (x, outs, gxs, values, grads))


class _HandObjective:
    """hand_objective's f(flat) -> (loss, gradient) on the buffers it was given."""

    def __init__(self, bound: list[Bound], point: torch.Tensor, grad: torch.Tensor, out: torch.Tensor,
                 y: torch.Tensor, keep: tuple[Any, ...]) -> None:
        self.bound, self.point, self.grad, self.out, self.y = bound, point, grad, out, y
        # Every buffer the layers were bound to: kernels hold only their addresses, so a buffer no
        # Python object kept was freed and then written (a use after free).
        self.keep = keep
        self.size = out.numel()

    @torch.compiler.disable  # the kernels read raw addresses, which tracing cannot follow
    def __call__(self, flat: torch.Tensor) -> tuple[float, torch.Tensor]:
        point = self.point
        if flat.shape != point.shape or flat.dtype != point.dtype or flat.device.type != "cpu":
            raise ValueError(f"the objective takes a flat CPU {point.dtype} vector of {len(point)} "
                             f"parameters, got {tuple(flat.shape)} {flat.dtype} on {flat.device}")
        # inference mode: a few microseconds less per tensor operation than no_grad (no version
        # counters, no view tracking); only the buffers made above are written, and the gradient
        # returned is a copy made outside it, an ordinary tensor
        with torch.inference_mode():
            point.copy_(flat)
            for layer in self.bound:
                layer.forward()
            residual = self.out.sub_(self.y).view(-1)
            loss = float(torch.dot(residual, residual)) / self.size
            residual.mul_(2.0 / self.size)                                     # d loss / d output
            for layer in reversed(self.bound):
                layer.backward()
        return loss, self.grad.clone()  # LBFGS keeps gradients: each call returns its own
