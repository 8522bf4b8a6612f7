"""The full-batch MSE of a small KAN and its gradient straight from the native kernels.

LBFGS evaluates the loss and gradient of one full batch about 23 times per step. When every layer
of a model runs the native path (the KAN paper's [2, 5, 1] and its kin), `mse_objective` computes
both with the C kernels of layers/kan/_native.c directly on the optimizer's flat parameter vector:
no autograd graph, no copies of the parameters into the model or of their gradients out of it.
Its loss and gradient equal the model's (tests/test_native_objective.py); `lbfgs_step` takes it
where it applies, and train() uses that for full-batch LBFGS without sparsity or clipping.

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

Objective = Callable[[torch.Tensor], tuple[float, torch.Tensor]]


def _layers(model: nn.Module) -> list[KANLinear] | None:
    # Only models whose forward is known to be the layers in order: kanlab's Stack of KANLinear
    # layers, or one KANLinear (a subclass might change forward).
    layers = list(model.layers) if type(model) is Stack else [model]
    if all(type(layer) is KANLinear for layer in layers):
        return layers  # type: ignore[return-value]
    return None


def mse_objective(model: nn.Module, params: Sequence[torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor) -> Objective | None:
    """f(flat) -> (mean squared error, its gradient) over the parameters as one flat vector.

    Args:
        model: a kanlab Stack of KANLinear layers, or one KANLinear.
        params: the trainable parameters in the flat vector's order (the optimizer's).
        x, y: (b, in_features) inputs and (b, out_features) targets in the model's dtype.
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

        hs, auxs = [x], []
        # the cell tables of moved grids (None for uniform ones; cached per grid, as it is now)
        tables = [_native.cells(layer.grid, layer.order, layer.uniform) for layer in layers]
        for layer, row, table in zip(layers, slots, tables, strict=True):
            h = hs[-1]
            aux = _native.aux_of(h, layer.base)
            out = h.new_empty(len(h), layer.out_features)
            coef, scale, base_weight, bias = (address(slot, flat.data_ptr()) for slot in row)
            head = _native.head(h, aux, layer.out_features, layer.grid, table, layer.order, coef, scale,
                                base_weight, layer.base)
            _native.check(lib.kan_forward(*head, bias, out.data_ptr(), _native.work_threads(h, layer.coef)))
            hs.append(out)
            auxs.append(aux)
        residual = hs[-1].sub_(y)
        loss = float(torch.dot(residual.view(-1), residual.view(-1))) / residual.numel()
        gy = residual.mul_(2.0 / residual.numel())                         # d loss / d output
        for n in range(len(layers) - 1, -1, -1):
            layer, row, h = layers[n], slots[n], hs[n]
            gx = torch.empty_like(h) if n > 0 else None
            coef, scale, base_weight, _ = (address(slot, flat.data_ptr()) for slot in row)
            grads = (address((None, offset), grad.data_ptr()) for _, offset in row)
            head = _native.head(h, auxs[n], layer.out_features, layer.grid, tables[n], layer.order, coef,
                                scale, base_weight, layer.base)
            _native.check(lib.kan_backward(*head,
                                           gy.data_ptr(), _native.ptr(gx), *grads,
                                           _native.work_threads(h, layer.coef)))
            if gx is not None:
                gy = gx
        return loss, grad

    return objective


def lbfgs_step(opt: LBFGS, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               closure: Callable[[], torch.Tensor]) -> torch.Tensor:
    """One step of opt on the MSE of model on (x, y): on mse_objective where it applies, else on
    closure (which must compute that same loss); returns the loss before the step."""
    objective = mse_objective(model, opt.param_groups[0]["params"], x, y)
    if objective is None:  # a stack with layers of other kinds, each differentiated by hand
        objective = hand_objective(model, opt.param_groups[0]["params"], x, y)
    if objective is not None:
        return opt.step(objective=objective)
    return opt.step(closure)
