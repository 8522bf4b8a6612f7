"""The full-batch MSE of a small KAN, plus the KAN paper's sparsity term, and its gradient straight
from the native kernels.

LBFGS evaluates the loss and gradient of one full batch about 23 times per step. When every layer
of a model runs the native path (the KAN paper's [2, 5, 1] and its kin), `mse_objective` computes
both with the C kernels of layers/kan/_native.c on the optimizer's flat parameter vector: no
autograd graph, no copies of the parameters into the model or of their gradients out of it, and
(the objective's buffers being its own) the kernels' arguments made once, not at every call.
With a sparsity weight it adds training.regularization's term: the kernels' forward sums each
edge's |r_oi| (mass), the term and its gradient by A_oi = mass / b are a few operations on the
(o, i) arrays (regularization.sparsity_slope), and the kernels' backward adds sparsity times that
gradient times sign(r_oi) / b to each edge's own upstream gradient. Its loss and gradient equal
the model's with autograd (tests/test_native_objective.py); `lbfgs_step` takes it where it
applies, and train() uses that for full-batch LBFGS without gradient clipping, with or without
sparsity.

Legend: b batch, i in_features, o out_features of a layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from kanlab.layers.kan import _native, native_build
from kanlab.layers.kan.bases import BASES
from kanlab.layers.kan.layer import KANLinear
from kanlab.models.stack import Stack
from kanlab.training.hand_objective import NativeCalls, hand_objective, native_calls
from kanlab.training.lbfgs import LBFGS
from kanlab.training.regularization import sparsity_slope

Objective = Callable[[torch.Tensor], tuple[float, torch.Tensor]]


def _layers(model: nn.Module) -> list[KANLinear] | None:
    # Only models whose forward is known to be the layers in order: kanlab's Stack of KANLinear
    # layers, or one KANLinear (a subclass might change forward).
    layers = list(model.layers) if type(model) is Stack else [model]
    if all(type(layer) is KANLinear for layer in layers):
        return layers  # type: ignore[return-value]
    return None


def mse_objective(model: nn.Module, params: Sequence[torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor, *, sparsity: float = 0.0, l1: float = 1.0,
                  entropy: float = 2.0) -> Objective | None:
    """f(flat) -> (loss, its gradient) over the parameters as one flat vector, where loss is the
    mean squared error plus sparsity * training.regularization.sparsity_loss(model, x, l1, entropy).

    Args:
        model: a kanlab Stack of KANLinear layers, or one KANLinear.
        params: the trainable parameters in the flat vector's order (the optimizer's).
        x, y: (b, in_features) inputs and (b, out_features) targets in the model's dtype.
        sparsity, l1, entropy: the sparsity term's weight (0: none) and its L1 and entropy weights.
    Returns:
        The objective, or None where it does not apply (then train with a closure as usual): a
        layer that is not a KANLinear on the native path, parameters other than the layers' own,
        or x, y of another dtype, device or shape.
    """
    layers = _layers(model)
    if layers is None or not params or any(layer.resolved_path() != "native" for layer in layers):
        return None
    dtype = params[0].dtype
    if any(p.dtype != dtype for p in params) or x.dtype != dtype or y.dtype != dtype:
        return None
    if x.device.type != "cpu" or y.shape != (len(x), layers[-1].out_features):
        return None
    if any(layer.grid.dtype != torch.float64 or not layer.grid.is_contiguous() for layer in layers):
        return None
    offsets: dict[int, int] = {}
    at = 0
    for param in params:
        offsets[id(param)] = at
        at += param.numel()
    slots: list[list[Slot]] = []
    owned = 0
    for layer in layers:
        row: list[Slot] = []
        for p in (layer.coef, layer.spline_weight, layer.base_weight, layer.bias):
            if p is None:
                row.append((None, None))
            elif id(p) in offsets and p.requires_grad:
                row.append((None, offsets.pop(id(p))))  # popped: a parameter used twice is refused
                owned += p.numel()
            elif p.requires_grad or p.dtype != dtype or not p.is_contiguous():
                return None  # trained by the optimizer but not in params, or unreadable
            else:
                row.append((p, None))  # frozen: read from the layer, no gradient
        slots.append(row)
    if owned != at or offsets:
        return None
    x, y = x.contiguous(), y.contiguous()
    lib = native_build.library(dtype)
    assert lib is not None  # resolved_path() == "native" built it
    return _Objective(lib, layers, slots, at, x, y, sparsity, l1, entropy)


Slot = tuple[torch.Tensor | None, int | None]  # (a frozen tensor, or an offset in the flat vector)


class _Objective:
    """mse_objective's f(flat) -> (loss, gradient). Each call copies its vector into one buffer and
    the layers' outputs, inputs' bases and gradients go to buffers made here, so the kernels'
    arguments are the same from call to call: they are made once (prepare) and again only when a
    grid moved (a grid update between LBFGS steps) or torch's thread count changed."""

    def __init__(self, lib: Any, layers: list[KANLinear], slots: list[list[Slot]], at: int, x: torch.Tensor,
                 y: torch.Tensor, sparsity: float, l1: float, entropy: float) -> None:
        self.lib, self.layers, self.slots, self.size, self.y = lib, layers, slots, at, y
        self.sparsity, self.l1, self.entropy = sparsity, l1, entropy
        self.dtype = y.dtype
        self.shapes = [(layer.grid.shape, layer.coef.shape) for layer in layers]
        self.point, self.grad = x.new_empty(at), x.new_empty(at)  # every gradient entry: one kernel call's
        b = len(x)
        self.outs = [x.new_empty(b, layer.out_features) for layer in layers]             # (b, o) each
        self.hs = [x, *self.outs[:-1]]                                                   # layer inputs
        # what the kernels read for b(x) (aux_of): the first layer's input is fixed, computed now
        self.aux_fns = [None if layer.base is None else BASES[layer.base].aux for layer in layers]
        self.auxs = [_native.aux_of(x, layers[0].base)] + [
            None if fn is None else x.new_empty(b, layer.in_features)
            for fn, layer in zip(self.aux_fns[1:], layers[1:], strict=True)]
        self.gxs = [None] + [x.new_empty(b, layer.in_features) for layer in layers[1:]]  # d loss / d input
        edges = [(layer.out_features, layer.in_features) for layer in layers]
        # per layer, (o, i): sum_b |r_oi|, and d (sparsity * term) / d mass
        self.masses = [x.new_empty(e, dtype=torch.float64) if sparsity else None for e in edges]
        self.weights = [x.new_empty(e, dtype=torch.float64) if sparsity else None for e in edges]
        self.key: list[Any] | None = None
        self.calls: list[NativeCalls] = []

    def _state(self) -> list[Any]:
        # what the prepared arguments depend on besides the buffers: the grids (the cell tables'
        # cache key, _native.cells) and the thread count
        grids = [(layer.grid, layer.uniform) for layer in self.layers]
        return [torch.get_num_threads(), *((id(g), g.data_ptr(), g._version, u) for g, u in grids)]

    def prepare(self) -> None:
        """The kernels' arguments on the layers' grids as they are now."""
        layers = self.layers
        if [(layer.grid.shape, layer.coef.shape) for layer in layers] != self.shapes:
            raise RuntimeError("a layer's grid changed size (refine) since mse_objective built this "
                               "objective: build a new one (and a new optimizer)")
        size = self.point.element_size()

        def address(slot: Slot, base: torch.Tensor) -> int | None:
            tensor, offset = slot
            if tensor is not None:
                return tensor.data_ptr()
            return None if offset is None else base.data_ptr() + offset * size

        self.calls = []
        for n, (layer, row) in enumerate(zip(layers, self.slots, strict=True)):
            gy = self.outs[n] if n == len(layers) - 1 else self.gxs[n + 1]  # the residual, scaled in place
            self.calls.append(native_calls(
                layer, self.hs[n], self.auxs[n], self.outs[n], gy, self.gxs[n],
                [address(slot, self.point) for slot in row],
                [address((None, offset), self.grad) for _, offset in row], self.masses[n], self.weights[n]))
        self.key = self._state()

    @torch.compiler.disable  # the kernels read raw addresses, which tracing cannot follow
    def __call__(self, flat: torch.Tensor) -> tuple[float, torch.Tensor]:
        # The kernels read raw memory: check what they will read first.
        if flat.shape != (self.size,) or flat.dtype != self.dtype or flat.device.type != "cpu":
            raise ValueError(f"the objective takes a flat CPU {self.dtype} vector of {self.size} parameters, "
                             f"got {tuple(flat.shape)} {flat.dtype} on {flat.device}")
        if self.key != self._state():
            self.prepare()
        with torch.inference_mode():  # as hand_objective's: cheaper tensor operations, buffers ours
            self.point.copy_(flat)
            lib, b = self.lib, len(self.y)
            for n, calls in enumerate(self.calls):
                aux, fn = self.auxs[n], self.aux_fns[n]
                if n > 0 and aux is not None and fn is not None:
                    fn(self.hs[n], out=aux)  # type: ignore[call-arg]  # torch.sigmoid or torch.tanh
                _native.check(lib.kan_forward(*calls.forward))
            residual = self.outs[-1].sub_(self.y).view(-1)
            loss = float(torch.dot(residual, residual)) / residual.numel()
            residual.mul_(2.0 / residual.numel())                             # d loss / d output
            for mass, weight in zip(self.masses, self.weights, strict=True):
                if mass is None or weight is None:
                    continue
                term, slope = sparsity_slope(mass.numpy() / b, self.l1, self.entropy)  # A = mass / b
                loss += self.sparsity * term
                np.multiply(slope, self.sparsity / b, out=weight.numpy())      # d (sparsity * term) / d mass
            for calls in reversed(self.calls):
                _native.check(lib.kan_backward(*calls.backward))
        return loss, self.grad.clone()  # LBFGS keeps gradients: each call returns its own


def lbfgs_step(opt: LBFGS, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               closure: Callable[[], torch.Tensor], *, sparsity: float = 0.0, l1: float = 1.0,
               entropy: float = 2.0) -> torch.Tensor:
    """One step of opt on the MSE of model on (x, y) plus sparsity * its sparsity term (see
    mse_objective): on mse_objective where it applies, else (without sparsity) on hand_objective,
    else on closure (which must compute that same loss); returns the loss before the step."""
    objective = mse_objective(model, opt.param_groups[0]["params"], x, y, sparsity=sparsity, l1=l1,
                              entropy=entropy)
    if objective is None and not sparsity:  # a stack with layers of other kinds, each by hand (MSE only)
        objective = hand_objective(model, opt.param_groups[0]["params"], x, y)
    if objective is not None:
        return opt.step(objective=objective)
    return opt.step(closure)
