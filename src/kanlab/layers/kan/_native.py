"""The "native" KANLinear path: a small layer's forward and backward as plain C loops.

At the sizes of the KAN paper's examples ([2, 5, 1], a thousand points) every other path spends
its time dispatching tensor operations (a few microseconds each, a few hundred per LBFGS closure),
not computing. _native.c does the whole layer, uniform-grid basis included, in one call each way.
It is compiled with the system's C compiler on first use and loaded with ctypes (native_build.py:
the compiler, the cache and its checks). Where no compiler works, KANLinear runs the "dense" or
"gather" path instead: silently under path="auto" (which picks native for the smallest layers),
after one RuntimeWarning under path="native" (paths.py).

The loops split the samples over torch's threads and read the coefficient table once per sample
and edge: fast while a layer is small (see paths.SMALL_EDGES), slower than the gather path's vectorized
loops (_native_gather.c, built into the same library) beyond. CPU only; float32 and
float64 (sums in double either way); order 2..5. On a uniform grid the kernels find each input's
cell by one multiplication; on any other (after update_grid) by a binary search over the knots,
and its bases from per-cell polynomials (cell_table), built once per grid and cached.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import torch

from kanlab import splines
from kanlab.layers.kan._fast import graph_grads, power_matrix, reference_layer
from kanlab.layers.kan.bases import BASES
from kanlab.layers.kan.native_build import library

MAX_ORDER = 5  # MAX_K in _native.c


@functools.cache
def power_matrix64(order: int) -> torch.Tensor:
    """power_matrix(order) with its derivative rows, float64 on the CPU, as the kernels read it."""
    return power_matrix(order, True, torch.float64, torch.device("cpu")).contiguous()


def cell_table(grid: torch.Tensor, order: int) -> torch.Tensor:
    """What the kernels read to find the bases on a grid of any spacing (_native.h's
    local_basis_cells): per input, the m knots padded with +inf to a power of two >= m + 1 (for a
    branch-free binary search), then m + 1 cell records, each its first knot, 1 / its width and
    the (k + 1, k + 1) polynomial coefficients of splines.cell_polynomials; the cells below the
    first knot and from the last one on are zero. (i, m) float64 knots -> (i, block) float64."""
    grid = grid.to(torch.float64)
    i, m = grid.shape
    k = order
    size = 1 << m.bit_length()  # the smallest power of two >= m + 1
    search = torch.cat([grid, grid.new_full((i, size - m), float("inf"))], 1)  # (i, size)
    width = grid.diff(dim=1)                                               # (i, m - 1)
    inv = torch.where(width > 0, 1.0 / torch.where(width > 0, width, 1.0), 0.0)
    inner = torch.cat([grid[:, :-1, None], inv[..., None],
                       splines.cell_polynomials(grid, k).flatten(2)], 2)  # (i, m - 1, 2 + (k + 1)^2)
    outer = inner.new_zeros(i, 1, inner.shape[2])
    below, above = outer.clone(), outer.clone()
    below[:, 0, 0], above[:, 0, 0] = grid[:, 0], grid[:, -1]
    records = torch.cat([below, inner, above], 1)                          # (i, m + 1, 2 + (k + 1)^2)
    return torch.cat([search, records.flatten(1)], 1).contiguous()


# id(grid), order -> (grid._version, cell_table): tables are built once per grid (a few hundred
# tensor operations), dropped when their grid is freed, rebuilt when it is changed in place.
_CELLS: dict[tuple[int, int], tuple[int, torch.Tensor]] = {}


def cells(grid: torch.Tensor, order: int, uniform: bool) -> torch.Tensor | None:
    """cell_table(grid, order), cached per grid tensor; None for a uniform grid (the kernels need
    no table there)."""
    if uniform:
        return None
    try:
        version = grid._version
    except RuntimeError:  # an inference tensor has no version counter: not cached
        return cell_table(grid, order)
    key = (id(grid), order)
    hit = _CELLS.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    if hit is None:
        weakref.finalize(grid, _CELLS.pop, key, None)
    # cached: a plain tensor, whatever mode asked first (an inference tensor cannot be saved for a
    # later backward; a forward under inference_mode, then training, failed)
    with torch.inference_mode(False), torch.no_grad():
        table = cell_table(grid, order)
    _CELLS[key] = (version, table)
    return table


# Below this many multiply-adds a kernel call runs on one thread: waking torch's threads costs
# microseconds.
MIN_PARALLEL_WORK = 1 << 16


def threads(work: int) -> int:
    """How many of torch's threads a kernel call of `work` multiply-adds runs on."""
    return max(1, min(torch.get_num_threads(), work // MIN_PARALLEL_WORK))


def ptr(t: torch.Tensor | None) -> int | None:
    """The address of t's data (None for None), for the kernels' pointer arguments."""
    return None if t is None else t.data_ptr()


def aux_of(x: torch.Tensor, base: str | None) -> torch.Tensor | None:
    """What the kernels read to get b(x) and b'(x) without an exp per element: torch's vectorized
    sigmoid (silu) or tanh of x (bases.BASES' aux), once per forward, kept for backward; None for
    the other bases."""
    aux = None if base is None else BASES[base].aux
    return None if aux is None else aux(x)


def head(x: torch.Tensor, aux: torch.Tensor | None, out_features: int, grid: torch.Tensor,
         table: torch.Tensor | None, k: int, coef: int | None, scale: int | None, base_weight: int | None,
         base: str | None) -> list[Any]:
    """The arguments both kernels start with: x, aux, the float64 grid and its cell table (None
    for a uniform grid) as contiguous tensors, the parameters as addresses of contiguous data of
    x's dtype (None for an absent one)."""
    b, i = x.shape
    return [b, i, out_features, grid.shape[-1], k, ptr(x), ptr(aux), ptr(grid), ptr(power_matrix64(k)),
            ptr(table), coef, scale, base_weight, 0 if base is None else BASES[base].code]


def _head(x: torch.Tensor, aux: torch.Tensor | None, coef: torch.Tensor, scale: torch.Tensor | None,
          base_weight: torch.Tensor | None, grid: torch.Tensor, table: torch.Tensor | None, k: int,
          base: str | None) -> list[Any]:
    return head(x, aux, coef.shape[0], grid, table, k, ptr(coef), ptr(scale), ptr(base_weight), base)


def work_threads(x: torch.Tensor, coef: torch.Tensor) -> int:
    """threads() for one layer call on x (b, i) with coef (o, i, c)."""
    return threads(x.shape[0] * coef.shape[0] * coef.shape[1] * 4)


def check(status: int) -> None:
    """Raise if a kernel returned non-zero: 1, it could not allocate its work space; else it was
    called with arguments it was not built for (a bug in kanlab, not in the caller's data)."""
    if status == 1:
        raise MemoryError("the native KAN kernel could not allocate its accumulators")
    if status != 0:
        raise RuntimeError(f"a native KAN kernel rejected its arguments (status {status}): a bug in kanlab, "
                           "please report it; path='dense' avoids the kernels meanwhile")


@torch.compiler.disable
def native_layer(x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None,
                 base_weight: torch.Tensor | None, bias: torch.Tensor | None, grid: torch.Tensor,
                 order: int, base: str | None, uniform: bool = True) -> torch.Tensor:
    """The layer on the native kernels (NativeKAN), always run eagerly: torch.compile cannot see
    what a ctypes call reads and would trace it with wrong addresses, so inside a compiled model
    this is a graph break. uniform: the grid is uniform per input (else its cell table is used)."""
    return NativeKAN.apply(x, coef, scale, base_weight, bias, grid, order, base,
                           cells(grid, order, uniform))


class NativeKAN(torch.autograd.Function):
    """y = sum_i [s * phi(x_i) + w * b(x_i)] + bias by _native.c; saves only the inputs."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None,
        base_weight: torch.Tensor | None, bias: torch.Tensor | None, grid: torch.Tensor,
        order: int, base: str | None, table: torch.Tensor | None,
    ) -> torch.Tensor:
        lib = library(x.dtype)
        assert lib is not None, "KANLinear only picks the native path where library() built it"
        for name, t in (("coef", coef), ("scale", scale), ("base_weight", base_weight), ("bias", bias)):
            if t is not None and t.dtype != x.dtype:
                raise TypeError(f"KANLinear: the input is {x.dtype} but the layer's {name} is {t.dtype}: "
                                "convert one to the other (model.double() or x.float())")
        x, coef, grid = x.contiguous(), coef.contiguous(), grid.contiguous()
        scale, base_weight, bias = (None if t is None else t.contiguous() for t in (scale, base_weight, bias))
        y = x.new_empty(x.shape[0], coef.shape[0])
        aux = aux_of(x, base)
        check(lib.kan_forward(*_head(x, aux, coef, scale, base_weight, grid, table, order, base), ptr(bias),
                              ptr(y), None, work_threads(x, coef)))
        ctx.save_for_backward(x, aux, coef, scale, base_weight, bias, grid, table)
        ctx.meta = (order, base)
        return y

    @staticmethod
    @torch.compiler.disable  # also under compiled autograd: the kernels read raw addresses
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        x, aux, coef, scale, base_weight, bias, grid, table = ctx.saved_tensors
        k, base = ctx.meta
        inputs = (x, coef, scale, base_weight, bias)
        needs = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled():  # create_graph=True: higher derivatives through the general path
            return (*graph_grads(needs, gy, inputs, functools.partial(reference_layer, grid, k, base)),
                    None, None, None, None)
        grads = [torch.empty_like(t) if need and t is not None else None
                 for t, need in zip(inputs, needs, strict=True)]
        gy = gy.contiguous()  # held by a name: the kernel reads it after ptr returns
        lib = library(x.dtype)
        assert lib is not None
        check(lib.kan_backward(*_head(x, aux, coef, scale, base_weight, grid, table, k, base), ptr(gy), None,
                               *map(ptr, grads), work_threads(x, coef)))
        return (*grads, None, None, None, None)
