"""Fast KANLinear paths: local B-spline values, then a dense GEMM or a gather, with a hand-written backward.

Only k + 1 of the c bases of an input are nonzero at any x. Both paths compute those local values
and their x-derivatives (closed form on a uniform grid, a local de Boor triangle on any other) and
keep them, with the slots they go to and x, for backward: O(b * i * (k + 1)), never the
O(b * i * c) basis (tests/test_fast_paths.py checks the per-sample growth does not depend on c).

- "dense" (DenseKAN): scatter the local values into a padded feature buffer whose real part is
  (b, c + 1, i) with b(x) as the last slab, then the whole layer (spline, base branch, bias) is
  one GEMM. Its work grows with c at GEMM speed: the fastest while c is small.
- "gather" (GatherSpline): embedding_bag sums only the k + 1 table rows each input touches, so
  the work does not grow with the grid; the base branch and bias stay autograd ops in KANLinear.
Second derivatives (create_graph=True) are rebuilt from the Cox-de Boor basis: exact, not fast.

Legend: b batch, i in_features, o out_features, k order, c = grid_size + k bases per input,
m = c + k + 1 knots, r = 0..k the nonzero bases of one input, n = start + r a basis index.
Local tensors are laid out (k + 1, b, i), features (b, slab, i): PyTorch's CPU kernels are several
times slower when a small dim (k + 1) is innermost, and its scatter/gather along a dim cost about
3x those over a flat index, so both paths index flat buffers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F

from kanlab import splines


@functools.cache
def cardinal_coefficients(order: int) -> tuple[tuple[float, ...], ...]:
    """M[r][p]: the nonzero cardinal B-spline r (of order + 1) on a cell is sum_p M[r][p] * s^p.

    Exact rational arithmetic on the same recursion as splines.uniform_local_basis, rounded once.
    """
    polys = [[Fraction(1)]]  # degree 0: one basis, constant 1 (coefficients by power of s)

    def mul_linear(p: list[Fraction], a: Fraction, b: Fraction) -> list[Fraction]:
        out = [Fraction(0)] * (len(p) + 1)  # (a + b * s) * p(s)
        for q, cq in enumerate(p):
            out[q] += a * cq
            out[q + 1] += b * cq
        return out

    for d in range(1, order + 1):
        new = []
        for r in range(d + 1):
            acc = [Fraction(0)] * (d + 1)
            if r >= 1:  # (s + d - r) * lower, lower = previous basis r - 1
                for q, v in enumerate(mul_linear(polys[r - 1], Fraction(d - r), Fraction(1))):
                    acc[q] += v
            if r < d:  # (1 - s + r) * upper, upper = previous basis r
                for q, v in enumerate(mul_linear(polys[r], Fraction(1 + r), Fraction(-1))):
                    acc[q] += v
            new.append([v / d for v in acc])
        polys = new
    return tuple(tuple(float(v) for v in p) for p in polys)


def _cell(
    x: torch.Tensor, grid: torch.Tensor, uniform: bool, order: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cell j with t_j <= x < t_{j+1}, clamped to -1..m-1 (where every basis is 0): (b, i) long.

    Also returns u = (x - t_0) / h in the grid's precision (float64 in KANLinear, which keeps s
    accurate for float32 inputs) when the grid is uniform, else None.
    """
    m = grid.shape[-1]
    u = None
    if uniform:
        h = (grid[:, -1] - grid[:, 0]) / (m - 1)
        u = ((x.to(grid.dtype) - grid[:, 0]) / h).clamp(-1.0, m - 1.0)   # (b, i)
        if order >= 2:
            # Values and first derivatives are continuous for order >= 2: which side of a knot
            # floor() rounds to is immaterial.
            return u.floor().long().clamp(-1, m - 1), u
    # Exact comparisons in x's precision, like splines.bspline_basis (order 0 and 1 jump at knots).
    cell = torch.searchsorted(grid.to(x.dtype), x.T.contiguous(), right=True) - 1  # (i, b)
    return cell.T.contiguous().clamp_(-1, m - 1), u


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
    cell, u = _cell(x, grid, uniform, order)
    if uniform:
        assert u is not None
        m = grid.shape[-1]
        s = (u - cell).clamp_(0.0, 1.0).to(x.dtype)                        # (b, i)
        # Values (and derivatives) are polynomials in s: one small GEMM with the powers of s,
        # (k + 1 or 2k + 2, k + 1) @ (k + 1, b * i), beats k Horner steps on (k + 1, b, i) by 5x.
        powers = s.new_empty(k + 1, *s.shape)
        powers[0] = 1.0
        for p in range(1, k + 1):
            torch.mul(powers[p - 1], s, out=powers[p])
        coef = torch.tensor(cardinal_coefficients(k), dtype=x.dtype, device=x.device)  # (k + 1, k + 1)
        if derivative:  # d/ds of sum_p M[r, p] s^p, as coefficients by power
            slope = torch.zeros_like(coef)
            slope[:, :-1] = coef[:, 1:] * torch.arange(1, k + 1, dtype=x.dtype, device=x.device)
            coef = torch.cat([coef, slope])                                  # (2k + 2, k + 1)
        both = (coef @ powers.view(k + 1, -1)).view(-1, *s.shape)           # (k + 1 or 2k + 2, b, i)
        values, dvalues = both[: k + 1], None
        if derivative:
            inv_h = ((m - 1) / (grid[:, -1] - grid[:, 0])).to(x.dtype)      # (i,) = du/dx
            dvalues = both[k + 1 :].mul_(inv_h)
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
    vals: list[torch.Tensor] = [torch.ones_like(xg)]
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


