"""The full-batch MSE of a small KAN, plus the KAN paper's sparsity term, and its gradient straight
from the native kernels.

LBFGS evaluates the loss and gradient of one full batch about 23 times per step. When every layer
of a model runs the native path (the KAN paper's [2, 5, 1] and its kin), `mse_objective` computes
both with the C kernels of layers/kan/_native.c directly on the optimizer's flat parameter vector:
no autograd graph, no copies of the parameters into the model or of their gradients out of it.
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

import torch
from torch import nn

from kanlab.layers.kan import _native, native_build
from kanlab.layers.kan.layer import KANLinear
from kanlab.models.stack import Stack
from kanlab.training.hand_objective import hand_objective
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
    Slot = tuple[torch.Tensor | None, int | None]  # (a frozen tensor, or an offset in the flat vector)
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

    shapes = [(layer.grid.shape, layer.coef.shape) for layer in layers]

    @torch.compiler.disable  # the kernels read raw addresses, which tracing cannot follow
    def objective(flat: torch.Tensor) -> tuple[float, torch.Tensor]:
        # The kernels read raw memory: check what they will read first.
        if flat.shape != (at,) or flat.dtype != dtype or flat.device.type != "cpu":
            raise ValueError(f"the objective takes a flat CPU {dtype} vector of {at} parameters, got "
                             f"{tuple(flat.shape)} {flat.dtype} on {flat.device}")
        if [(layer.grid.shape, layer.coef.shape) for layer in layers] != shapes:
            raise RuntimeError("a layer's grid changed size (refine) since mse_objective built this "
                               "objective: build a new one (and a new optimizer)")
        flat = flat.contiguous()
        grad = torch.empty_like(flat)  # every entry is written by exactly one kernel call
        size = flat.element_size()

        def address(slot: Slot, base: int) -> int | None:
            tensor, offset = slot
            if tensor is not None:
                return tensor.data_ptr()
            return None if offset is None else base + offset * size

        hs, auxs, masses = [x], [], []
        # the cell tables of moved grids (None for uniform ones; cached per grid, as it is now)
        tables = [_native.cells(layer.grid, layer.order, layer.uniform) for layer in layers]
        for layer, row, table in zip(layers, slots, tables, strict=True):
            h = hs[-1]
            aux = _native.aux_of(h, layer.base)
            out = h.new_empty(len(h), layer.out_features)
            edges = (layer.out_features, layer.in_features)
            mass = h.new_empty(edges, dtype=torch.float64) if sparsity else None  # (o, i): sum_b |r_oi|
            coef, scale, base_weight, bias = (address(slot, flat.data_ptr()) for slot in row)
            head = _native.head(h, aux, layer.out_features, layer.grid, table, layer.order, coef, scale,
                                base_weight, layer.base)
            _native.check(lib.kan_forward(*head, bias, out.data_ptr(), _native.ptr(mass),
                                          _native.work_threads(h, layer.coef)))
            hs.append(out)
            auxs.append(aux)
            masses.append(mass)
        residual = hs[-1].sub_(y)
        loss = float(torch.dot(residual.view(-1), residual.view(-1))) / residual.numel()
        gy = residual.mul_(2.0 / residual.numel())                         # d loss / d output
        weights: list[torch.Tensor | None] = []  # per layer: d (sparsity * term) / d mass, (o, i)
        for mass in masses:
            if mass is None:
                weights.append(None)
                continue
            term, slope = sparsity_slope(mass.numpy() / len(x), l1, entropy)  # A = mass / b
            loss += sparsity * term
            weights.append(torch.from_numpy(slope * (sparsity / len(x))))  # d / d mass
        for n in range(len(layers) - 1, -1, -1):
            layer, row, h = layers[n], slots[n], hs[n]
            gx = torch.empty_like(h) if n > 0 else None
            coef, scale, base_weight, _ = (address(slot, flat.data_ptr()) for slot in row)
            grads = (address((None, offset), grad.data_ptr()) for _, offset in row)
            head = _native.head(h, auxs[n], layer.out_features, layer.grid, tables[n], layer.order, coef,
                                scale, base_weight, layer.base)
            _native.check(lib.kan_backward(*head,
                                           gy.data_ptr(), _native.ptr(weights[n]), _native.ptr(gx), *grads,
                                           _native.work_threads(h, layer.coef)))
            if gx is not None:
                gy = gx
        return loss, grad

    return objective


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
