"""Local B-spline values for the fast KANLinear paths, and what those paths share.

Only k + 1 of the c bases of an input are nonzero at any x. local_basis computes those values and
their x-derivatives (closed form on a uniform grid, a local de Boor triangle on any other); the
two paths that use them keep them, with the slots they go to and x, for backward: O(b * i * (k + 1)),
never the O(b * i * c) basis (tests/test_fast_paths.py checks the per-sample growth does not
depend on c).

- "dense" (_fast_dense.DenseKAN): the local values scattered into a padded feature buffer, the whole
  layer (spline, base branch, bias) one GEMM. Its work grows with c at GEMM speed.
- "gather" (_fast_gather.GatherSpline): embedding_bag sums only the k + 1 table rows each input
  touches, so the work does not grow with the grid.
Second derivatives (create_graph=True) are rebuilt from the Cox-de Boor basis: exact, not fast.

Legend: b batch, i in_features, o out_features, k order, c = grid_size + k bases per input,
m = c + k + 1 knots, r = 0..k the nonzero bases of one input, n = start + r a basis index.
Local tensors are laid out (k + 1, b, i): PyTorch's CPU kernels are several times slower when a
small dim (k + 1) is innermost.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from kanlab import splines
from kanlab.layers.kan.bases import BASES


def _cell(
    x: torch.Tensor, grid: torch.Tensor, uniform: bool, order: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Cell j with t_j <= x < t_{j+1}, clamped to -1..m-1 (where every basis is 0): (b, i) long.

    Also returns s = u - j for u = (x - t_0) / h in the grid's precision (float64 in KANLinear,
    which keeps s accurate for float32 inputs) and du/dx (i,) when the grid is uniform (the
    contract: splines.uniform_cells), else None, None.
    """
    m = grid.shape[-1]
    inv_h: torch.Tensor | None = None
    if uniform:
        cell_u, s, inv_h = splines.uniform_cells(x, grid)                   # (b, i), (b, i), (i,)
        if order >= 2:
            # Values and first derivatives are continuous for order >= 2: which side of a knot
            # floor() rounds to is immaterial. A NaN input (check_finite=False) takes some cell in
            # range and flows through as NaN in s.
            return cell_u.long().clamp_(-1, m - 1), s, inv_h
        u = cell_u + s  # exactly the clamped u
    else:
        u = None
    # Exact comparisons in x's precision, like splines.bspline_basis (order 0 and 1 jump at knots).
    found = torch.searchsorted(grid.to(x.dtype), x.T.contiguous(), right=True) - 1  # (i, b)
    cell = found.T.contiguous().clamp_(-1, m - 1)
    return cell, None if u is None else (u - cell).clamp_(0.0, 1.0), inv_h


