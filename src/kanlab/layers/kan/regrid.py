"""KANLinear's grid changes: update_grid's quantile knots, refine's finer knots, and the least-squares
refit of the coefficients onto new knots (the layer adopts the results).

Legend: b batch, n samples, i in_features, o out_features, c coefficients, m = grid_size + 2 * order + 1
knots per input.
"""

from __future__ import annotations

import torch

from kanlab import splines


def quantile_grid(x: torch.Tensor, grid_size: int, order: int, grid_eps: float, margin: float
                  ) -> torch.Tensor:
    """Knots (i, m) at the quantiles of x (b, i), mixed with a uniform grid by grid_eps, widened by margin."""
    g, k = grid_size, order
    xs = torch.sort(x, dim=0).values                                       # (b, i)
    where = torch.linspace(0, x.shape[0] - 1, g + 1, device=x.device).round().long()
    adaptive = xs[where].T                                                 # (i, g + 1)
    lo, hi = xs[0], xs[-1]
    if bool((hi - lo <= 0).any()):
        raise ValueError("update_grid needs at least two distinct values of every input")
    steps = torch.arange(g + 1, dtype=xs.dtype, device=x.device) / g
    uniform = lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * steps             # (i, g + 1)
    inner = grid_eps * uniform + (1 - grid_eps) * adaptive
    if margin > 0:  # stretched about the middle, so [lo, hi] becomes [lo - d, hi + d]
        mid = ((lo + hi) / 2).unsqueeze(1)
        inner = mid + (inner - mid) * (1 + 2 * margin)
        lo, hi = lo - margin * (hi - lo), hi + margin * (hi - lo)
    h = ((hi - lo) / g).unsqueeze(1)                                       # (i, 1)
    ext = torch.arange(1, k + 1, dtype=xs.dtype, device=x.device)
    left, right = inner[:, :1] - h * ext.flip(0), inner[:, -1:] + h * ext
    return torch.cat([left, inner, right], dim=1)                          # (i, m)


def refined_grid(grid: torch.Tensor, order: int, grid_size: int, x: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """refine's new knots (i, m') and the samples (n, i) to refit on (see KANLinear.refine)."""
    k = order
    g = grid.shape[1] - 2 * k - 1
    span = torch.tensor([float(k), float(k + g)], dtype=grid.dtype, device=grid.device)
    span = span.expand(grid.shape[0], 2)                                   # (i, 2) in knot index
    if x is not None:
        lo, hi = _knot_index(grid, x.min(0).values), _knot_index(grid, x.max(0).values)
        span = torch.stack([torch.minimum(span[:, 0], lo), torch.maximum(span[:, 1], hi)], 1)
    steps = torch.linspace(0, 1, grid_size + 1, dtype=span.dtype, device=span.device)
    new_inner = _knot_at(grid, span[:, :1] + (span[:, 1:] - span[:, :1]) * steps)  # (i, G + 1)
    h = ((new_inner[:, -1] - new_inner[:, 0]) / grid_size).unsqueeze(1)
    ext = torch.arange(1, k + 1, dtype=new_inner.dtype, device=new_inner.device)
    new = torch.cat([new_inner[:, :1] - h * ext.flip(0), new_inner, new_inner[:, -1:] + h * ext], 1)
    # 2(k + 1) samples inside each new interval (k + 1 determine every coefficient on it)
    t = (torch.arange(2 * k + 2, dtype=new.dtype, device=new.device) + 0.5) / (2 * k + 2)
    left, width = new_inner[:, :-1], new_inner.diff(dim=1)                 # (i, G)
    samples = (left.unsqueeze(-1) + width.unsqueeze(-1) * t).flatten(1).T  # (G * (2k + 2), i)
    if x is not None:
        samples = torch.cat([samples, x])
    return new, samples


def refit(coef: torch.Tensor, grid: torch.Tensor, new_grid: torch.Tensor, order: int, x: torch.Tensor
          ) -> torch.Tensor:
    """Coefficients (o, i, c') on new_grid of the splines coef (o, i, c) on grid, as close as least
    squares allows at the samples x (n, i); fitted in the knots' float64 whatever coef's dtype."""
    x = x.to(grid.dtype)
    basis = splines.bspline_basis(x, grid, order)                          # (n, i, c)
    target = torch.einsum("bic,oic->bio", basis, coef.to(basis.dtype))     # (n, i, o): phi_oi(x_i)
    new = splines.fit_coefficients(x, target, new_grid, order)             # (i, o, c')
    return new.transpose(0, 1).to(coef)                                    # (o, i, c')


def _knot_at(knots: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Positions at fractional knot indices u (i, n) of knots (i, m): piecewise linear between
    the knots, continued past the ends with the end spacing."""
    m = knots.shape[1]
    cell = u.floor().clamp(0, m - 2)
    j = cell.long()
    frac = u - cell                                                        # outside: < 0 or > 1
    left, right = knots.gather(1, j), knots.gather(1, j + 1)
    return left + (right - left) * frac


def _knot_index(knots: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The fractional knot index of x (i,) in knots (i, m): the inverse of _knot_at."""
    m = knots.shape[1]
    j = (torch.searchsorted(knots, x.unsqueeze(1), right=True) - 1).clamp(0, m - 2)  # (i, 1)
    left, right = knots.gather(1, j), knots.gather(1, j + 1)
    width = torch.where(right > left, right - left, 1.0)  # a repeated knot: its own index
    return (j + (x.unsqueeze(1) - left) / width).squeeze(1)
