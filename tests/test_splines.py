"""B-spline basis and fitting against scipy.interpolate.BSpline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import BSpline

from kanlab import splines

ORDERS = range(6)


def random_knots(rng: np.random.Generator, m: int) -> np.ndarray:
    return np.sort(rng.uniform(-3.0, 3.0, size=m))


def scipy_design(x: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    """Every basis on its own support (nan outside it -> 0): valid inside and outside the base interval."""
    n = len(t) - k - 1
    cols = [BSpline.basis_element(t[j : j + k + 2], extrapolate=False)(x) for j in range(n)]
    return np.nan_to_num(np.stack(cols, axis=-1))


def knot_vectors(k: int) -> list[np.ndarray]:
    rng = np.random.default_rng(k)
    return [splines.uniform_grid(5, k, (-1.0, 2.0)).numpy(), random_knots(rng, 12 + k)]


def test_uniform_grid_is_the_extended_range() -> None:
    t = splines.uniform_grid(4, 3, (-1.0, 1.0))
    np.testing.assert_allclose(t.numpy(), -1.0 + 0.5 * np.arange(-3, 8), rtol=0, atol=1e-15)
    assert len(t) == 4 + 2 * 3 + 1


@pytest.mark.parametrize("k", ORDERS)
def test_basis_matches_scipy_inside_base_interval(k: int) -> None:
    rng = np.random.default_rng(100 + k)
    for t in knot_vectors(k):
        n = len(t) - k - 1
        x = rng.uniform(t[k], t[n], size=300)
        ref = BSpline(t, np.eye(n), k, extrapolate=False)(x)
        got = splines.bspline_basis(torch.from_numpy(x), torch.from_numpy(t), k).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got.sum(-1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", ORDERS)
def test_basis_outside_base_interval_is_the_natural_tail_then_zero(k: int) -> None:
    rng = np.random.default_rng(200 + k)
    for t in knot_vectors(k):
        x = np.concatenate([rng.uniform(t[0] - 1, t[k], 50), rng.uniform(t[-k - 1], t[-1] + 1, 50)])
        got = splines.bspline_basis(torch.from_numpy(x), torch.from_numpy(t), k).numpy()
        np.testing.assert_allclose(got, scipy_design(x, t, k), rtol=0, atol=1e-12)
        beyond = (x < t[0]) | (x >= t[-1])
        assert beyond.any() and np.all(got[beyond] == 0.0)


@pytest.mark.parametrize("k", range(1, 6))
def test_basis_at_the_knots_matches_scipy(k: int) -> None:
    for t in knot_vectors(k):
        n = len(t) - k - 1
        x = t[k : n + 1]  # every knot of the base interval, both ends included
        ref = BSpline(t, np.eye(n), k, extrapolate=False)(x)
        got = splines.bspline_basis(torch.from_numpy(x), torch.from_numpy(t), k).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(0, 5),
    extra=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
)
def test_partition_of_unity(k: int, extra: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = random_knots(rng, 2 * k + 1 + extra)
    n = len(t) - k - 1
    x = rng.uniform(t[k], t[n], size=50)
    x = x[x < t[n]]
    got = splines.bspline_basis(torch.from_numpy(x), torch.from_numpy(t), k)
    np.testing.assert_allclose(got.sum(-1).numpy(), 1.0, rtol=0, atol=1e-12)
    assert bool((got >= -1e-15).all())


def test_repeated_knots_are_handled_like_scipy() -> None:
    t = np.array([0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0])  # clamped, a double knot
    k = 3
    x = np.linspace(0.0, 0.999, 57)
    ref = BSpline(t, np.eye(len(t) - k - 1), k, extrapolate=False)(x)
    got = splines.bspline_basis(torch.from_numpy(x), torch.from_numpy(t), k).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", ORDERS)
def test_uniform_fast_path_equals_general_path(k: int) -> None:
    t = splines.uniform_grid(7, k, (-1.5, 0.5))
    rng = np.random.default_rng(k)
    x = np.concatenate([rng.uniform(-4.0, 3.0, 500), t.numpy() if k > 0 else []])
    x64 = torch.from_numpy(x)
    fast = splines.uniform_bspline_basis(x64, t, k)
    ref = splines.bspline_basis(x64, t, k)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)
    fast32 = splines.uniform_bspline_basis(x64.float(), t.float(), k)
    torch.testing.assert_close(fast32, ref.float(), rtol=0, atol=1e-5)


def test_per_row_knots_broadcast_against_inputs() -> None:
    grids = torch.stack([splines.uniform_grid(5, 3, (-1.0, 1.0)), splines.uniform_grid(5, 3, (0.0, 3.0))])
    x = torch.tensor([[0.3, 2.5], [-0.9, 0.1]], dtype=torch.float64)  # (b, i)
    got = splines.bspline_basis(x, grids, 3)  # (b, i, c)
    for i in range(2):
        ref = scipy_design(x[:, i].numpy(), grids[i].numpy(), 3)
        np.testing.assert_allclose(got[:, i].numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(splines.uniform_bspline_basis(x, grids, 3).numpy(), got.numpy(), atol=1e-12)


@pytest.mark.parametrize("k", range(1, 6))
def test_basis_derivative_matches_scipy(k: int) -> None:
    t = knot_vectors(k)[1]
    n = len(t) - k - 1
    x = torch.from_numpy(np.random.default_rng(k).uniform(t[k], t[n], 40)).requires_grad_(True)
    coef = np.random.default_rng(7).normal(size=n)
    y = (splines.bspline_basis(x, torch.from_numpy(t), k) @ torch.from_numpy(coef)).sum()
    (grad,) = torch.autograd.grad(y, x)
    ref = BSpline(t, coef, k).derivative()(x.detach().numpy())
    np.testing.assert_allclose(grad.numpy(), ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("fn", [splines.bspline_basis, splines.uniform_bspline_basis])
def test_basis_gradcheck(fn) -> None:  # type: ignore[no-untyped-def]
    t = splines.uniform_grid(4, 3)
    x = torch.linspace(-1.13, 1.21, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: fn(v, t, 3), (x,))


def test_fit_coefficients_recovers_a_spline_exactly() -> None:
    rng = np.random.default_rng(3)
    t = torch.from_numpy(random_knots(rng, 14))
    k, n = 3, 14 - 3 - 1
    true = rng.normal(size=(2, n))  # two targets sharing x
    x = np.linspace(t[k].item(), t[n].item() - 1e-9, 400)
    y = np.stack([BSpline(t.numpy(), c, k)(x) for c in true], axis=-1)  # (n, 2)
    got = splines.fit_coefficients(torch.from_numpy(x), torch.from_numpy(y), t, k)
    np.testing.assert_allclose(got.numpy(), true, atol=1e-9)


def test_fit_coefficients_batched_per_problem_knots() -> None:
    g = splines.uniform_grid(6, 2, (-1.0, 1.0))
    both = torch.stack([g, g + 1.0])  # one knot vector per input
    x = torch.stack([torch.linspace(-1, 0.999, 200), torch.linspace(0, 1.999, 200)], 1).double()
    true = torch.randn(2, 3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    basis = splines.bspline_basis(x, both, 2)  # (n, 2, 8)
    y = torch.einsum("nic,ioc->nio", basis, true)  # (n, 2, 3): three targets per input
    got = splines.fit_coefficients(x, y, both, 2)
    torch.testing.assert_close(got, true, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grid_size": 0, "order": 3}, "grid_size"),
        ({"grid_size": 5, "order": -1}, "order"),
        ({"grid_size": 5, "order": 6}, "order"),
        ({"grid_size": 5, "order": 3, "grid_range": (1.0, 1.0)}, "lo < hi"),
        ({"grid_size": 5, "order": 3, "grid_range": (1.0, -1.0)}, "lo < hi"),
        ({"grid_size": 5, "order": 3, "grid_range": (0.0, float("inf"))}, "finite"),
    ],
)
def test_bad_grid_arguments_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        splines.uniform_grid(**kwargs)


@pytest.mark.parametrize("k", ORDERS)
def test_cell_polynomials_are_scipys_bases_on_each_interval(k: int) -> None:
    rng = np.random.default_rng(10 + k)
    t = random_knots(rng, 11 + k)
    t[5] = t[4]  # a repeated knot: an empty interval
    polys = splines.cell_polynomials(torch.from_numpy(t), k).numpy()     # (m - 1, k + 1, k + 1)
    n = len(t) - k - 1
    for j in range(len(t) - 1):
        if t[j + 1] == t[j]:
            assert not polys[j].any()
            continue
        s = np.linspace(0.0, 1.0, 7, endpoint=False)
        x = t[j] + s * (t[j + 1] - t[j])
        design = scipy_design(x, t, k)                                     # (7, n)
        values = polys[j] @ np.vander(s, k + 1, increasing=True).T         # (k + 1, 7)
        for r in range(k + 1):
            a = j - k + r
            want = design[:, a] if 0 <= a < n else np.zeros_like(s)       # only real bases are kept
            np.testing.assert_allclose(values[r], want, rtol=0, atol=1e-12)


def test_uniform_fast_path_keeps_float32_inputs_exact_at_fine_grids() -> None:
    # u = (x - t0) / h in float32 keeps s to ~1e-7 * grid size only (3.5e-5 relative at grid
    # 500); in the knots' float64 the float32 basis is the float64 basis rounded once.
    t = splines.uniform_grid(500, 3, (-1.0, 1.0))
    x = torch.rand(2000, generator=torch.Generator().manual_seed(0)) * 2 - 1           # float32
    got = splines.uniform_bspline_basis(x, t, 3)
    want = splines.bspline_basis(x.double(), t, 3)
    assert float((got.double() - want).abs().max()) < 1e-7


@pytest.mark.parametrize("k", [0, 1])
def test_uniform_fast_path_is_exact_at_the_knots_where_bases_jump(k: int) -> None:
    # order 0's values and order 1's slopes jump at the knots: the closed form's u = j - 1e-16
    # would take the cell below (off by 1.0 at the knots for order 0)
    t = splines.uniform_grid(10, k, (-1.0, 1.0))
    x = t.clone().requires_grad_(True)
    got = splines.uniform_bspline_basis(x, t, k)
    want = splines.bspline_basis(x, t, k)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    if k == 1:
        (g,) = torch.autograd.grad((got * torch.arange(got.shape[-1])).sum(), x)
        (w,) = torch.autograd.grad((want * torch.arange(want.shape[-1])).sum(), x)
        torch.testing.assert_close(g, w, rtol=0, atol=0)
