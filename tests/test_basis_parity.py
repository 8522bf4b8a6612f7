"""Every B-spline basis evaluator against scipy's BSpline, on the same inputs.

The evaluators: splines.bspline_basis (Cox-de Boor, the reference path), splines.uniform_bspline_basis
(closed form, the "uniform" path and KANLinear.basis), splines.uniform_dense_basis (the same closed
form as a where() chain, which the compiled path traces; its slopes too), _fast.local_basis (the
dense and gather paths' order + 1 local values; closed form on a uniform grid, de Boor on any
other) and the C kernels' local basis (_native.h, through _native_gather.basis; orders 2..5, the
others fall back to local_basis). The inputs: random points,
every knot, the grid's ends, points just inside and outside them, and points beyond the whole knot
vector (where every basis is zero), orders 0..5, on a uniform grid and on a moved one.

scipy's design matrix needs its points inside the knot vector's base interval: the knots are
extended past every point on both sides and the columns of the original bases are read off (a basis
depends only on its own k + 2 knots). Both use half-open intervals [t_j, t_{j+1}), which decides
the values of orders 0 and 1 at the knots.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanlab import splines
from kanlab.layers.kan import _fast, _native_gather, native_build

GRID, RANGE = 6, (-1.0, 1.0)


def knots(order: int, uniform: bool) -> torch.Tensor:
    """(2, m) float64 knots of two inputs: uniform on RANGE, or moved (as update_grid leaves them)."""
    t = splines.uniform_grid(GRID, order, RANGE).double()
    if not uniform:
        t = t + 0.03 * torch.sin(3.0 * torch.arange(t.shape[0], dtype=torch.float64))
    return torch.stack([t, 1.5 * t + 0.25])                                # (2, m)


def points(t: torch.Tensor) -> torch.Tensor:
    """(n, 2): per input its knots, its ends +- 1e-9, points beyond the knots, and random points."""
    cols = []
    for row in t:
        lo, hi = float(row[0]), float(row[-1])
        extra = torch.tensor([lo - 1.0, lo - 1e-9, hi - 1e-9, hi, hi + 1e-9, hi + 1.0], dtype=torch.float64)
        rand = torch.rand(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        cols.append(torch.cat([row, extra, lo - 0.2 + (hi - lo + 0.4) * rand]))
    return torch.stack(cols, 1)                                            # (n, 2)


def scipy_basis(x: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    """(n, m - k - 1) values of the bases on knots t at x, by scipy on a wider knot vector."""
    h = t[-1] - t[-2]
    pad = k + 3 + int(np.ceil(1.5 / h))  # past the points beyond the knots (points: 1.0 out)
    wide = np.concatenate([t[0] - h * np.arange(pad, 0, -1), t, t[-1] + h * np.arange(1, pad + 1)])
    dm = BSpline.design_matrix(x, wide, k).toarray()                     # (n, len(wide) - k - 1)
    return dm[:, pad: pad + len(t) - k - 1]


def dense_from_local(start: torch.Tensor, values: torch.Tensor, c: int) -> torch.Tensor:
    """(b, i, c) from the first index (b, i) and the k + 1 local values (b, i, k + 1)."""
    b, i, k1 = values.shape
    index = start.unsqueeze(-1) + torch.arange(k1)                        # (b, i, k + 1)
    inside = (index >= 0) & (index < c)
    out = torch.zeros(b, i, c + 1, dtype=values.dtype)
    return out.scatter_add(-1, torch.where(inside, index, c), values * inside)[..., :c]


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("order", range(6))
def test_every_evaluator_matches_scipy(order: int, uniform: bool) -> None:
    t = knots(order, uniform)
    x = points(t)                                                          # (b, i)
    c = t.shape[1] - order - 1
    want = torch.stack([torch.from_numpy(scipy_basis(x[:, n].numpy(), t[n].numpy(), order))
                        for n in range(2)], 1)                             # (b, i, c)
    got = {"bspline_basis": splines.bspline_basis(x, t, order)}
    start, values, _ = _fast.local_basis(x, t, order, uniform)
    got["local_basis"] = dense_from_local(start, values.permute(1, 2, 0), c)
    if uniform:
        got["uniform_bspline_basis"] = splines.uniform_bspline_basis(x, t, order)
        # uniform_bspline_basis hands orders 0 and 1 to bspline_basis; the closed form itself
        # (the compiled path's, orders 2..5) is checked at every order on points off the knots
        off = torch.isclose(x.unsqueeze(-1), t.unsqueeze(0), rtol=0, atol=1e-9).any(-1).any(-1)
        dense, slope = splines.uniform_dense_basis(x[~off], t, order, slope=True)
        got_off = {"uniform_dense_basis": dense}
        want_off = want[~off]
        # its slopes against autograd through the Cox-de Boor recursion, column by column
        xr = x[~off].clone().requires_grad_(True)
        ref = splines.bspline_basis(xr, t, order)
        dref = torch.stack([torch.autograd.grad(ref[..., n].sum(), xr, retain_graph=True)[0]
                            for n in range(c)], -1)
        assert slope is not None
        torch.testing.assert_close(slope, dref, rtol=0, atol=1e-10, msg=f"slopes, order {order}")
        for name, basis in got_off.items():
            torch.testing.assert_close(basis, want_off, rtol=0, atol=1e-12, msg=f"{name}, order {order}")
    lib = native_build.library(torch.float64)
    if lib is not None and order >= 2:
        first, cvalues, _ = _native_gather.basis(lib, x, t, order, uniform, derivative=False)
        width = t.shape[1] + order + 1                                     # table rows per input
        cstart = first.T - (order + 1) - torch.arange(2) * width           # (b, i)
        got["C local_basis"] = dense_from_local(cstart, cvalues.permute(1, 0, 2), c)
    # at the knots orders 0 and 1 must take the same side; higher orders are continuous there
    atol = 0.0 if order <= 1 else 1e-12
    for name, basis in got.items():
        torch.testing.assert_close(basis, want, rtol=0, atol=atol + 1e-14, msg=f"{name}, order {order}")


def test_the_uniform_contract_puts_each_point_in_its_cell() -> None:
    # splines.uniform_cells against exact comparisons with the knots (searchsorted), away from the
    # knots themselves (where round-off in u may pick either side; orders >= 2 are continuous there)
    t = knots(3, uniform=True)                                             # (2, m)
    m = t.shape[1]
    x = points(t)                                                          # (b, 2)
    cell, s, inv_h = splines.uniform_cells(x, t)
    want = (torch.searchsorted(t, x.T.contiguous(), right=True) - 1).T.clamp(-1, m - 1)
    gap = (x.unsqueeze(-1) - t.unsqueeze(0)).abs().min(-1).values         # distance to the nearest knot
    away = gap > 1e-6
    assert away.sum() > 40 and torch.equal(cell.long()[away], want[away])
    torch.testing.assert_close(inv_h, (m - 1) / (t[:, -1] - t[:, 0]), rtol=0, atol=0)
    inside = away & (x > t[:, 0]) & (x < t[:, -1])
    rebuilt = t[:, 0] + (cell + s) / inv_h                                 # x from its cell and offset
    torch.testing.assert_close(rebuilt[inside], x[inside], rtol=0, atol=1e-12)
    assert bool(((s >= 0) & (s < 1)).all())
    beyond = x < t[:, 0] - 1 / inv_h  # clamped: u = -1 exactly, every basis of cell -1 dropped
    assert beyond.any() and bool((cell[beyond] == -1).all()) and bool((s[beyond] == 0).all())
    # a NaN stays NaN and keeps ds/dx = 1 / h (the "uniform" path differentiates through s: its
    # NaN reaches x's gradient), where a point clamped off the grid has ds/dx = 0
    xn = torch.tensor([[float("nan"), 0.3], [5.0, -9.0]], dtype=torch.float64, requires_grad=True)
    cell_n, s_n, _ = splines.uniform_cells(xn, t)
    assert torch.isnan(cell_n[0, 0]) and torch.isnan(s_n[0, 0]) and not torch.isnan(s_n[0, 1])
    (grad,) = torch.autograd.grad(s_n.sum(), xn)
    assert grad[0].tolist() == inv_h.tolist() and grad[1].tolist() == [0.0, 0.0]
