"""B-spline grids, basis functions of any order, and least-squares coefficient fitting.

Conventions (the same as scipy.interpolate.BSpline):
- A knot vector t of m knots carries n = m - order - 1 basis functions B_0..B_{n-1}.
- B_j is supported on [t_j, t_{j+order+1}); intervals are half-open, so a basis is 0 at the
  right end of its support (continuous there for order >= 1).
- The *base interval* [t_order, t_n] is where the bases sum to one (partition of unity). A KAN
  grid over [lo, hi] is extended by `order` knots each side so that [lo, hi] is the base interval.
- Outside the base interval the bases are not renormalised: in the `order` extension intervals
  each side their sum falls off smoothly to 0, and outside [t_0, t_{m-1}) every basis is 0.

The closed form on a uniform grid, one contract for every evaluator (uniform_bspline_basis and
uniform_dense_basis here; the dense, gather and native paths' local bases in layers/kan/):
- origin t_0 = knots[0] and spacing h = (knots[-1] - t_0) / (m - 1), both from the knots as they
  are (float64 in KANLinear), never from grid_range; u = (x - t_0) * (1 / h) in the knots'
  precision (x promoted to it);
- u is clamped to [-1, m - 1] (so a cell index stays in range; outside [t_0, t_{m-1}) every basis
  is 0, and the bases a clamped u names are dropped as outside 0..n-1); a NaN stays NaN;
- cell j = floor(u), s = u - j in [0, 1): on cell j the bases B_{j-k}..B_j are nonzero, with the
  values of the cardinal B-spline's pieces at s, the polynomials of cardinal_coefficients;
uniform_cells below computes (cell, s, 1 / h) so, and every Python evaluator calls it and takes
its piece values from cardinal_coefficients; the C kernels (_native.h's local_basis) do the same
arithmetic in their own code. The evaluators differ only in where they put the k + 1 values: a
scatter into the dense basis (uniform_bspline_basis, fastest eagerly), a where() chain over
every basis (uniform_dense_basis, which torch.compile fuses), or kept local (the fast paths);
- orders 0 and 1 jump (in value or slope) at the knots, where round-off in u could pick the wrong
  cell: they use exact comparisons of x with the knots (bspline_basis, searchsorted) instead.
tests/test_basis_parity.py checks every evaluator against scipy's BSpline on knots, the ends and
outside the grid, orders 0..5, uniform and moved grids.

Legend: `...` any leading (batch) dims, m knots, n = m - order - 1 bases, k = order.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import torch

MAX_ORDER = 5


def _check_order(order: int) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= MAX_ORDER:
        raise ValueError(f"spline order must be an integer in 0..{MAX_ORDER}, got {order!r}")


def check_grid_range(grid_range: tuple[float, float]) -> tuple[float, float]:
    """Return grid_range as two floats, or raise naming it when it is empty, inverted or infinite."""
    try:
        lo, hi = (float(v) for v in grid_range)
    except (TypeError, ValueError):
        raise ValueError(f"grid_range must be a pair (lo, hi) of numbers, got {grid_range!r}") from None
    if not (lo < hi) or not (abs(lo) < float("inf") and abs(hi) < float("inf")):
        raise ValueError(
            f"grid_range must be finite with lo < hi, got {grid_range!r}; e.g. grid_range=(-1.0, 1.0)"
        )
    return lo, hi


def uniform_grid(
    grid_size: int,
    order: int,
    grid_range: tuple[float, float] = (-1.0, 1.0),
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Knots of a uniform grid over grid_range, extended by `order` intervals on each side.

    Args:
        grid_size: number of intervals inside grid_range (>= 1).
        order: spline order (degree), 0..5.
        grid_range: (lo, hi), the base interval.
    Returns:
        (grid_size + 2 * order + 1,) knots.
    """
    _check_order(order)
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
        raise ValueError(f"grid_size must be an integer >= 1, got {grid_size!r}")
    lo, hi = check_grid_range(grid_range)
    h = (hi - lo) / grid_size
    steps = torch.arange(-order, grid_size + order + 1, dtype=torch.float64, device=device)
    return (lo + h * steps).to(dtype)


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # 0/0 := 0 for repeated knots; the where() keeps gradients finite.
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(den), den))


