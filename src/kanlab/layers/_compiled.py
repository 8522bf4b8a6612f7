"""The "compiled" KANLinear path: the dense basis in closed form, fused by torch.compile.

On a uniform grid, basis n at u = (x - t_0) / h (in cells) is nonzero only on cells n..n + k, where
it is the polynomial piece sum_p M[r][p] s^p of the cardinal B-spline (r = k - (cell - n),
s = u - cell; M from _fast.cardinal_coefficients). Written with plain tensor ops (a chain of
where() over the k + 1 pieces), the basis, the base branch and the feature matrix are one fused
loop once torch.compile has generated it, forward and backward, and the layer is one GEMM on
top: what flashkan and inkan do. Eager, the same ops are several times slower than the other
paths ("dense", "gather"), which is why this path exists only compiled.

Compiling costs ~5-20 s on 2 cores per distinct (shape, dtype, switches, grad mode) on first call
(torch caches the result on disk for later processes), and needs a C++ compiler on CPU: it pays
for training runs of thousands of steps, not for short ones. Using this path sets two process-wide
torch settings (see compiled()).
Uniform grids and order >= 2 only; elsewhere KANLinear runs what path="auto" picks: after
update_grid moves the knots, and for orders 0 and 1, whose values or slopes jump at the knots
(there the eager paths decide the side by exact comparisons in x's precision, not from u).
What autograd keeps for backward is up to torch.compile's partitioner, which recomputes the cheap
basis rather than saving it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from kanlab import splines
from kanlab.layers._fast import BASES, cardinal_coefficients

# M[r][p] by order, as plain constants for the traced function (not the cached function itself).
PIECES = tuple(cardinal_coefficients(k) for k in range(splines.MAX_ORDER + 1))


def dense_layer(
    x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None, base_weight: torch.Tensor | None,
    bias: torch.Tensor | None, grid: torch.Tensor, order: int, base: str | None,
) -> torch.Tensor:
    """The layer from the closed-form dense basis; the function torch.compile traces.

    Args:
        x: (b, i) inputs.
        coef, scale, base_weight, bias: KANLinear's parameters ((o, i, c), (o, i), (o, i), (o,)).
        grid: (i, m) uniform knots per input (float64 in KANLinear; u is computed in x's dtype).
        order: spline order k.
        base: name of the base function, or None.
    Returns:
        (b, o).
    """
    o, i, c = coef.shape
    k = order
    # In x's precision: float64 arithmetic in the fused loop costs 5x here, and float32 x carries
    # no more digits than this u keeps (s within ~1e-7 * c of the float64 value).
    t0 = grid[:, 0]
    u = (x - t0.to(x.dtype)) * ((grid.shape[1] - 1) / (grid[:, -1] - t0)).to(x.dtype)  # (b, i) in cells
    cell = u.floor()
    s = (u - cell).unsqueeze(-1)                                           # (b, i, 1) in [0, 1)
    d = cell.unsqueeze(-1) - torch.arange(c, device=x.device, dtype=x.dtype)  # (b, i, c)
    pieces = PIECES[k]
    basis = torch.zeros((), dtype=x.dtype, device=x.device)
    for r in range(k + 1):                                                 # piece r: cell - n = k - r
        value = torch.full((), pieces[r][k], dtype=x.dtype, device=x.device)
        for p in range(k - 1, -1, -1):                                     # Horner in s
            value = value * s + pieces[r][p]
        basis = torch.where(d == k - r, value, basis)
    spline = coef if scale is None else coef * scale.unsqueeze(-1)         # (o, i, c)
    if base is not None:
        bx = BASES[base][0](x).unsqueeze(-1)                               # (b, i, 1)
        basis = torch.cat([basis, bx], -1)                                  # (b, i, c + 1)
        bw = torch.ones_like(spline[..., :1]) if base_weight is None else base_weight.unsqueeze(-1)
        spline = torch.cat([spline, bw], -1)                                # (o, i, c + 1)
    feats, weight = basis.flatten(1), spline.flatten(1)
    return feats @ weight.T if bias is None else torch.addmm(bias, feats, weight.T)


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


@functools.cache
def compiled() -> Callable[..., torch.Tensor]:
    """dense_layer under torch.compile (built on first use; compiles per shape and switches)."""
    # Donated buffers make a second backward through a retained graph (retain_graph=True,
    # gradcheck) an error. The flag is read when the (lazily compiled) backward is built, outside
    # any call of ours, so it is turned off for the process once this path is first used.
    # Every layer shares this one traced function, and each (shape, dtype, switches, grad mode)
    # is one more compiled entry: dynamo's default of 8 would send a model's later layers back to
    # eager ops silently.
    import torch._dynamo.config as dynamo_config
    import torch._functorch.config as functorch_config

    functorch_config.donated_buffer = False
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(dense_layer, fullgraph=True)
