"""The "compiled" KANLinear path: the dense basis in closed form, fused by torch.compile.

On a uniform grid, basis n at u = (x - t_0) / h (in cells) is nonzero only on cells n..n + k, where
it is the polynomial piece sum_p M[r][p] s^p of the cardinal B-spline (r = k - (cell - n),
s = u - cell; M from splines.cardinal_coefficients). Written with plain tensor ops (a chain of
where() over the k + 1 pieces), the basis, the base branch and the feature matrix are one fused
loop once torch.compile has generated it, and the layer is one GEMM on top: what flashkan and
inkan do. Backward is written out (CompiledKAN) and compiled the same way: the weight gradient
is one GEMM on the forward's features, dx one GEMM and a fused loop over the basis slopes.
Eager, the same ops are several times slower than the other paths ("dense", "gather"), which is
why this path exists only compiled.

Compiling costs seconds (benchmarks/README.md) per distinct (shape, dtype, switches, needed gradients) on
first call; a second batch size compiles once more, shape-generic (torch caches the results on
disk for later processes). It needs a C++ compiler on CPU and pays for training runs of thousands
of steps, not for short ones. Using this path raises dynamo's recompile limit for the process
(see _compile()).
Uniform grids and order >= 2 only; elsewhere KANLinear runs what path="auto" picks: after
update_grid moves the knots, and for orders 0 and 1, whose values or slopes jump at the knots
(there the eager paths decide the side by exact comparisons in x's precision, not from u).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from kanlab import splines
from kanlab.layers.kan._fast import graph_grads, reference_layer
from kanlab.layers.kan.bases import BASES


def _weight(coef: torch.Tensor, scale: torch.Tensor | None, base_weight: torch.Tensor | None,
            base: str | None) -> torch.Tensor:
    # (o, i, c + 1): s * coef, then the base weights (1 without base_weight); (o, i, c) without base.
    spline = coef if scale is None else coef * scale.unsqueeze(-1)
    if base is None:
        return spline
    bw = torch.ones_like(spline[..., :1]) if base_weight is None else base_weight.unsqueeze(-1)
    return torch.cat([spline, bw], -1)


def _features(x: torch.Tensor, basis: torch.Tensor, base: str | None) -> torch.Tensor:
    # (b, i * (c + 1)): each input's bases, then b(x_i); (b, i * c) without base.
    if base is not None:
        basis = torch.cat([basis, BASES[base].value(x).unsqueeze(-1)], -1)
    return basis.flatten(1)


def dense_layer(
    x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None, base_weight: torch.Tensor | None,
    bias: torch.Tensor | None, grid: torch.Tensor, order: int, base: str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer from the closed-form dense basis: the forward torch.compile traces.

    Args:
        x: (b, i) inputs.
        coef, scale, base_weight, bias: KANLinear's parameters ((o, i, c), (o, i), (o, i), (o,)).
        grid: (i, m) uniform knots per input (float64 in KANLinear; u is computed in its dtype).
        order: spline order k.
        base: name of the base function, or None.
    Returns:
        y (b, o), and the features it multiplied: (b, i * (c + 1)), or (b, i * c) without base.
    """
    basis, _ = splines.uniform_dense_basis(x, grid, order)
    feats, weight = _features(x, basis, base), _weight(coef, scale, base_weight, base).flatten(1)
    return (feats @ weight.T if bias is None else torch.addmm(bias, feats, weight.T)), feats


def dense_layer_backward(
    gy: torch.Tensor, x: torch.Tensor, feats: torch.Tensor | None, coef: torch.Tensor,
    scale: torch.Tensor | None, base_weight: torch.Tensor | None, grid: torch.Tensor, order: int,
    base: str | None, needs: tuple[bool, bool, bool, bool, bool],
) -> tuple[torch.Tensor | None, ...]:
    """Gradients of dense_layer for (x, coef, scale, base_weight, bias), where needs says: the
    backward torch.compile traces. feats are the forward's (None when no weight needs a gradient)."""
    b, i = x.shape
    o, _, c = coef.shape
    gx = gcoef = gscale = gbase = None
    if needs[0]:
        _, dbasis = splines.uniform_dense_basis(x, grid, order, slope=True)
        assert dbasis is not None
        weight = _weight(coef, scale, base_weight, base)                   # (o, i, c + 1)
        gf = (gy @ weight.flatten(1)).view(b, i, -1)                       # (b, i, c + 1)
        gx = (gf[..., :c] * dbasis).sum(-1)
        if base is not None:
            gx = gx + gf[..., c] * BASES[base].slope(x)
    if feats is not None:
        gw = (gy.T @ feats).view(o, i, -1)                                 # (o, i, c + 1)
        gspline = gw[..., :c]
        if needs[1]:
            gcoef = gspline if scale is None else gspline * scale.unsqueeze(-1)
        if needs[2]:
            gscale = (gspline * coef).sum(-1)
        if needs[3]:
            gbase = gw[..., c]
    return gx, gcoef, gscale, gbase, gy.sum(0) if needs[4] else None


