"""The "dense" KANLinear path: the whole layer (spline, base branch, bias) as one GEMM.

The k + 1 local values of each input (see _fast.local_basis) are scattered into a padded feature
buffer whose real part is (b, c + 1, i), with b(x) as the last slab; y = features @ weights.T.
The work grows with c at GEMM speed: the fastest path while c is small. Backward reuses the
features of a one-chunk batch and otherwise rebuilds them from the saved local values.

The batch goes in chunks whose buffer stays a few MB: a buffer above glibc's mmap threshold
(32 MB) is fresh pages on every call, and first touches of those cost more than the GEMM here
(benchmarks/README.md); chunks also keep the scatter and gather in cache.

Legend: b batch, i in_features, o out_features, k order, c = grid_size + k bases per input.
Features are (b, slab, i) and indexed flat: PyTorch's scatter/gather along a dim cost about 3x
those over a flat index.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from kanlab.layers.kan._fast import graph_grads, local_basis, poison_inputs, reference_layer
from kanlab.layers.kan.bases import BASES

CHUNK_BYTES = 4 << 20  # feature buffer per chunk: a few MB, below the mmap threshold (benchmarks/README.md)


def _chunks(b: int, row_bytes: int) -> list[tuple[int, int]]:
    step = max(1, CHUNK_BYTES // row_bytes)
    return [(lo, min(b, lo + step)) for lo in range(0, b, step)]


def _slots(start: torch.Tensor, k: int, c: int) -> torch.Tensor:
    # Flat index (k + 1, b, i) of basis start + r in a (b, c + 2k + 2, i) buffer whose slabs are
    # [k + 1 spare | c bases | base branch b(x) | k spare]: bases off the grid land in spare slabs
    # (or in the base slab, which is written after them), so nothing needs masking.
    b, i = start.shape
    row = torch.arange(b, device=start.device).mul_(c + 2 * k + 2).add_(k + 1).unsqueeze(1)
    first = (start + row).mul_(i).add_(torch.arange(i, device=start.device))  # (b, i)
    return first + torch.arange(0, (k + 1) * i, i, device=start.device).view(k + 1, 1, 1)


def _features(start: torch.Tensor, values: torch.Tensor, x: torch.Tensor, c: int, k: int,
              base: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # The (b, c + 2k + 2, i) buffer filled for this chunk, its (b, (c + 1) * i) view of the c bases
    # and the base slab, and the flat slots (k + 1, b, i) the local values went to.
    b, i = start.shape
    buf = x.new_empty(b, c + 2 * k + 2, i)
    feats = buf.view(b, -1)[:, (k + 1) * i : (k + 2 + c) * i]
    feats.zero_()
    slots = _slots(start, k, c)
    buf.view(-1).scatter_(0, slots.view(-1), values.reshape(-1))
    buf[:, k + 1 + c] = 0.0 if base is None else BASES[base].value(x)  # after the scatter
    return buf, feats, slots


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

    Saves O(b * i * (k + 1)) for backward (the local starts, values and derivatives, and x). The
    features are kept too while the batch is one chunk (at most CHUNK_BYTES; faster, see
    benchmarks/README.md); larger batches rebuild them in
    backward by one scatter per chunk, so what grows with the batch is O(b * i * (k + 1)) only.
    The kept buffer is held on ctx rather than saved, so saved_tensors_hooks do not see it.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None,
        base_weight: torch.Tensor | None, bias: torch.Tensor | None,
        grid: torch.Tensor, order: int, uniform: bool, base: str | None,
    ) -> torch.Tensor:
        b, i = x.shape
        o, _, c = coef.shape
        k = order
        start, values, dvalues = local_basis(x, grid, k, uniform, derivative=ctx.needs_input_grad[0])
        weight = _weights(coef, scale, base_weight, base).view(o, -1)      # (o, (c + 1) * i)
        y = x.new_empty(b, o)
        chunks = _chunks(b, (c + 2 * k + 2) * i * x.element_size())
        for lo, hi in chunks:
            buf, feats, slots = _features(start[lo:hi], values[:, lo:hi], x[lo:hi], c, k, base)
            if bias is None:
                torch.mm(feats, weight.T, out=y[lo:hi])                    # (chunk, o)
            else:
                torch.addmm(bias, feats, weight.T, out=y[lo:hi])
        # A NaN input (check_finite=False) took the cell below the grid, whose slots are dropped:
        # its sample's outputs are NaN here, its edges' gradients in backward, as the reference's.
        y.masked_fill_(torch.isnan(x).any(1, keepdim=True), float("nan"))
        ctx.save_for_backward(start, values, dvalues, weight, x, coef, scale, base_weight, bias, grid)
        # One chunk (at most CHUNK_BYTES): backward reuses its buffer instead of rebuilding it. Held
        # on ctx, not saved: backward overwrites it, which a saved tensor may not be (a graph
        # retained for a second backward would refuse). Used once, then dropped.
        ctx.kept = (buf, slots) if len(chunks) == 1 else (None, None)
        ctx.meta = (k, base)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        start, values, dvalues, weight, x, coef, scale, base_weight, bias, grid = ctx.saved_tensors
        (kbuf, kslots), ctx.kept = ctx.kept, (None, None)
        k, base = ctx.meta
        b, i = x.shape
        o, _, c = coef.shape
        needs = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled():  # create_graph=True: higher derivatives through the general path
            ctx.kept = (kbuf, kslots)
            inputs = (x, coef, scale, base_weight, bias)
            return (*graph_grads(needs, gy, inputs, functools.partial(reference_layer, grid, k, base)),
                    None, None, None, None)
        gy = gy.contiguous()
        gw = gy.new_zeros(o, (c + 1) * i) if any(needs[1:4]) else None     # (o, (c + 1) * i)
        gx = x.new_empty(b, i) if needs[0] else None
        for lo, hi in _chunks(b, (c + 2 * k + 2) * i * x.element_size()):
            g = gy[lo:hi]                                                   # (chunk, o)
            if kbuf is not None and kslots is not None:  # the forward's (one chunk)
                buf, slots = kbuf, kslots
                feats = buf.view(hi - lo, -1)[:, (k + 1) * i : (k + 2 + c) * i]
            else:
                buf, feats, slots = _features(start[lo:hi], values[:, lo:hi], x[lo:hi], c, k, base)
            if gw is not None:
                gw.addmm_(g.T, feats)
            if gx is not None:
                torch.mm(g, weight, out=feats)                             # (chunk, (c + 1) * i)
                gbx = None if base is None else buf[:, k + 1 + c] * BASES[base].slope(x[lo:hi])
                buf[:, : k + 1].zero_()                                    # off-grid bases read 0
                buf[:, k + 1 + c :].zero_()
                local = buf.view(-1).index_select(0, slots.view(-1)).view(k + 1, hi - lo, i)
                torch.sum(local.mul_(dvalues[:, lo:hi]), 0, out=gx[lo:hi])  # (chunk, i)
                if gbx is not None:
                    gx[lo:hi] += gbx
        if gx is not None:  # a NaN in gy's row: every entry of gx's (a NaN input's read a spare slot)
            gx.masked_fill_(~torch.isfinite(gy.sum(1, keepdim=True)), float("nan"))
        gcoef = gscale = gbase = None
        if gw is not None:
            gw3 = gw.view(o, c + 1, i)
            gspline = gw3[:, :c].transpose(1, 2)                           # (o, i, c)
            gcoef = (gspline if scale is None else gspline * scale.unsqueeze(-1)).contiguous()
            gscale = (gspline * coef).sum(-1) if needs[2] else None
            gbase = gw3[:, c].contiguous() if needs[3] else None
            # NaN in gy reaches every weight through the GEMM; a NaN input's dropped slots do not
            gcoef, gscale, gbase = poison_inputs(gcoef, x), poison_inputs(gscale, x), poison_inputs(gbase, x)
        gbias = gy.sum(0) if needs[4] else None
        return gx, gcoef if needs[1] else None, gscale, gbase, gbias, None, None, None, None