# ---- dense: the whole layer as one GEMM over scattered local values ----------------------------
def _silu_grad(x: torch.Tensor) -> torch.Tensor:
    sig = torch.sigmoid(x)
    return sig * (1 + x * (1 - sig))


# name -> (b, b'): the base functions of bspline.BASES and their derivatives.
BASES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "silu": (F.silu, _silu_grad),
    "identity": (lambda x: x, torch.ones_like),
    "tanh": (torch.tanh, lambda x: 1 - torch.tanh(x) ** 2),
}


def _slots(start: torch.Tensor, k: int, c: int) -> torch.Tensor:
    # Flat index (k + 1, b, i) of basis start + r in a (b, c + 2k + 2, i) buffer whose slabs are
    # [k + 1 spare | c bases | base branch b(x) | k spare]: bases off the grid land in spare slabs
    # (or in the base slab, which is written after them), so nothing needs masking.
    b, i = start.shape
    row = torch.arange(b, device=start.device).mul_(c + 2 * k + 2).add_(k + 1).unsqueeze(1)
    first = (start + row).mul_(i).add_(torch.arange(i, device=start.device))  # (b, i)
    return first + torch.arange(0, (k + 1) * i, i, device=start.device).view(k + 1, 1, 1)


def _features(b: int, c: int, k: int, i: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # The (b, c + 2k + 2, i) buffer and its (b, (c + 1) * i) view of the c bases and the base slab.
    buf = like.new_empty(b, c + 2 * k + 2, i)
    return buf, buf.view(b, -1)[:, (k + 1) * i : (k + 2 + c) * i]


def _weights(coef: torch.Tensor, scale: torch.Tensor | None, base_weight: torch.Tensor | None,
             base: str | None) -> torch.Tensor:
    # (o, c + 1, i): s * coef with c before i, then the base weights (1 without base_weight, 0
    # without a base branch), matching the feature layout.
    o, i, c = coef.shape
    w = coef.new_empty(o, c + 1, i)
    if scale is None:
        w[:, :c] = coef.transpose(1, 2)
    else:
        torch.mul(coef.transpose(1, 2), scale.unsqueeze(1), out=w[:, :c])
    w[:, c] = (base_weight if base_weight is not None else 1.0) if base is not None else 0.0
    return w


class DenseKAN(torch.autograd.Function):
    """The layer as one GEMM: y = [basis(x) | b(x)] @ [s * coef | w].T + bias.

    Saves O(b * i * (k + 1)) for backward (the local slots, values and derivatives, and x), never
    the (b, (c + 1) * i) features, which backward rebuilds by one scatter.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None,
        base_weight: torch.Tensor | None, bias: torch.Tensor | None,
        grid: torch.Tensor, order: int, uniform: bool, base: str | None,
    ) -> torch.Tensor:
        b, i = x.shape
        o, _, c = coef.shape
        start, values, dvalues = local_basis(x, grid, order, uniform, derivative=ctx.needs_input_grad[0])
        slots = _slots(start, order, c)                                    # (k + 1, b, i)
        buf, feats = _features(b, c, order, i, x)                          # feats (b, (c + 1) * i)
        feats.zero_()
        buf.view(-1).scatter_(0, slots.view(-1), values.view(-1))
        buf[:, order + 1 + c] = 0.0 if base is None else BASES[base][0](x)  # after the scatter
        weight = _weights(coef, scale, base_weight, base).view(o, -1)      # (o, (c + 1) * i)
        y = feats @ weight.T if bias is None else torch.addmm(bias, feats, weight.T)  # (b, o)
        ctx.save_for_backward(slots, values, dvalues, weight, x, coef, scale, base_weight, bias, grid)
        ctx.meta = (order, base)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        slots, values, dvalues, weight, x, coef, scale, base_weight, bias, grid = ctx.saved_tensors
        k, base = ctx.meta
        b, i = x.shape
        o, _, c = coef.shape
        needs = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled():  # create_graph=True: higher derivatives through the general path
            inputs = (x, coef, scale, base_weight, bias)
            return (*_graph_grads(needs, gy, inputs, functools.partial(reference_layer, grid, k, base)),
                    None, None, None, None)
        slots = slots.view(-1)
        gx = gcoef = gscale = gbase = None
        buf, feats = _features(b, c, k, i, gy)
        if any(needs[1:4]):
            feats.zero_()
            buf.view(-1).scatter_(0, slots, values.view(-1))
            if base is not None:
                buf[:, k + 1 + c] = BASES[base][0](x)
            gw = (gy.T @ feats).view(o, c + 1, i)
            gspline = gw[:, :c].transpose(1, 2)                             # (o, i, c)
            gcoef = (gspline if scale is None else gspline * scale.unsqueeze(-1)).contiguous()
            gscale = (gspline * coef).sum(-1) if needs[2] else None
            gbase = gw[:, c].contiguous() if needs[3] else None
        if needs[0]:
            torch.mm(gy, weight, out=feats)                                # (b, (c + 1) * i)
            gx = buf[:, k + 1 + c] * BASES[base][1](x) if base is not None else None
            buf[:, : k + 1].zero_()                                        # off-grid bases read 0
            buf[:, k + 1 + c :].zero_()
            local = buf.view(-1).index_select(0, slots).view_as(dvalues)   # (k + 1, b, i)
            spline_gx = local.mul_(dvalues).sum(0)                         # (b, i)
            gx = spline_gx if gx is None else gx.add_(spline_gx)
        gbias = gy.sum(0) if needs[4] else None
        return gx, gcoef if needs[1] else None, gscale, gbase, gbias, None, None, None, None


def reference_layer(
    grid: torch.Tensor, k: int, base: str | None, x: torch.Tensor, coef: torch.Tensor,
    scale: torch.Tensor | None, base_weight: torch.Tensor | None, bias: torch.Tensor | None,
) -> torch.Tensor:
    """The layer from the Cox-de Boor basis with plain autograd ops (KANLinear's "reference")."""
    spline = coef if scale is None else coef * scale.unsqueeze(-1)         # (o, i, c)
    y = splines.bspline_basis(x, grid, k).flatten(1) @ spline.flatten(1).T  # (b, o)
    if base is not None:
        bx = BASES[base][0](x)                                             # (b, i)
        y = y + (bx.sum(1, keepdim=True) if base_weight is None else bx @ base_weight.T)
    return y if bias is None else y + bias


# ---- gather: embedding_bag over the k + 1 nonzero bases only -----------------------------------
# The table has k + 1 zero rows before and after each input's c rows, so that bases off the grid
# read zeros: no clamping, no masks.
def _rows(x: torch.Tensor, grid: torch.Tensor, k: int, uniform: bool, derivative: bool) -> tuple[Any, ...]:
    # Table rows (k + 1, b, i) of the local bases, their values and derivatives, and the first row.
    i = x.shape[1]
    width = grid.shape[-1] + k + 1                                          # c + 2k + 2 rows per input
    start, values, dvalues = local_basis(x, grid, k, uniform, derivative=derivative)
    first = start.add_(torch.arange(k + 1, width * i, width, device=x.device))  # (b, i)
    rows = first + torch.arange(k + 1, device=x.device).view(k + 1, 1, 1)  # (k + 1, b, i)
    return first, rows, values, dvalues


class GatherSpline(torch.autograd.Function):
    """y = sum_{r, i} value(x)_{rbi} * table[row(x)_{rbi}], saving O(b * i * (k + 1)) for backward."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, table: torch.Tensor, grid: torch.Tensor, order: int, uniform: bool
    ) -> torch.Tensor:
        b = x.shape[0]
        need_x = ctx.needs_input_grad[0]
        first, rows, values, dvalues = _rows(x, grid, order, uniform, derivative=need_x)
        k1, _, i = rows.shape
        # One bag per (r, sample): its i members are contiguous in the (k + 1, b, i) layout.
        # detach(): with a table that requires grad, embedding_bag takes a slower kernel (~20x here).
        offsets = torch.arange(0, k1 * b * i, i, device=x.device)
        y = F.embedding_bag(rows.view(-1), table.detach(), offsets, per_sample_weights=values.view(-1),
                            mode="sum").view(k1, b, -1).sum(0)              # (b, o)
        ctx.save_for_backward(first, values, dvalues, table, x, grid)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        first, values, dvalues, table, x, grid = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: higher derivatives through the general path
            fn = functools.partial(_gather_reference, grid, values.shape[0] - 1)
            return (*_graph_grads(ctx.needs_input_grad[:2], gy, (x, table), fn), None, None, None)
        gx = gt = None
        if ctx.needs_input_grad[1]:
            gt = _table_grad(first, values, gy, table.shape[0])
        if ctx.needs_input_grad[0]:
            rows = first + torch.arange(values.shape[0], device=first.device).view(-1, 1, 1)
            gx = _sampled_dots(rows, dvalues, table.detach(), gy)
        return gx, gt, None, None, None


def _table_grad(first: torch.Tensor, values: torch.Tensor, gy: torch.Tensor, n_rows: int) -> torch.Tensor:
    # table.grad[n] = sum over the (r, b, i) with first + r == n of values * gy[b]: the transposed
    # gather, as one embedding_bag over gy with a bag per (r, table row). Bags need contiguous
    # members: sorting the b * i first rows orders first + r for every r as well.
    k1, b, i = values.shape
    first, order = torch.sort(first.view(-1).int() if n_rows < 2**31 else first.view(-1))
    sample = order.div(i, rounding_mode="floor").repeat(k1)                 # batch index per entry
    shift = torch.arange(0, k1 * (n_rows + 1), n_rows + 1, device=gy.device).unsqueeze(1)
    bag = first.long() + shift                                              # (k + 1, b * i) sorted
    counts = torch.bincount(bag.view(-1), minlength=k1 * n_rows)
    offsets = counts.cumsum(0).sub_(counts)
    weights = values.view(k1, -1).index_select(1, order).view(-1)
    grad = F.embedding_bag(sample, gy, offsets, per_sample_weights=weights, mode="sum")
    return grad.view(k1, n_rows, -1).sum(0)                                 # (n_rows, o)


def _sampled_dots(rows: torch.Tensor, dvalues: torch.Tensor, table: torch.Tensor, gy: torch.Tensor,
                  chunk_elems: int = 1 << 20) -> torch.Tensor:
    # x.grad[b, i] = gy[b] . sum_r dvalues[r, b, i] * table[rows[r, b, i]]. The inner sum is an
    # embedding_bag per (b, i) (members contiguous, hence (b, i, k + 1)); it is a (b, i, o)
    # tensor, so go in batch chunks that keep it in cache (measured 2x faster than one pass).
    k1, b, i = rows.shape
    o = table.shape[1]
    step = max(1, chunk_elems // (i * o))
    out = []
    for lo in range(0, b, step):
        hi = min(b, lo + step)
        bags = rows[:, lo:hi].permute(1, 2, 0).reshape(-1, k1)
        weights = dvalues[:, lo:hi].permute(1, 2, 0).reshape(-1, k1)
        d = F.embedding_bag(bags, table, per_sample_weights=weights, mode="sum").view(hi - lo, i, o)
        out.append(torch.linalg.vecdot(d, gy[lo:hi].unsqueeze(1)))         # (chunk, i)
    return torch.cat(out) if len(out) > 1 else out[0]


def gather_table(coef: torch.Tensor, scale: torch.Tensor | None, order: int) -> torch.Tensor:
    """(o, i, c) coefficients (times the (o, i) spline scale) -> (i * (c + 2k + 2), o) padded table."""
    spline = coef if scale is None else coef * scale.unsqueeze(-1)
    padded = F.pad(spline.permute(1, 2, 0), (0, 0, order + 1, order + 1))  # (i, c + 2k + 2, o)
    return padded.contiguous().view(-1, coef.shape[0])                      # rows must be contiguous


# ---- higher derivatives ------------------------------------------------------------------------
def _graph_grads(needs: tuple[bool, ...], gy: torch.Tensor, inputs: tuple[torch.Tensor | None, ...],
                 output: Callable[..., torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    # The hand-written backward is not itself differentiable; when the caller asks for a graph of
    # the gradients, rebuild the output with plain autograd ops from the inputs as saved (they
    # carry the caller's graph) and let autograd differentiate that.
    pairs = list(zip(inputs, needs, strict=True))
    wanted = [t for t, need in pairs if need and t is not None]
    grads = iter(torch.autograd.grad(output(*inputs), wanted, gy, create_graph=True, allow_unused=True))
    return tuple(next(grads) if need and t is not None else None for t, need in pairs)


def _gather_reference(grid: torch.Tensor, k: int, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    basis = splines.bspline_basis(x, grid, k)                               # (b, i, c)
    b, i, c = basis.shape
    rows = table.view(i, -1, table.shape[1])[:, k + 1 : k + 1 + c]          # (i, c, o)
    return torch.einsum("bic,ico->bo", basis, rows)


def auto_path(grid_size: int, order: int) -> str:
    """What path="auto" runs: the dense GEMM while the basis is narrow, the gather beyond.

    The dense GEMM's work grows with grid_size + order + 1 columns per input at GEMM speed; the
    gather's is order + 1 rows per input at a few times lower speed per multiply-add.
    """
    return "dense" if grid_size + order + 1 <= GATHER_FROM * (order + 1) else "gather"


GATHER_FROM = 4  # measured crossover, benchmarks/layers.py (see benchmarks/README.md)
