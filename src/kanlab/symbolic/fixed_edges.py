"""Which edges of a SymbolicKANLinear are fixed, grouped by function; and a fully fixed layer by hand.

EdgeLayout is what the symbolic layer's forward needs to know about fn_index (the fixed edges'
positions and their functions), computed once per change of fn_index instead of once per call
(nonzero and unique each wait for their result on the host). FixedLayer is a layer whose every
edge is fixed, y_o = sum_i [c_oi f_oi(a_oi x_i + b_oi) + d_oi] + beta_o, with its backward written
out (the library's derivatives), so that train() runs LBFGS on it without autograd
(training.hand_objective).

Legend: b batch, i in_features, o out_features, e fixed edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kanlab.symbolic import library as symlib
from kanlab.training.hand_objective import Values

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
        self.layout = layout

    def forward(self, h: torch.Tensor, values: Values) -> tuple[torch.Tensor, Any]:
        affine, bias = values.tensor(0), values.tensor(1)
        assert affine is not None
        a, b, c, d = affine.unbind(2)                                               # (o, i) each
        u = torch.addcmul(b, h.unsqueeze(1), a)                                     # (b, o, i)
        fu = self.layout.apply_everywhere(u)
        y = (fu * c).sum(2) + d.sum(1)                                              # (b, o)
        return (y if bias is None else y + bias), (h, u, fu, a, c)

    def backward(self, saved: Any, gy: torch.Tensor, values: Values, grads: Values,
                 need_gx: bool) -> torch.Tensor | None:
        h, u, fu, a, c = saved
        g_edge = gy.unsqueeze(2).expand_as(u)                                       # (b, o, i): d loss/d edge
        gu = torch.mul(self.layout.apply_everywhere(u, True), c).mul_(g_edge)      # (b, o, i): d loss/d u
        g_affine, g_bias = grads.tensor(0), grads.tensor(1)
        if g_affine is not None:  # d a, b, c, d: sums over the batch of these
            torch.sum(torch.stack((gu * h.unsqueeze(1), gu, fu * g_edge, g_edge), 3), 0, out=g_affine)
        if g_bias is not None:
            torch.sum(gy, 0, out=g_bias)
        return (gu * a).sum(1) if need_gx else None                                 # (b, i)