@functools.cache
def power_matrix(order: int, derivative: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The cardinal B-spline's per-cell polynomial coefficients of order k, as a constant tensor."""
    # (k + 1, k + 1) cardinal coefficients, with their d/ds rows below when derivative: (2k + 2, k + 1).
    with torch.inference_mode(False), torch.no_grad():  # cached: must be a plain constant
        coef = torch.tensor(splines.cardinal_coefficients(order), dtype=dtype, device=device)
        if derivative:  # d/ds of sum_p M[r, p] s^p, as coefficients by power
            slope = torch.zeros_like(coef)
            slope[:, :-1] = coef[:, 1:] * torch.arange(1, order + 1, dtype=dtype, device=device)
            coef = torch.cat([coef, slope])
    return coef


def local_basis(
    x: torch.Tensor, grid: torch.Tensor, order: int, uniform: bool, *, derivative: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The order + 1 bases that can be nonzero at each x, and optionally their x-derivatives.

    Args:
        x: (b, i) inputs.
        grid: (i, m) knots per input (sorted; uniformly spaced per row when uniform).
        order: spline order k.
        uniform: use the closed form for uniform knots.
        derivative: also return d value / dx.
    Returns:
        start: (b, i) long, index of the first basis (bases start..start + k; some may fall
            outside 0..c-1 near and beyond the grid's ends: callers drop those).
        values: (k + 1, b, i) in x's dtype.
        dvalues: (k + 1, b, i) or None.
    """
    k = order
    cell, s64, inv_h64 = _cell(x, grid, uniform, order)
    if uniform:
        assert s64 is not None and inv_h64 is not None
        s = s64.to(x.dtype)                                                 # (b, i)
        # Values (and derivatives) are polynomials in s: one small GEMM with the powers of s,
        # (k + 1 or 2k + 2, k + 1) @ (k + 1, b * i), beats k Horner steps on (k + 1, b, i) by 5x.
        powers = s.new_empty(k + 1, *s.shape)
        powers[0] = s * 0 + 1 if k == 0 else 1.0  # order 0: NaN in, NaN out (higher orders: from s)
        for p in range(1, k + 1):
            torch.mul(powers[p - 1], s, out=powers[p])
        coef = power_matrix(k, derivative, x.dtype, x.device)              # (k + 1 or 2k + 2, k + 1)
        both = (coef @ powers.view(k + 1, -1)).view(-1, *s.shape)           # (k + 1 or 2k + 2, b, i)
        values, dvalues = both[: k + 1], None
        if derivative:
            inv_h = inv_h64.to(x.dtype)                                     # (i,) = du/dx
            # order 0: flat pieces, zero slope even at a NaN (as the reference's and _de_boor's)
            dvalues = both[k + 1 :].mul_(inv_h) if k else torch.zeros_like(values)
        return cell - k, values, dvalues
    values, dvalues = _de_boor(x, grid, cell, order, derivative)
    return cell - k, values, dvalues


def _de_boor(
    x: torch.Tensor, grid: torch.Tensor, cell: torch.Tensor, k: int, derivative: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    # The local triangle of The NURBS Book's BasisFuns on knots t_{j-k+1}..t_{j+k}, in the grid's
    # precision. The grid is extended by k + 1 knots each side (edge spacing) so that the cells -1
    # and m - 1 (all bases zero there) still read strictly increasing knots.
    i, m = grid.shape
    steps = torch.arange(1, k + 2, dtype=grid.dtype, device=grid.device)
    left_pad = grid[:, :1] - (grid[:, 1:2] - grid[:, :1]) * steps.flip(0)
    right_pad = grid[:, -1:] + (grid[:, -1:] - grid[:, -2:-1]) * steps
    flat = torch.cat([left_pad, grid, right_pad], dim=1).T.reshape(-1)    # (m + 2k + 2) * i, i fastest
    base = (cell + k + 1) * i + torch.arange(i, device=x.device)          # (b, i) flat index of t_j

    def knot(offset: int) -> torch.Tensor:
        return flat.index_select(0, (base + offset * i).reshape(-1)).view_as(cell)

    xg = x.to(grid.dtype).clamp(knot(0), knot(1))                         # in the cell (for x outside)
    left = [xg] + [xg - knot(1 - d) for d in range(1, k + 1)]              # x - t_{j+1-d}; [0] unused
    right = [xg] + [knot(d) - xg for d in range(1, k + 1)]                 # t_{j+d} - x; [0] unused
    vals: list[torch.Tensor] = [xg * 0 + 1]  # NaN in, NaN out, also at order 0
    lower: list[torch.Tensor] = vals
    for d in range(1, k + 1):
        lower = vals
        saved = torch.zeros_like(xg)
        nxt = []
        for r in range(d):
            temp = vals[r] / (right[r + 1] + left[d - r])
            nxt.append(saved + right[r + 1] * temp)
            saved = left[d - r] * temp
        nxt.append(saved)
        vals = nxt
    values = torch.stack(vals).to(x.dtype)                                 # (k + 1, b, i)
    if not derivative:
        return values, None
    if k == 0:
        return values, torch.zeros_like(values)
    zero = torch.zeros_like(xg)
    dv = []
    for r in range(k + 1):  # B'_{j-k+r} = k (B^{k-1}_{j-k+r} / span1 - B^{k-1}_{j-k+r+1} / span2)
        a = lower[r - 1] / (right[r] + left[k - r + 1]) if r >= 1 else zero
        b = lower[r] / (right[r + 1] + left[k - r]) if r < k else zero
        dv.append(k * (a - b))
    return values, torch.stack(dv).to(x.dtype)


# ---- shared by both paths ------------------------------------------------------------------------
def poison_inputs(grad: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """grad (o, i, ...) with NaN in every entry of the inputs that have a NaN sample in x (b, i)
    (reachable with check_finite=False). The reference's gradients are products with the dense
    basis, whose row for a NaN input is NaN: so is the gradient of every coefficient of its edges
    (the fast paths' local values reach only k + 1 of them)."""
    bad = torch.isnan(x).any(0)                                            # (i,)
    if grad is not None and bool(bad.any()):
        grad.masked_fill_(bad.view(1, -1, *[1] * (grad.dim() - 2)), float("nan"))
    return grad


def poison_outputs(grad: torch.Tensor | None, gy: torch.Tensor) -> torch.Tensor | None:
    """grad (o, i, ...) with NaN in every entry of the outputs whose column of gy (b, o) has a NaN
    or an inf (a NaN loss): the reference's zero basis entries times it are NaN."""
    column = gy.sum(0)  # not finite where the column has a NaN or an inf
    if grad is not None and not bool(torch.isfinite(column).all()):
        grad.masked_fill_(~torch.isfinite(column).view(-1, *[1] * (grad.dim() - 1)), float("nan"))
    return grad


def reference_layer(
    grid: torch.Tensor, k: int, base: str | None, x: torch.Tensor, coef: torch.Tensor,
    scale: torch.Tensor | None, base_weight: torch.Tensor | None, bias: torch.Tensor | None,
) -> torch.Tensor:
    """The layer from the Cox-de Boor basis with plain autograd ops (KANLinear's "reference")."""
    spline = coef if scale is None else coef * scale.unsqueeze(-1)         # (o, i, c)
    y = splines.bspline_basis(x, grid, k).flatten(1) @ spline.flatten(1).T  # (b, o)
    if base is not None:
        bx = BASES[base].value(x)                                          # (b, i)
        y = y + (bx.sum(1, keepdim=True) if base_weight is None else bx @ base_weight.T)
    return y if bias is None else y + bias


def graph_grads(needs: tuple[bool, ...], gy: torch.Tensor, inputs: tuple[torch.Tensor | None, ...],
                 output: Callable[..., torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    # The hand-written backward is not itself differentiable; when the caller asks for a graph of
    # the gradients, rebuild the output with plain autograd ops from the inputs as saved (they
    # carry the caller's graph) and let autograd differentiate that.
    pairs = list(zip(inputs, needs, strict=True))
    wanted = [t for t, need in pairs if need and t is not None]
    grads = iter(torch.autograd.grad(output(*inputs), wanted, gy, create_graph=True, allow_unused=True))
    return tuple(next(grads) if need and t is not None else None for t, need in pairs)
