"""Dense against a naive per-edge numpy loop, SIREN and Xavier init ranges, and bad input."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from scipy.special import erf

from kanlab.layers.dense import ACTIVATIONS, Dense

OMEGA = 7.5
NUMPY_ACTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "silu": lambda z: z / (1.0 + np.exp(-z)),
    "gelu": lambda z: 0.5 * z * (1.0 + erf(z / math.sqrt(2.0))),
    "sine": lambda z: np.sin(OMEGA * z),
    "identity": lambda z: z,
}
SWITCHES = list(itertools.product(ACTIVATIONS, [True, False]))


def make(activation: str, bias: bool, n_in: int = 3, n_out: int = 4) -> Dense:
    torch.manual_seed(0)
    layer = Dense(n_in, n_out, activation, bias=bias, omega_0=OMEGA).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-0.8, 0.8)
    return layer


def naive_forward(layer: Dense, x: np.ndarray) -> np.ndarray:
    """y_o = act(sum_i w_oi x_i + b_o), one edge at a time."""
    w = layer.weight.detach().numpy()
    z = np.zeros((x.shape[0], layer.out_features))
    for o in range(layer.out_features):
        for i in range(layer.in_features):
            z[:, o] += w[o, i] * x[:, i]
        if layer.bias is not None:
            z[:, o] += layer.bias[o].item()
    return NUMPY_ACTS[layer.activation](z)


def inputs(n: int = 31, n_in: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, n_in, generator=g, dtype=torch.float64) * 6.0 - 3.0
    x[0] = 0.0
    return x


def test_activations_tuple() -> None:
    assert ACTIVATIONS == ("tanh", "relu", "silu", "gelu", "sine", "identity")


@pytest.mark.parametrize(("activation", "bias"), SWITCHES)
def test_forward_equals_naive_loop_and_edges_sum_to_preactivation(activation: str, bias: bool) -> None:
    layer = make(activation, bias)
    x = inputs()
    y = layer(x)
    np.testing.assert_allclose(y.detach().numpy(), naive_forward(layer, x.numpy()), rtol=0, atol=1e-10)
    resp = layer.edge_responses(x)
    assert resp.shape == (31, 4, 3)
    np.testing.assert_allclose(
        resp.detach().numpy(), x.numpy()[:, None, :] * layer.weight.detach().numpy()[None], rtol=0, atol=0
    )
    z = resp.sum(-1) + (0.0 if layer.bias is None else layer.bias)
    expected = torch.from_numpy(NUMPY_ACTS[activation](z.detach().numpy()))
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("activation", "bias"), SWITCHES)
def test_gradcheck_inputs_and_parameters(activation: str, bias: bool) -> None:
    layer = make(activation, bias, n_in=3, n_out=2)
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())
    x = inputs(6)[1:]  # not the zero row: relu's kink
    if activation == "relu":  # keep clear of the kink, where finite differences disagree
        with torch.no_grad():
            z = torch.nn.functional.linear(x, *params) if bias else x @ params[0].T
        assert z.abs().min() > 1e-3
    x.requires_grad_(True)

    def fn(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params))


@pytest.mark.parametrize(("activation", "bias"), SWITCHES)
def test_num_params(activation: str, bias: bool) -> None:
    first = activation == "sine"
    layer = Dense(7, 5, activation, bias=bias, first=first, omega_0=3.0)
    expected = 35 + (5 if bias else 0)
    assert sum(p.numel() for p in layer.parameters()) == expected
    counted = Dense.num_params(7, 5, activation, bias=bias, first=first, omega_0=3.0, check_finite=False)
    assert counted == expected


@pytest.mark.parametrize("omega_0", [30.0, 5.0])
def test_siren_init_ranges(omega_0: float) -> None:
    n_in = 64
    first = Dense(n_in, 256, "sine", first=True, omega_0=omega_0)
    hidden = Dense(n_in, 256, "sine", omega_0=omega_0)
    first_bound, hidden_bound = 1.0 / n_in, math.sqrt(6.0 / n_in) / omega_0
    assert 0.99 * first_bound < first.weight.abs().max() <= first_bound
    assert 0.99 * hidden_bound < hidden.weight.abs().max() <= hidden_bound
    assert abs(first_bound - hidden_bound) > 0.1 * min(first_bound, hidden_bound)
    # The bias keeps nn.Linear's range, as in the SIREN reference code.
    for layer in (first, hidden):
        assert layer.bias is not None and layer.bias.abs().max() <= 1.0 / math.sqrt(n_in)


def test_tanh_xavier_and_default_init_ranges() -> None:
    tanh = Dense(64, 192, "tanh")
    xavier = math.sqrt(6.0 / (64 + 192))
    assert 0.99 * xavier < tanh.weight.abs().max() <= xavier
    assert tanh.bias is not None and torch.all(tanh.bias == 0)
    for act in ("relu", "silu", "gelu", "identity"):
        layer = Dense(64, 192, act)
        assert 0.99 / 8 < layer.weight.abs().max() <= 1 / 8
        assert layer.bias is not None and 0.9 / 8 < layer.bias.abs().max() <= 1 / 8


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_and_float64_agree_and_double_keeps_working(activation: str) -> None:
    layer32 = Dense(3, 4, activation, omega_0=OMEGA)
    x = inputs()
    y32 = layer32(x.float())
    assert y32.dtype == torch.float32
    layer64 = copy.deepcopy(layer32).double()
    y64 = layer64(x)
    assert y64.dtype == torch.float64 and layer64.edge_responses(x).dtype == torch.float64
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y64.detach().numpy(), naive_forward(layer64, x.numpy()), rtol=0, atol=1e-10)
    assert Dense(3, 4, activation, dtype=torch.float64)(x).dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "swish"},
         "unknown activation 'swish'; allowed: tanh, relu, silu, gelu, sine, identity"),
        ({"omega_0": 0.0}, "omega_0 must be a finite number > 0, e.g. 30.0, got 0.0"),
        ({"omega_0": -1}, "omega_0 must be a finite number > 0, e.g. 30.0, got -1"),
        ({"omega_0": float("nan")}, "omega_0 must be a finite number > 0, e.g. 30.0, got nan"),
        ({"omega_0": "30"}, "omega_0 must be a finite number > 0, e.g. 30.0, got '30'"),
        ({"first": True},
         "first=True selects SIREN's first-layer init and needs activation='sine', got 'tanh'"),
        ({"bias": "yes"}, "bias must be True or False, got 'yes'"),
        ({"check_finite": None}, "check_finite must be True or False, got None"),
    ],
)
def test_bad_options_name_the_value(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Dense(3, 2, **kwargs)


def test_bad_widths_and_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="in_features must be an integer >= 1, got 0"):
        Dense(0, 2)
    with pytest.raises(ValueError, match="out_features must be an integer >= 1, got 2.0"):
        Dense(3, 2.0)
    layer = Dense(3, 2)
    for method in (layer, layer.edge_responses):
        with pytest.raises(ValueError, match=r"Dense expects input of shape \(batch, 3\), got \(4, 2\)"):
            method(torch.zeros(4, 2))
    x = torch.zeros(4, 3)
    x[1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"Dense got a non-finite input \(first at index \[1, 2\]\)"):
        layer(x)
    x[1, 2] = float("nan")
    fast = Dense(3, 2, check_finite=False)
    y = fast(x)
    assert torch.isnan(y[1]).all() and torch.isfinite(y[[0, 2, 3]]).all()
    for method in (layer, layer.edge_responses):
        with pytest.raises(TypeError, match="Dense got a torch.int64 input but its parameters are "
                                            r"torch.float32: convert the input \(x.to\(torch.float32\)\)"):
            method(torch.zeros(4, 3, dtype=torch.int64))


def test_extra_repr_shows_options() -> None:
    expected = "Dense(3, 2, activation='relu', bias=False, check_finite=True)"
    assert repr(Dense(3, 2, "relu", bias=False)) == expected
    sine = repr(Dense(3, 2, "sine", omega_0=10, first=True))
    assert "activation='sine', omega_0=10.0, first=True" in sine