def bspline_basis(x: torch.Tensor, knots: torch.Tensor, order: int) -> torch.Tensor:
    """B-spline basis values at x for any (sorted) knot vector, by the Cox-de Boor recursion.

    Args:
        x: (...) points.
        knots: (m,) shared knots, or (..., m) knots broadcastable against x (e.g. one row per input).
        order: spline order 0..5.
    Returns:
        (..., m - order - 1) basis values, differentiable in x.
    """
    _check_order(order)
    if knots.shape[-1] < order + 2:
        raise ValueError(f"order {order} needs at least {order + 2} knots, got {knots.shape[-1]}")
    t = knots.to(x.dtype)
    xe = x.unsqueeze(-1)                                                   # (..., 1)
    # + xe * 0: a NaN input gives NaN bases at every order, as the recursion does from order 1 on
    basis = ((xe >= t[..., :-1]) & (xe < t[..., 1:])).to(x.dtype) + xe * 0  # (..., m - 1)
    for k in range(1, order + 1):
        left = _safe_ratio(xe - t[..., : -(k + 1)], t[..., k:-1] - t[..., : -(k + 1)])
        right = _safe_ratio(t[..., k + 1 :] - xe, t[..., k + 1 :] - t[..., 1:-k])
        basis = left * basis[..., :-1] + right * basis[..., 1:]            # (..., m - k - 1)
    return basis


