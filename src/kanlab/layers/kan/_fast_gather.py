"""The "gather" KANLinear path: only the k + 1 table rows each input touches, any grid size.

y = sum_{r, i} value(x)_{rbi} * table[row(x)_{rbi}] as one embedding_bag, with the local values of
_fast.local_basis; backward: a transposed embedding_bag for the table (one sort of b * i keys) and
per-(b, i) bags for dx. The work does not grow with the grid; the base branch and bias stay
autograd ops in KANLinear.

Legend: b batch, i in_features, o out_features, k order, c = grid_size + k bases per input.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from kanlab import splines
from kanlab.layers.kan import _native_gather
from kanlab.layers.kan._fast import graph_grads, local_basis, poison_inputs, poison_outputs


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


def gather_spline(x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None, grid: torch.Tensor,
                  order: int, uniform: bool) -> torch.Tensor:
    """GatherSpline; on CPU always run eagerly (a graph break inside torch.compile), since its
    compiled loops are ctypes calls that dynamo cannot trace."""
    if x.device.type == "cpu":
        return _eager_gather_spline(x, coef, scale, grid, order, uniform)
    return GatherSpline.apply(x, coef, scale, grid, order, uniform)


class GatherSpline(torch.autograd.Function):
    """y = sum_{r, i} value(x)_{rbi} * table[row(x)_{rbi}], table = s * coef padded (gather_table).

    Saves O(b * i * (k + 1)) for backward, plus the table; the coefficient and scale gradients come
    straight from the table's, without autograd's copies of a table of tens of MB at fine grids.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None, grid: torch.Tensor,
        order: int, uniform: bool,
    ) -> torch.Tensor:
        need_x = ctx.needs_input_grad[0]
        lib = ctx.lib = _native_gather.kernels(x, coef)
        if lib is not None:  # CPU: the same sums by compiled loops, (i, b) layouts
            first, values, dvalues = _native_gather.basis(lib, x, grid, order, uniform, need_x)
            if _native_gather.builds_in_forward(x.shape[0], coef, order):
                y, table = _native_gather.forward_build(lib, first, values, coef, scale)
            else:
                table = _native_gather.table(lib, coef, scale, order)      # (i * (c + 2k + 2), o)
                y = _native_gather.forward(lib, first, values, table)
        else:
            table = gather_table(coef, scale, order)
            first, rows, values, dvalues = _rows(x, grid, order, uniform, derivative=need_x)
            y = _gather_sum(rows, values, table)                            # (b, o)
        ctx.save_for_backward(first, values, dvalues, table, x, coef, scale, grid)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        first, values, dvalues, table, x, coef, scale, grid = ctx.saved_tensors
        k = values.shape[0 if ctx.lib is None else -1] - 1
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: higher derivatives through the general path
            fn = functools.partial(_gather_reference, grid, k)
            return (*graph_grads(needs, gy, (x, coef, scale), fn), None, None, None)
        gy = gy.contiguous()  # embedding_bag over an expanded gy (from y.sum()) is far slower
        gx = gcoef = gscale = None
        if ctx.lib is not None:  # every gradient in one pass of the compiled loops
            dx_values = dvalues if needs[0] else None
            gx, gcoef, gscale = _native_gather.backward(ctx.lib, first, values, dx_values, table, gy, coef,
                                                        scale, needs[1], needs[2])
            # the kernels poison NaN inputs' edges themselves
            return gx, poison_outputs(gcoef, gy), poison_outputs(gscale, gy), None, None, None
        if needs[1] or needs[2]:
            o, i, c = coef.shape
            gt = _table_grad(first, values, gy, table.shape[0])             # (i * (c + 2k + 2), o)
            # One transposing copy, then contiguous products: reading the permuted view twice
            # (for gcoef and gscale) cost 3x more at 256->256 G100.
            gspline = gt.view(i, -1, o)[:, k + 1 : k + 1 + c].permute(2, 0, 1).contiguous()  # (o, i, c)
            if needs[2]:
                gscale = torch.linalg.vecdot(gspline, coef)                 # (o, i)
            if needs[1]:
                gcoef = gspline if scale is None else gspline.mul_(scale.unsqueeze(-1))
            # a NaN input or output gradient: NaN where the reference's are (poison_*)
            gcoef, gscale = poison_inputs(gcoef, x), poison_inputs(gscale, x)
            gcoef, gscale = poison_outputs(gcoef, gy), poison_outputs(gscale, gy)
        if needs[0]:
            gx = _sampled_dots(first, dvalues, table, gy)
        return gx, gcoef, gscale, None, None, None


@torch.compiler.disable
def _eager_gather_spline(x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None, grid: torch.Tensor,
                         order: int, uniform: bool) -> torch.Tensor:
    return GatherSpline.apply(x, coef, scale, grid, order, uniform)


