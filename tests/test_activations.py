"""TanhQuadratic, RBFKAN, ChebyshevKAN, FourierKAN against naive per-edge numpy loops, plus bad input."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev

from kanlab.layers.activations import RBFKAN, ChebyshevKAN, FourierKAN
from kanlab.layers.tanh_quadratic import TanhQuadratic

NUMPY_BASES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "silu": lambda v: v / (1.0 + np.exp(-v)),
    "identity": lambda v: v,
    "tanh": np.tanh,
}


def arr(p: torch.Tensor | None) -> np.ndarray:
    assert p is not None
    return p.detach().numpy()


# ---- naive references, one edge at a time, written from the formulas ----------------------
def naive_tanh_quadratic(layer: TanhQuadratic, x: np.ndarray) -> np.ndarray:
    a, b = arr(layer.quad_weight), arr(layer.lin_weight)
    out = np.zeros((x.shape[0], layer.out_features))
    for o in range(layer.out_features):
        for i in range(layer.in_features):
            q = a[o, i] * x[:, i] ** 2 + b[o, i] * x[:, i]
            out[:, o] += q if layer.after_sum else np.tanh(q)
    if layer.bias is not None:
        out += arr(layer.bias)
    return np.tanh(out) if layer.after_sum else out


def naive_rbf(layer: RBFKAN, x: np.ndarray) -> np.ndarray:
    lo, hi = layer.grid_range
    mu = np.linspace(lo, hi, layer.grid_size)
    h = mu[1] - mu[0]
    w = arr(layer.coef)
    out = np.zeros((x.shape[0], layer.out_features))
    for o in range(layer.out_features):
        for i in range(layer.in_features):
            for c in range(layer.grid_size):
                out[:, o] += w[o, i, c] * np.exp(-(((x[:, i] - mu[c]) / h) ** 2))
            if layer.base is not None:
                out[:, o] += arr(layer.base_weight)[o, i] * NUMPY_BASES[layer.base](x[:, i])
    if layer.bias is not None:
        out += arr(layer.bias)
    return out


def naive_chebyshev(layer: ChebyshevKAN, x: np.ndarray) -> np.ndarray:
    coef = arr(layer.coef)
    out = np.zeros((x.shape[0], layer.out_features))
    for o in range(layer.out_features):
        for i in range(layer.in_features):
            out[:, o] += chebyshev.chebval(np.tanh(x[:, i]), coef[o, i])
    if layer.bias is not None:
        out += arr(layer.bias)
    return out


def naive_fourier(layer: FourierKAN, x: np.ndarray) -> np.ndarray:
    a, b = arr(layer.cos_coef), arr(layer.sin_coef)
    out = np.zeros((x.shape[0], layer.out_features))
    for o in range(layer.out_features):
        for i in range(layer.in_features):
            for k in range(1, layer.frequencies + 1):
                out[:, o] += a[o, i, k - 1] * np.cos(k * x[:, i]) + b[o, i, k - 1] * np.sin(k * x[:, i])
    if layer.bias is not None:
        out += arr(layer.bias)
    return out


# (name, constructor kwargs, naive reference); every switch combination of each family.
CASES: list[tuple[str, Any, dict[str, Any], Callable[..., np.ndarray]]] = []
for bias, after_sum in itertools.product([True, False], [True, False]):
    CASES.append(("tanhquad", TanhQuadratic, {"bias": bias, "after_sum": after_sum}, naive_tanh_quadratic))
for bias, base, (g, rng) in itertools.product(
    [True, False], ["silu", None, "identity", "tanh"], [(8, (-1.0, 1.0)), (2, (-2.0, 1.5)), (5, (0.0, 3.0))]
):
    CASES.append(("rbf", RBFKAN, {"grid_size": g, "grid_range": rng, "bias": bias, "base": base}, naive_rbf))
for bias, degree in itertools.product([True, False], [0, 1, 2, 4, 7]):
    CASES.append(("chebyshev", ChebyshevKAN, {"degree": degree, "bias": bias}, naive_chebyshev))
for bias, k in itertools.product([True, False], [1, 3, 6]):
    CASES.append(("fourier", FourierKAN, {"frequencies": k, "bias": bias}, naive_fourier))
IDS = [f"{name}-{kw}" for name, _, kw, _ in CASES]


def make(cls: Any, kwargs: dict[str, Any], n_in: int = 3, n_out: int = 2) -> Any:
    """A float64 layer with every parameter (biases too) drawn away from its init."""
    torch.manual_seed(0)
    layer = cls(n_in, n_out, **kwargs).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-0.8, 0.8)
    return layer


def inputs(n: int = 29, n_in: int = 3, seed: int = 0) -> torch.Tensor:
    # Inside and well outside [-1, 1], zero, and large values where tanh saturates.
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, n_in, generator=g, dtype=torch.float64) * 5.0 - 2.5
    x[0], x[1], x[2] = -1.0, 1.0, 0.0
    x[3, 0], x[4, 0] = 25.0, -25.0
    return x


@pytest.mark.parametrize(("name", "cls", "kwargs", "naive"), CASES, ids=IDS)
def test_forward_equals_naive_per_edge_loop(name: str, cls: Any, kwargs: dict[str, Any], naive: Any) -> None:
    layer = make(cls, kwargs)
    x = inputs()
    np.testing.assert_allclose(layer(x).detach().numpy(), naive(layer, x.numpy()), rtol=0, atol=1e-10)


@pytest.mark.parametrize(("name", "cls", "kwargs", "naive"), CASES, ids=IDS)
def test_edge_responses_sum_to_forward(name: str, cls: Any, kwargs: dict[str, Any], naive: Any) -> None:
    layer = make(cls, kwargs, n_in=4, n_out=3)
    x = inputs(n_in=4)
    resp = layer.edge_responses(x)
    assert resp.shape == (x.shape[0], 3, 4)
    node = resp.sum(-1) + (0.0 if layer.bias is None else layer.bias)
    if kwargs.get("after_sum"):
        node = torch.tanh(node)
    torch.testing.assert_close(layer(x), node, rtol=0, atol=1e-12)


GRAD_CASES = [
    (TanhQuadratic, {}), (TanhQuadratic, {"after_sum": True}), (TanhQuadratic, {"bias": False}),
    (RBFKAN, {"grid_size": 4}), (RBFKAN, {"grid_size": 3, "base": None, "bias": False}),
    (ChebyshevKAN, {"degree": 3}), (ChebyshevKAN, {"degree": 0, "bias": False}),
    (FourierKAN, {"frequencies": 2}), (FourierKAN, {"frequencies": 1, "bias": False}),
]


@pytest.mark.parametrize(("cls", "kwargs"), GRAD_CASES, ids=str)
def test_gradcheck_inputs_and_parameters(cls: Any, kwargs: dict[str, Any]) -> None:
    layer = make(cls, kwargs, n_in=3, n_out=2)
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())
    x = inputs(6).requires_grad_(True)

    def fn(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_chebyshev_gradient_is_finite_where_tanh_saturates() -> None:
    # tanh(+-40) rounds to +-1 in float64, where d/dt cos(k arccos t) would be 0 * inf.
    layer = make(ChebyshevKAN, {"degree": 5})
    x = torch.tensor([[40.0, -40.0, 0.3]], dtype=torch.float64, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize(
    ("cls", "args", "kwargs", "expected"),
    [
        (TanhQuadratic, (), {}, 2 * 12 + 4),
        (TanhQuadratic, (), {"bias": False, "after_sum": True}, 2 * 12),
        (RBFKAN, (), {}, 12 * 9 + 4),
        (RBFKAN, (5, (-2.0, 2.0)), {"base": None}, 12 * 5 + 4),
        (RBFKAN, (2,), {"bias": False, "base": "tanh"}, 12 * 3),
        (ChebyshevKAN, (), {}, 12 * 5 + 4),
        (ChebyshevKAN, (0,), {"bias": False}, 12),
        (FourierKAN, (), {}, 12 * 8 + 4),
        (FourierKAN, (3,), {"bias": False, "check_finite": False}, 12 * 6),
    ],
    ids=str,
)
def test_num_params_matches_built_layer(
    cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any], expected: int
) -> None:
    layer = cls(3, 4, *args, **kwargs)
    assert sum(p.numel() for p in layer.parameters()) == expected
    assert cls.num_params(3, 4, *args, **kwargs) == expected


@pytest.mark.parametrize(("name", "cls", "kwargs", "naive"), CASES[::3], ids=IDS[::3])
def test_float32_and_float64_agree_and_double_keeps_working(
    name: str, cls: Any, kwargs: dict[str, Any], naive: Any
) -> None:
    torch.manual_seed(0)
    layer32 = cls(3, 2, **kwargs)
    assert all(p.dtype == torch.float32 for p in layer32.parameters())
    x = inputs()
    y32 = layer32(x.float())
    assert y32.dtype == torch.float32 and layer32.edge_responses(x.float()).dtype == torch.float32
    layer64 = copy.deepcopy(layer32).double()
    y64 = layer64(x)
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y64.detach().numpy(), naive(layer64, x.numpy()), rtol=0, atol=1e-10)
    built64 = cls(3, 2, dtype=torch.float64, **kwargs)
    assert built64(x).dtype == torch.float64


@pytest.mark.parametrize(("cls", "bound"), [(TanhQuadratic, 1 / 4), (RBFKAN, 1 / 4)])
def test_uniform_init_bounds_and_zero_bias(cls: Any, bound: float) -> None:
    layer = cls(16, 32)
    for name, p in layer.named_parameters():
        if name == "bias":
            assert torch.all(p == 0)
        else:
            assert 0.9 * bound < p.abs().max() <= bound


@pytest.mark.parametrize(("cls", "arg", "names"), [
    (ChebyshevKAN, 3, ["coef"]), (FourierKAN, 5, ["cos_coef", "sin_coef"]),
])
def test_normal_init_std(cls: Any, arg: int, names: list[str]) -> None:
    layer = cls(40, 50, arg)
    per_input = arg + 1 if cls is ChebyshevKAN else arg
    for name in names:
        std = getattr(layer, name).std().item()
        assert abs(std * (40 * per_input) ** 0.5 - 1.0) < 0.05
    assert torch.all(layer.bias == 0)


@pytest.mark.parametrize(("cls", "kwargs", "match"), [
    (ChebyshevKAN, {"degree": -1}, "degree must be an integer >= 0, got -1"),
    (ChebyshevKAN, {"degree": 2.5}, "degree must be an integer >= 0, got 2.5"),
    (FourierKAN, {"frequencies": 0}, "frequencies must be an integer >= 1, got 0"),
    (FourierKAN, {"frequencies": True}, "frequencies must be an integer >= 1, got True"),
    (RBFKAN, {"grid_size": 1}, "grid_size must be an integer >= 2, got 1"),
    (RBFKAN, {"grid_range": (1.0, 1.0)}, r"grid_range must be finite with lo < hi, got \(1.0, 1.0\)"),
    (RBFKAN, {"grid_range": (2.0, -2.0)}, r"grid_range must be finite with lo < hi, got \(2.0, -2.0\)"),
    (RBFKAN, {"grid_range": (0.0, float("inf"))}, r"finite with lo < hi, got \(0.0, inf\)"),
    (RBFKAN, {"grid_range": "wide"}, "grid_range must be a pair"),
    (RBFKAN, {"base": "relu6"}, "unknown base 'relu6'; allowed: silu, identity, tanh"),
    (TanhQuadratic, {"after_sum": "yes"}, "after_sum must be True or False, got 'yes'"),
    (FourierKAN, {"bias": 1}, "bias must be True or False, got 1"),
])
def test_bad_options_name_the_value(cls: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(3, 2, **kwargs)


@pytest.mark.parametrize("cls", [TanhQuadratic, RBFKAN, ChebyshevKAN, FourierKAN])
def test_bad_widths_and_inputs_are_named(cls: Any) -> None:
    with pytest.raises(ValueError, match="in_features must be an integer >= 1, got 0"):
        cls(0, 2)
    with pytest.raises(ValueError, match="out_features must be an integer >= 1, got -3"):
        cls(3, -3)
    layer = cls(3, 2)
    name = cls.__name__
    for method in (layer, layer.edge_responses):
        with pytest.raises(ValueError, match=rf"{name} expects input of shape \(batch, 3\), got \(4, 2\)"):
            method(torch.zeros(4, 2))
    x = torch.zeros(4, 3)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match=rf"{name} got a non-finite input \(first at index \[2, 1\]\)"):
        layer(x)
    fast = cls(3, 2, check_finite=False)
    assert torch.isnan(fast(x)[2]).all() and torch.isfinite(fast(x)[[0, 1, 3]]).all()
    for method in (layer, layer.edge_responses):
        with pytest.raises(TypeError, match=rf"{name} got a torch.float64 input but its parameters are "
                                            r"torch.float32: convert the input \(x.to\(torch.float32\)\)"):
            method(torch.zeros(4, 3, dtype=torch.float64))


def test_extra_repr_shows_options() -> None:
    assert "after_sum=True, bias=False" in repr(TanhQuadratic(3, 2, bias=False, after_sum=True))
    assert "grid_size=6, grid_range=(-2.0, 2.0), base=None" in repr(RBFKAN(3, 2, 6, (-2, 2), base=None))
    assert "degree=3" in repr(ChebyshevKAN(3, 2, 3))
    assert "frequencies=2, bias=True, check_finite=False" in repr(FourierKAN(3, 2, 2, check_finite=False))
