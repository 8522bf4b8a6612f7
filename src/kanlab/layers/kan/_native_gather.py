"""The gather path's CPU kernels (_native_gather.c).

The embedding bags of _fast_gather spend most of their backward sorting indices and laying out
bags (most of a grid-100 layer's time: benchmarks/README.md); these kernels compute the same sums directly:
the forward over ranges of samples (or of inputs, each thread with its own partial sums, where it
builds the table as it goes), the backward (every gradient in one pass) over ranges of inputs,
so that each thread writes its own rows and nothing is sorted. The ranges run on
torch.get_num_threads() of torch's own OpenMP threads (native_build.openmp_runtime), one thread where
torch does not run on OpenMP. Built with the native kernels (native_build.library); where they cannot
be (no C compiler, not CPU), the gather path keeps its embedding bags.

Layouts (contiguous): first (i, b) int64, the table row of the first of the k + 1 nonzero bases of
sample b's input i; values and dvalues (i, b, k + 1).
Legend: b batch, i in_features, o out_features, k order, w = c + 2k + 2 table rows per input.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch

from kanlab.layers.kan import _native, native_build
from kanlab.layers.kan._fast import local_basis


def kernels(x: torch.Tensor, coef: torch.Tensor) -> ctypes.CDLL | None:
    """The compiled kernels for this call, or None where the embedding bags must run (not CPU,
    another dtype, mixed dtypes, no C compiler)."""
    if x.device.type != "cpu" or coef.device.type != "cpu" or x.dtype != coef.dtype:
        return None
    return native_build.library(x.dtype) if x.dtype in native_build.C_TYPES else None


# The kernels sum a row's last outputs (after its whole vectors) as whole vectors too, reading up
# to a vector past the row's end (_native_gather_forward.h, forward_tail), into the next row or,
# after the table's last, into PAD more elements (padded()). 64 covers every vector width.
PAD = 64


def padded(like: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """An empty (rows, cols) tensor like `like`, contiguous, with PAD zeros after its end (what is
    read there is multiplied by gy's zero columns: it must be finite)."""
    flat = like.new_empty(rows * cols + PAD)
    flat[rows * cols :] = 0
    return flat[: rows * cols].view(rows, cols)


# The backward reads gy's rows as whole vectors: rows padded with zeros to a multiple of ROW_MULTIPLE
# elements (of every vector width and of _native_gather_forward.h's TAIL_STEP).
ROW_MULTIPLE = 16


def zero_padded_rows(t: torch.Tensor) -> torch.Tensor:
    """t (b, o) as a (b, o) view of a (b, o rounded up to ROW_MULTIPLE) tensor, zeros past column o."""
    b, o = t.shape
    wide = -(-o // ROW_MULTIPLE) * ROW_MULTIPLE
    if wide == o and t.is_contiguous():
        return t
    out = t.new_empty(b, wide)
    out[:, o:] = 0
    out[:, :o] = t
    return out[:, :o]


@torch.compiler.disable  # torch.compile cannot see what a ctypes call reads
def table(lib: ctypes.CDLL, coef: torch.Tensor, scale: torch.Tensor | None, k: int) -> torch.Tensor:
    """(o, i, c) coefficients times the (o, i) spline scale -> the (i * w, o) padded table
    (as _fast_gather.gather_table)."""
    o, i, c = coef.shape
    coef = coef.contiguous()
    scale = None if scale is None else scale.contiguous()
    out = padded(coef, i * (c + 2 * k + 2), o)
    _native.check(lib.gather_table(i, o, c, k, coef.data_ptr(), _native.ptr(scale), out.data_ptr(),
                                   _native.threads(o * i * c)))
    return out


@torch.compiler.disable
def basis(lib: ctypes.CDLL, x: torch.Tensor, grid: torch.Tensor, k: int, uniform: bool,
          derivative: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """first (i, b), values and, if derivative, dvalues (i, b, k + 1) of x (b, i)."""
    b, i = x.shape
    if not 2 <= k <= _native.MAX_ORDER:  # orders 0 and 1 (jumps at the knots): torch's local basis
        start, values, dvalues = local_basis(x, grid, k, uniform, derivative=derivative)
        width = grid.shape[-1] + k + 1                                     # table rows per input
        first = start.T.add(torch.arange(k + 1, width * i, width, device=x.device).unsqueeze(1))
        return (first.contiguous(), values.permute(2, 1, 0).contiguous(),
                None if dvalues is None else dvalues.permute(2, 1, 0).contiguous())
    x, grid = x.contiguous(), grid.contiguous()
    first = torch.empty(i, b, dtype=torch.int64)
    values = x.new_empty(i, b, k + 1)
    dvalues = x.new_empty(i, b, k + 1) if derivative else None
    poly, threads = _native.power_matrix64(k), _native.threads(b * i * 16)
    table = _native.cells(grid, k, uniform)  # None on a uniform grid
    _native.check(lib.gather_basis(b, i, grid.shape[1], k, x.data_ptr(), grid.data_ptr(), poly.data_ptr(),
                                   _native.ptr(table), first.data_ptr(), values.data_ptr(),
                                   _native.ptr(dvalues), threads))
    return first, values, dvalues


def builds_in_forward(b: int, coef: torch.Tensor, k: int) -> bool:
    """Whether the forward builds the table itself (forward_build): unless the partial sums of y of
    its threads but one, (threads - 1) * (b, o), would be larger than the table."""
    o, i, c = coef.shape
    parts = min(_forward_threads(b, i, k + 1, o), i)  # as kan_parts splits the inputs
    return (parts - 1) * b <= i * (c + 2 * k + 2)


def _forward_threads(b: int, i: int, k1: int, o: int) -> int:
    """The threads of a forward call (either split), whose work is b * i * (k + 1) * o."""
    return _native.threads(b * i * k1 * o)


@torch.compiler.disable
def forward_build(lib: ctypes.CDLL, first: torch.Tensor, values: torch.Tensor, coef: torch.Tensor,
                  scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """forward() and table() in one pass: (y, table). The inputs are split over threads, and each
    block of the table is read while it is in the cache of the thread that wrote it, instead of
    being read back from memory (faster, most at large tables: benchmarks/README.md). Each thread
    but the first sums into its own (b, o) buffer, which are added up at the end."""
    i, b, k1 = values.shape
    o, _, c = coef.shape
    coef = coef.contiguous()
    scale = None if scale is None else scale.contiguous()
    table = padded(coef, i * (c + 2 * k1), o)
    y = coef.new_empty(b, o)
    _native.check(lib.gather_forward_build(b, i, o, c, k1 - 1, coef.data_ptr(), _native.ptr(scale),
                                           table.data_ptr(), first.data_ptr(), values.data_ptr(),
                                           y.data_ptr(), _forward_threads(b, i, k1, o)))
    return y, table


@torch.compiler.disable
def forward(lib: ctypes.CDLL, first: torch.Tensor, values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """y[b] = sum_{i, r} values[i, b, r] * table[first[i, b] + r]: (b, o)."""
    i, b, k1 = values.shape
    o = table.shape[1]
    y = table.new_empty(b, o)
    _native.check(lib.gather_forward(b, i, o, table.shape[0] // i, k1 - 1, table.data_ptr(), first.data_ptr(),
                                     values.data_ptr(), y.data_ptr(), _forward_threads(b, i, k1, o)))
    return y


@torch.compiler.disable
def backward(lib: ctypes.CDLL, first: torch.Tensor, values: torch.Tensor, dvalues: torch.Tensor | None,
             table: torch.Tensor, gy: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None,
             want_coef: bool, want_scale: bool) -> tuple[Any, Any, Any]:
    """The gradients of x (if dvalues is given), coef and scale (as asked) for output gradient gy.

    The table's gradient is summed one input's block at a time, in a scratch block, and goes
    straight to coef's and scale's: never a table-sized buffer.
    """
    i, b, k1 = values.shape
    o, _, c = coef.shape
    gy, coef = zero_padded_rows(gy), coef.contiguous()
    scale = None if scale is None else scale.contiguous()
    gx = gy.new_empty(b, i) if dvalues is not None else None
    gcoef = torch.empty_like(coef) if want_coef else None
    gscale = torch.empty_like(scale) if want_scale and scale is not None else None
    if gx is not None or gcoef is not None or gscale is not None:
        _native.check(lib.gather_backward(
            b, i, o, gy.stride(0), c, k1 - 1, table.data_ptr(), first.data_ptr(), values.data_ptr(),
            _native.ptr(dvalues), gy.data_ptr(), coef.data_ptr(), _native.ptr(scale), _native.ptr(gcoef),
            _native.ptr(gscale), _native.ptr(gx), _native.threads(2 * b * i * k1 * o)))
    return gx, gcoef, gscale