class CompiledKAN(torch.autograd.Function):
    """dense_layer forward and dense_layer_backward as two compiled functions.

    A hand-written backward rather than autograd through the traced forward: that keeps what
    torch.compile's partitioner picks, which here included k + 1 boolean piece masks per basis,
    whose byte-wise stores made a forward that needs dx several times slower (benchmarks/README.md).
    This keeps x, the parameters and, when a
    weight needs a gradient, the features (b, i * (c + 1)): the GEMM for the weight gradient
    reads them instead of rebuilding them; dx rebuilds only the basis slopes from x.
    Double backward (create_graph=True) goes through the reference layer's plain autograd ops.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None,
        base_weight: torch.Tensor | None, bias: torch.Tensor | None, grid: torch.Tensor, order: int,
        base: str | None,
    ) -> torch.Tensor:
        y, feats = compiled()(x, coef, scale, base_weight, bias, grid, order, base)
        keep = feats if any(ctx.needs_input_grad[1:4]) else None
        ctx.save_for_backward(x, keep, coef, scale, base_weight, bias, grid)
        ctx.meta = (order, base)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        x, feats, coef, scale, base_weight, bias, grid = ctx.saved_tensors
        k, base = ctx.meta
        needs = tuple(ctx.needs_input_grad[:5])
        if torch.is_grad_enabled():  # create_graph=True: higher derivatives through the general path
            inputs = (x, coef, scale, base_weight, bias)
            grads = graph_grads(needs, gy, inputs, functools.partial(reference_layer, grid, k, base))
        else:
            grads = compiled_backward()(gy.contiguous(), x, feats, coef, scale, base_weight, grid, k, base,
                                        needs)
        return (*grads, None, None, None)


def layer(
    x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None, base_weight: torch.Tensor | None,
    bias: torch.Tensor | None, grid: torch.Tensor, order: int, base: str | None,
) -> torch.Tensor:
    """KANLinear's compiled path: CompiledKAN, or, while the caller's own torch.compile traces the
    model, dense_layer itself (that compile then fuses and differentiates it with the rest)."""
    if torch.compiler.is_compiling():
        return dense_layer(x, coef, scale, base_weight, bias, grid, order, base)[0]
    check_device(x)
    return CompiledKAN.apply(x, coef, scale, base_weight, bias, grid, order, base)


RECOMPILE_LIMIT = 64


@functools.cache
def has_cpu_compiler() -> bool:
    """Whether torch.compile finds the C++ compiler it builds CPU kernels with (g++, or $CXX)."""
    from torch._inductor import cpp_builder

    try:
        cpp_builder.get_cpp_compiler()
    except Exception:  # inductor raises its own InvalidCxxCompiler, or OSError
        return False
    return True


def check_device(x: torch.Tensor) -> None:
    """Raise a RuntimeError naming the fix when x is on CPU and no C++ compiler is installed."""
    if x.device.type == "cpu" and not has_cpu_compiler():
        raise RuntimeError(
            'KANLinear(path="compiled") needs a C++ compiler on CPU (torch.compile builds C++ '
            'kernels): install g++ (e.g. apt install g++) or set $CXX, or use path="auto"'
        )


def _compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    # Every layer shares the two traced functions, and each (shape, dtype, switches, needs) is one
    # more compiled entry: dynamo's default limit of 8 would send a model's later layers back to
    # eager ops silently, so it is raised for the process.
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(fn, fullgraph=True)


@functools.cache
def compiled() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """dense_layer under torch.compile (built on first use; compiles per shape and switches)."""
    return _compile(dense_layer)


@functools.cache
def compiled_backward() -> Callable[..., tuple[torch.Tensor | None, ...]]:
    """dense_layer_backward under torch.compile."""
    return _compile(dense_layer_backward)
