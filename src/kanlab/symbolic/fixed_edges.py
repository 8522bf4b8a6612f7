"""Which edges of a SymbolicKANLinear are fixed, grouped by function; and a fully fixed layer by hand.

EdgeLayout is what the symbolic layer's forward needs to know about fn_index (the fixed edges'
positions and their functions), computed once per change of fn_index instead of once per call
(nonzero and unique each wait for their result on the host). FixedLayer is a layer whose every
edge is fixed, y_o = sum_i [c_oi f_oi(a_oi x_i + b_oi) + d_oi] + beta_o, with its backward written
out (the library's derivatives), so that train() runs LBFGS on it without autograd
(training.hand_objective): in one C call each way where the native kernels are built
(layers/kan/_native_fixed.c, which has each library function under the code in C_CODES), else
in torch operations.

Legend: b batch, i in_features, o out_features, e fixed edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kanlab.layers.kan import _native, native_build
from kanlab.symbolic import library as symlib
from kanlab.training.hand_objective import Bound, Buffers, Values

# each library function's code in _native_fixed.c (its enum). Not J0: torch's bessel_j0 (the
# layer's forward) is 2e-10 off libm's j0 around u = 3.5 (and libm's is the right one), so a layer
# with a J0 edge keeps the torch operations, and so the forward's values.
C_CODES = {name: code for code, name in enumerate(
    ("0", "x", "x^2", "x^3", "x^4", "x^5", "1/x", "1/x^2", "sqrt", "1/sqrt", "exp", "log", "sin", "cos",
     "tan", "tanh", "sigmoid", "gaussian", "abs", "arctan"))}

Group = tuple[symlib.SymbolicFunction, torch.Tensor]  # a function and its edges' columns (e_k,) in e


@dataclass(frozen=True)
class EdgeLayout:
    """The fixed edges of one fn_index: row-major (o, i) order, as nonzero gives them.

    Attributes:
        fixed: (o, i) bool, True where the edge is symbolic.
        any, all: whether some / every edge is fixed.
        o_idx, i_idx: (e,) each fixed edge's output and input.
        groups: per function used, the library entry and the edges' positions in 0..e-1 (one group
            means every fixed edge has the same function).
        masks: per group, (o, i) bool: the edges that have its function.
    """

    fixed: torch.Tensor
    any: bool
    all: bool
    o_idx: torch.Tensor
    i_idx: torch.Tensor
    groups: tuple[Group, ...]
    masks: tuple[torch.Tensor, ...]

    @staticmethod
    def of(fn_index: torch.Tensor) -> EdgeLayout:
        """The layout of fn_index ((o, i) library indices, -1 = spline)."""
        fixed = fn_index >= 0
        o_idx, i_idx = fixed.nonzero(as_tuple=True)                                  # (e,), (e,)
        ids = fn_index[o_idx, i_idx]
        used = torch.unique(ids).tolist()
        groups = tuple((symlib.LIBRARY[symlib.NAMES[k]], (ids == k).nonzero().squeeze(1)) for k in used)
        masks = tuple(fn_index == k for k in used)
        return EdgeLayout(fixed, bool(fixed.any()), bool(fixed.all()), o_idx, i_idx, groups, masks)

    def apply(self, u: torch.Tensor, derivative: bool = False) -> torch.Tensor:
        """f (or f') of each fixed edge's function on its inputs: (b, e) -> (b, e), or (b, o, i) ->
        (b, o, i) where every edge is fixed."""
        if len(self.groups) == 1:
            f = self.groups[0][0]
            return f.derivative(u) if derivative else f.torch_fn(u)
        flat = u.reshape(len(u), -1)                                                # (b, e)
        out = torch.zeros_like(flat)
        for f, cols in self.groups:
            fn = f.derivative if derivative else f.torch_fn
            out = out.index_copy(1, cols, fn(flat[:, cols]))
        return out.view_as(u)

    def apply_everywhere(self, u: torch.Tensor, derivative: bool = False) -> torch.Tensor:
        """apply() on (b, o, i) where every edge is fixed, without autograd: each function runs on
        every edge and is kept where it belongs (fewer operations than gathering each group's
        columns; what a function gives on the other edges, NaN included, is dropped)."""
        out = torch.empty(0)
        for n, (f, _) in enumerate(self.groups):
            fu = f.derivative(u) if derivative else f.torch_fn(u)
            out = fu if n == 0 else torch.where(self.masks[n], fu, out)
        return out


class FixedLayer:
    """A SymbolicKANLinear with every edge fixed as a training.hand_objective.HandLayer.

    tensors: (affine (o, i, 4), bias (o,) or None); the wrapped spline's own parameters are not
    read, so the objective gives them a zero gradient, as autograd does.
    """

    tensors: tuple[torch.Tensor | None, ...]

    def __init__(self, affine: torch.Tensor, bias: torch.Tensor | None, layout: EdgeLayout) -> None:
        if not layout.all:
            raise ValueError("FixedLayer needs every edge of the layer fixed")
        self.tensors = (affine, bias)
        self.out_features = affine.shape[0]
        self.layout = layout
        self.codes: torch.Tensor | None = torch.full(layout.fixed.shape, -1, dtype=torch.int32)  # (o, i)
        for (f, _), mask in zip(layout.groups, layout.masks, strict=True):
            if f.name not in C_CODES:  # a library entry without C code: the torch operations
                self.codes = None
                break
            self.codes[mask] = C_CODES[f.name]

    def bind(self, buffers: Buffers, values: Values, grads: Values) -> Bound:
        lib = native_build.library(buffers.h.dtype) if buffers.h.dtype in native_build.C_TYPES else None
        if lib is None or self.codes is None:
            return _BoundFixed(self.layout, buffers, values, grads)
        return _NativeFixed(lib, self.codes, buffers, values, grads)


class _NativeFixed:
    """FixedLayer's forward and backward in one call each of _native_fixed.c's kernels."""

    def __init__(self, lib: Any, codes: torch.Tensor, buffers: Buffers, values: Values,
                 grads: Values) -> None:
        h = buffers.h
        head = (len(h), h.shape[1], codes.shape[0], h.data_ptr(), codes.data_ptr(), values.address(0))
        self.lib, self.keep = lib, (codes, buffers)
        self.forward_args = (*head, values.address(1), buffers.out.data_ptr())
        self.backward_args = (*head, buffers.gy.data_ptr(), grads.address(0), grads.address(1),
                              _native.ptr(buffers.gx))

    def forward(self) -> None:
        _native.check(self.lib.fixed_forward(*self.forward_args))

    def backward(self) -> None:
        _native.check(self.lib.fixed_backward(*self.backward_args))


class _BoundFixed:
    """FixedLayer's forward and backward in torch operations."""

    def __init__(self, layout: EdgeLayout, buffers: Buffers, values: Values, grads: Values) -> None:
        affine = values.tensor(0)
        assert affine is not None
        self.layout, self.buffers, self.bias = layout, buffers, values.tensor(1)
        self.a, self.b, self.c, self.d = affine.unbind(2)                           # (o, i) each
        self.h = buffers.h.unsqueeze(1)                                             # (b, 1, i)
        self.g_affine, self.g_bias = grads.tensor(0), grads.tensor(1)
        self.saved: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self) -> None:
        u = torch.addcmul(self.b, self.h, self.a)                                   # (b, o, i)
        fu = self.layout.apply_everywhere(u)
        out = torch.sum(fu * self.c, 2, out=self.buffers.out).add_(self.d.sum(1))   # (b, o)
        if self.bias is not None:
            out.add_(self.bias)
        self.saved = (u, fu)

    def backward(self) -> None:
        assert self.saved is not None
        u, fu = self.saved
        gy = self.buffers.gy
        g_edge = gy.unsqueeze(2).expand_as(u)                                       # (b, o, i): d loss/d edge
        gu = torch.mul(self.layout.apply_everywhere(u, True), self.c).mul_(g_edge)  # (b, o, i): d loss/d u
        if self.g_affine is not None:  # d a, b, c, d: sums over the batch of these
            torch.sum(torch.stack((gu * self.h, gu, fu * g_edge, g_edge), 3), 0, out=self.g_affine)
        if self.g_bias is not None:
            torch.sum(gy, 0, out=self.g_bias)
        if self.buffers.gx is not None:
            torch.sum(gu * self.a, 1, out=self.buffers.gx)                          # (b, i)