def _gather_sum(rows: torch.Tensor, values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    # y[b] = sum_{r, i} values[r, b, i] * table[rows[r, b, i]]: (b, o).
    k1, b, i = rows.shape
    o = table.shape[1]
    if table.numel() * table.element_size() <= TABLE_BLOCK_BYTES:
        # One bag per (r, sample): its i members are contiguous in the (k + 1, b, i) layout.
        offsets = torch.arange(0, k1 * b * i, i, device=rows.device)
        return F.embedding_bag(rows.view(-1), table, offsets, per_sample_weights=values.view(-1),
                               mode="sum").view(k1, b, o).sum(0)
    # A table of tens of MB is read at random rows from memory; in blocks of inputs whose rows stay
    # in cache, one bag per sample each, the same reads are faster (benchmarks/README.md).
    step = max(1, TABLE_BLOCK_BYTES // (table.shape[0] // i * o * table.element_size()))
    y = None
    for lo in range(0, i, step):
        hi = min(i, lo + step)
        members = (hi - lo) * k1
        idx = rows[:, :, lo:hi].permute(1, 2, 0).reshape(-1)                # (b, block, k + 1)
        weights = values[:, :, lo:hi].permute(1, 2, 0).reshape(-1)
        offsets = torch.arange(0, b * members, members, device=rows.device)
        part = F.embedding_bag(idx, table, offsets, per_sample_weights=weights, mode="sum")
        y = part if y is None else y.add_(part)
    assert y is not None
    return y


TABLE_BLOCK_BYTES = 4 << 20  # forward reads the table in blocks of inputs this large (when larger)


def _table_grad(first: torch.Tensor, values: torch.Tensor, gy: torch.Tensor, n_rows: int) -> torch.Tensor:
    # table.grad[n] = sum over the (r, b, i) with first + r == n of values * gy[b]: the transposed
    # gather, as one embedding_bag over gy. Bags need contiguous members, hence a sort.
    k1, b, i = values.shape
    o = gy.shape[1]
    small = first.view(-1).int() if n_rows < 2**31 else first.view(-1)
    per_shift = k1 * n_rows * o * gy.element_size() <= BAG_PER_SHIFT_BYTES
    if per_shift:
        # A bag per (r, table row): sorting the b * i first rows orders first + r for every r too.
        keys, order = torch.sort(small)
        sample = order.div(i, rounding_mode="floor").repeat(k1)            # batch index per entry
        shift = torch.arange(0, k1 * (n_rows + 1), n_rows + 1, device=gy.device).unsqueeze(1)
        bag = keys.long() + shift                                          # (k + 1, b * i) sorted
        counts = torch.bincount(bag.view(-1), minlength=k1 * n_rows)
        weights = values.view(k1, -1).index_select(1, order).view(-1)
    else:
        # A bag per table row, sorting all (k + 1) * b * i keys: no (k + 1, rows, o) buffer, whose
        # fresh pages would cost more than the larger sort once it is tens of MB.
        shifts = torch.arange(k1, device=gy.device, dtype=small.dtype).view(-1, 1)
        keys, order = torch.sort((small + shifts).view(-1))
        sample = order.div(i, rounding_mode="floor").remainder_(b)          # (r, b, i) entry -> b
        counts = torch.bincount(keys, minlength=n_rows)
        weights = values.view(-1).index_select(0, order)
    offsets = counts.cumsum(0).sub_(counts)
    grad = F.embedding_bag(sample, gy, offsets, per_sample_weights=weights, mode="sum")
    return grad.view(k1, n_rows, o).sum(0) if per_shift else grad          # (n_rows, o)


BAG_PER_SHIFT_BYTES = 32 << 20  # glibc's mmap threshold: above it the per-shift buffer is fresh pages


def _sampled_dots(first: torch.Tensor, dvalues: torch.Tensor, table: torch.Tensor,
                  gy: torch.Tensor) -> torch.Tensor:
    # x.grad[b, i] = gy[b] . sum_r dvalues[r, b, i] * table[first[b, i] + r]. The inner sum is an
    # embedding_bag per (i, b) (members contiguous, hence (i, b, k + 1), laid out once: slicing the
    # (k + 1, b, i) tensors per chunk cost more than the bags at 256->256 G 100); it is a (i, b, o)
    # tensor, so go in chunks of inputs that keep it in cache. Input-major order reads one input's
    # block of table rows for the whole batch at a time, faster than sample-major on large tables
    # (benchmarks/README.md).
    k1, b, i = dvalues.shape
    o = table.shape[1]
    bags = first.T.contiguous().unsqueeze(-1) + torch.arange(k1, device=first.device)  # (i, b, k + 1)
    weights = dvalues.permute(2, 1, 0).contiguous()                        # (i, b, k + 1)
    step = max(1, DOTS_CHUNK_ELEMS // (b * o))
    out = gy.new_empty(i, b)
    for lo in range(0, i, step):
        hi = min(i, lo + step)
        d = F.embedding_bag(bags[lo:hi].view(-1, k1), table, per_sample_weights=weights[lo:hi].view(-1, k1),
                            mode="sum").view(hi - lo, b, o)
        torch.sum(d.mul_(gy), -1, out=out[lo:hi])                          # (chunk, b), d is ours
    return out.T.contiguous()                                             # (b, i)


DOTS_CHUNK_ELEMS = 1 << 20  # dx's (inputs, b, o) bag sums per chunk of inputs (4 MB in float32)


def gather_table(coef: torch.Tensor, scale: torch.Tensor | None, order: int) -> torch.Tensor:
    """(o, i, c) coefficients (times the (o, i) spline scale) -> (i * (c + 2k + 2), o) padded table."""
    o, i, c = coef.shape
    pad = order + 1
    table = coef.new_empty(i, c + 2 * pad, o)
    table[:, :pad] = 0.0
    table[:, pad + c :] = 0.0
    inner = table[:, pad : pad + c]                                        # written in one pass
    if scale is None:
        inner.copy_(coef.permute(1, 2, 0))
    else:
        torch.mul(coef.permute(1, 2, 0), scale.T.unsqueeze(1), out=inner)
    return table.view(-1, o)                                               # rows must be contiguous


def _gather_reference(grid: torch.Tensor, k: int, x: torch.Tensor, coef: torch.Tensor,
                      scale: torch.Tensor | None) -> torch.Tensor:
    spline = coef if scale is None else coef * scale.unsqueeze(-1)         # (o, i, c)
    return torch.einsum("bic,oic->bo", splines.bspline_basis(x, grid, k), spline)