def uniform_cells(x: torch.Tensor, knots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The closed form's contract on uniform knots (module docstring): where x lies in cells.

    Args:
        x: (...) points.
        knots: (..., m) uniformly spaced knots, broadcastable against x (the last dim the knots).
    Returns:
        cell: (...) floor(u) for u = (x - t_0) / h clamped to [-1, m - 1], in the knots' precision
            (or x's, if wider); a NaN x gives NaN.
        s: (...) u - cell in [0, 1), the same precision.
        inv_h: (...) 1 / h = du/dx, broadcastable against x.
    """
    t = knots.to(torch.promote_types(knots.dtype, x.dtype))
    m = knots.shape[-1]
    t0 = t[..., 0]
    inv_h = (m - 1) / (t[..., -1] - t0)
    u = (x.to(t.dtype) - t0) * inv_h
    # clamped by where(), not clamp(): a NaN keeps its NaN gradient (clamp's would be 0)
    u = torch.where(u < -1.0, -1.0, torch.where(u > m - 1.0, m - 1.0, u))
    cell = u.floor()
    return cell, u - cell, inv_h


@functools.cache
def cardinal_coefficients(order: int) -> tuple[tuple[float, ...], ...]:
    """M[r][p]: the nonzero cardinal B-spline r (of order + 1) on a cell is sum_p M[r][p] * s^p.

    On cell j of a uniform grid (s = u - j in [0, 1)) the bases B_{j-k}..B_j are these k + 1
    pieces, r = 0..k. Exact rational arithmetic on the Cox-de Boor recursion for integer knots,
    rounded once.
    """
    _check_order(order)
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


# M[r][p] by order as plain constants, for the functions torch.compile traces (not the cached
# function itself), and the coefficients of each piece's d/ds, sum_p p * M[r][p] s^(p - 1).
_PIECES = tuple(cardinal_coefficients(k) for k in range(MAX_ORDER + 1))
_SLOPES = tuple(tuple(tuple(p * m for p, m in enumerate(poly))[1:] or (0.0,) for poly in pieces)
                for pieces in _PIECES)


def _horner(poly: tuple[float, ...], s: torch.Tensor) -> torch.Tensor:
    value = torch.full((), poly[-1], dtype=s.dtype, device=s.device)
    for p in range(len(poly) - 2, -1, -1):
        value = value * s + poly[p]
    return value


def uniform_dense_basis(x: torch.Tensor, knots: torch.Tensor, order: int,
                        slope: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The closed-form dense basis on uniform knots, and its x-derivative when slope (else None).

    Basis n is nonzero on cells n..n + k only, where it is piece r = k - (cell - n) of the
    cardinal B-spline (cardinal_coefficients) at s: a chain of where() over the k + 1 pieces,
    plain tensor ops that torch.compile fuses into one loop: what the "compiled" path traces
    (eagerly, uniform_bspline_basis's scatter is faster). The cell and s
    come from uniform_cells, in the knots' precision (float64 in KANLinear: u of a few hundred
    cells in float32 would keep s to ~1e-5 only); the pieces are evaluated in x's (float64
    arithmetic over the whole (..., n) loop cost 5x compiled).

    Orders 0 and 1 jump at the knots (in value or slope), where the cell from u may fall on the
    wrong side: uniform_bspline_basis gives them bspline_basis's exact comparisons instead.

    Args:
        x: (...) points.
        knots: (m,) or (..., m) uniformly spaced knots, broadcastable against x.
        order: spline order 0..5.
        slope: also return d basis / dx.
    Returns:
        (..., m - order - 1) basis values, and their x-derivatives or None; a NaN x gives a NaN
        row (it matches no piece).
    """
    _check_order(order)
    n = knots.shape[-1] - order - 1
    cell, frac, inv_h = uniform_cells(x, knots)                           # (...), (...), (...)
    s = frac.to(x.dtype).unsqueeze(-1)                                     # (..., 1) in [0, 1)
    d = cell.to(x.dtype).unsqueeze(-1) - torch.arange(n, device=x.device, dtype=x.dtype)  # (..., n)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    basis, dbasis = zero, zero
    for r in range(order + 1):                                             # piece r: cell - n = k - r
        hit = d == order - r
        basis = torch.where(hit, _horner(_PIECES[order][r], s), basis)
        if slope:
            dbasis = torch.where(hit, _horner(_SLOPES[order][r], s), dbasis)
    # NaN rows: s * 0 would be folded to 0 by inductor, so where() on isnan
    nan = torch.isnan(s)
    basis = torch.where(nan, s, basis)
    if not slope:
        return basis, None
    return basis, torch.where(nan, s, dbasis) * inv_h.to(x.dtype).unsqueeze(-1)


def uniform_bspline_basis(x: torch.Tensor, knots: torch.Tensor, order: int) -> torch.Tensor:
    """bspline_basis for uniformly spaced knots, in closed form: the "uniform" path and KANLinear.basis.

    Equal to bspline_basis(x, knots, order) up to round-off; orders 0 and 1, whose values or
    slopes jump at the knots, are bspline_basis itself (exact comparisons: a knot rounded to
    u = j - 1e-16 would take the wrong cell). The same pieces in the same cells as
    uniform_dense_basis, placed by a scatter of the k + 1 local values instead of a where()
    chain over all n bases: eagerly, with backward, 1.8-2x faster at grid 5 and 4.4-6x at grid
    100 (64 inputs, batch 1024; benchmarks/basis.py).

    Args:
        x: (...) points.
        knots: (m,) or (..., m) uniformly spaced knots, broadcastable against x.
        order: spline order 0..5.
    Returns:
        (..., m - order - 1) basis values, differentiable in x.
    """
    if order <= 1:
        return bspline_basis(x, knots, order)
    _check_order(order)
    n = knots.shape[-1] - order - 1
    # the pieces in the knots' own precision (float64 in KANLinear), then cast
    cell, frac, _ = uniform_cells(x, knots)                                # (...), (...)
    values = torch.stack([_horner(piece, frac) for piece in _PIECES[order]], -1).to(x.dtype)  # (..., k + 1)
    index = cell.long().unsqueeze(-1) - order + torch.arange(order + 1, device=x.device)  # (..., k + 1)
    inside = (index >= 0) & (index < n)
    # Bases that fall off either end are dropped: scattered into a spare slot, then cut.
    slot = torch.where(inside, index, torch.full_like(index, n))
    dense = torch.zeros(*values.shape[:-1], n + 1, dtype=x.dtype, device=x.device)
    # + x * 0: a NaN input gives NaN bases, as bspline_basis's (its values went to the spare slot)
    return dense.scatter_add(-1, slot, values * inside)[..., :n] + (x * 0).unsqueeze(-1)


def cell_polynomials(knots: torch.Tensor, order: int) -> torch.Tensor:
    """The bases that can be nonzero on each knot interval, as polynomials in the interval's s.

    On interval j, [t_j, t_{j+1}), the bases B_{j-k}..B_j (k = order) are polynomials of degree k
    in s = (x - t_j) / (t_{j+1} - t_j): what a uniform grid's cardinal_coefficients are for every
    interval at once. The Cox-de Boor recursion, run on coefficient vectors instead of values.

    Args:
        knots: (..., m) sorted knots (repeated knots allowed).
        order: spline order k, 0..5.
    Returns:
        (..., m - 1, k + 1, k + 1): [j, r, p] is the coefficient of s^p of B_{j-k+r} on interval j,
        in the knots' dtype; zero for an empty interval and for bases outside 0..m-k-2.
    """
    _check_order(order)
    k, m = order, knots.shape[-1]
    if m < k + 2:
        raise ValueError(f"order {k} needs at least {k + 2} knots, got {m}")
    t = knots
    # k more knots each side at the end spacing: the bases that do not exist (masked below) then
    # stay finite on the outer intervals.
    ext = torch.arange(1, k + 1, dtype=t.dtype, device=t.device)
    padded = torch.cat([t[..., :1] - (t[..., 1:2] - t[..., :1]) * ext.flip(0), t,
                        t[..., -1:] + (t[..., -1:] - t[..., -2:-1]) * ext], -1)    # (..., m + 2k)
    j = torch.arange(m - 1, device=t.device)

    def knot(offset: int) -> torch.Tensor:  # t_{j + offset} for every interval j: (..., m - 1)
        return padded[..., j + offset + k]

    h = knot(1) - knot(0)                                                  # (..., m - 1)
    polys = [torch.ones(*h.shape, 1, dtype=t.dtype, device=t.device)]     # degree 0: B_j = 1
    for d in range(1, k + 1):
        new = []
        for r in range(d + 1):                                             # B^d_a, a = j - d + r
            acc = torch.zeros(*h.shape, d + 1, dtype=t.dtype, device=t.device)
            if r >= 1:  # (x - t_a) / (t_{a+d} - t_a) * B^{d-1}_a, x - t_a = (t_j - t_a) + h s
                den = knot(r) - knot(r - d)
                acc[..., :d] += _safe_ratio(knot(0) - knot(r - d), den).unsqueeze(-1) * polys[r - 1]
                acc[..., 1:] += _safe_ratio(h, den).unsqueeze(-1) * polys[r - 1]
            if r < d:  # (t_{a+d+1} - x) / (t_{a+d+1} - t_{a+1}) * B^{d-1}_{a+1}
                den = knot(r + 1) - knot(r + 1 - d)
                acc[..., :d] += _safe_ratio(knot(r + 1) - knot(0), den).unsqueeze(-1) * polys[r]
                acc[..., 1:] -= _safe_ratio(h, den).unsqueeze(-1) * polys[r]
            new.append(acc)
        polys = new
    out = torch.stack(polys, -2)                                           # (..., m - 1, k + 1, k + 1)
    basis = j.unsqueeze(-1) - k + torch.arange(k + 1, device=t.device)    # (m - 1, k + 1) basis index
    real = (basis >= 0) & (basis < m - k - 1)
    return out * (real & (h > 0).unsqueeze(-1)).unsqueeze(-1).to(t.dtype)


def fit_coefficients(
    x: torch.Tensor, y: torch.Tensor, knots: torch.Tensor, order: int
) -> torch.Tensor:
    """Least-squares spline coefficients c with sum_c c * B_c(x) ~= y (minimum norm if rank-deficient).

    Args:
        x: (n, *B) sample points; B are independent problems (e.g. one per input feature).
        y: (n, *B, *T) targets; T are extra targets sharing the same x (e.g. one per output).
        knots: (m,) shared knots or (*B, m) knots per problem.
        order: spline order 0..5.
    Returns:
        (*B, *T, m - order - 1) coefficients.
    """
    if y.shape[: x.dim()] != x.shape:
        raise ValueError(f"y of shape {tuple(y.shape)} must start with x's shape {tuple(x.shape)}")
    batch, extra = x.shape[1:], y.shape[x.dim() :]
    design = bspline_basis(x, knots, order)                                # (n, *B, c)
    design = design.movedim(0, -2)                                         # (*B, n, c)
    rhs = y.reshape(*x.shape, -1).movedim(0, -2)                           # (*B, n, T)
    coef = torch.linalg.pinv(design) @ rhs                                 # (*B, c, T)
    return coef.movedim(-1, -2).reshape(*batch, *extra, design.shape[-1])
