"""B-spline grids, basis functions of any order, and least-squares coefficient fitting.

Conventions (the same as scipy.interpolate.BSpline):
- A knot vector t of m knots carries n = m - order - 1 basis functions B_0..B_{n-1}.
- B_j is supported on [t_j, t_{j+order+1}); intervals are half-open, so a basis is 0 at the
  right end of its support (continuous there for order >= 1).
- The *base interval* [t_order, t_n] is where the bases sum to one (partition of unity). A KAN
  grid over [lo, hi] is extended by `order` knots each side so that [lo, hi] is the base interval.
- Outside the base interval the bases are not renormalised: in the `order` extension intervals
  each side their sum falls off smoothly to 0, and outside [t_0, t_{m-1}) every basis is 0.

Legend: `...` any leading (batch) dims, m knots, n = m - order - 1 bases, k = order.
"""

from __future__ import annotations

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
    basis = ((xe >= t[..., :-1]) & (xe < t[..., 1:])).to(x.dtype)          # (..., m - 1)
    for k in range(1, order + 1):
        left = _safe_ratio(xe - t[..., : -(k + 1)], t[..., k:-1] - t[..., : -(k + 1)])
        right = _safe_ratio(t[..., k + 1 :] - xe, t[..., k + 1 :] - t[..., 1:-k])
        basis = left * basis[..., :-1] + right * basis[..., 1:]            # (..., m - k - 1)
    return basis


def uniform_local_basis(u: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The order + 1 nonzero cardinal B-spline values at u (in units of the knot spacing).

    For a uniform knot vector t_j = t_0 + j * h and u = (x - t_0) / h, the bases that can be
    nonzero at x are j = floor(u) - order + r for r = 0..order.

    Args:
        u: (...) positions in knot units.
        order: spline order 0..5.
    Returns:
        start: (...) int64 index of the first nonzero basis, floor(u) - order.
        values: (..., order + 1) their values (differentiable in u).
    """
    _check_order(order)
    cell = torch.floor(u)
    s = (u - cell).unsqueeze(-1)                                           # (..., 1) in [0, 1)
    values = torch.ones_like(s)
    for d in range(1, order + 1):
        r = torch.arange(d + 1, dtype=u.dtype, device=u.device)
        pad = torch.zeros_like(s)
        lower = torch.cat([pad, values], dim=-1)                           # prev basis j - 1
        upper = torch.cat([values, pad], dim=-1)                           # prev basis j
        values = ((s + d - r) * lower + (1 - s + r) * upper) / d           # (..., d + 1)
    return cell.long() - order, values


def uniform_bspline_basis(x: torch.Tensor, knots: torch.Tensor, order: int) -> torch.Tensor:
    """bspline_basis for uniformly spaced knots, from the closed-form local values.

    Equal to bspline_basis(x, knots, order) up to round-off (off the knots for order 0).

    Args:
        x: (...) points.
        knots: (m,) or (..., m) uniformly spaced knots, broadcastable against x.
        order: spline order 0..5.
    Returns:
        (..., m - order - 1) basis values.
    """
    n_basis = knots.shape[-1] - order - 1
    # Spacing and origin at the knots' own precision (float64 in KANLinear), then cast.
    h = ((knots[..., -1] - knots[..., 0]) / (knots.shape[-1] - 1)).to(x.dtype)
    start, values = uniform_local_basis((x - knots[..., 0].to(x.dtype)) / h, order)  # (...), (..., k+1)
    index = start.unsqueeze(-1) + torch.arange(order + 1, device=x.device)  # (..., k + 1)
    inside = (index >= 0) & (index < n_basis)
    values = values * inside
    # Bases that fall off either end are dropped; scatter into a spare slot, then cut it.
    slot = torch.where(inside, index, torch.full_like(index, n_basis))
    dense = torch.zeros(*values.shape[:-1], n_basis + 1, dtype=x.dtype, device=x.device)
    return dense.scatter_add(-1, slot, values)[..., :n_basis]


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
