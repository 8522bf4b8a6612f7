"""KANLinear against a naive per-edge loop built on scipy, plus grid update/refine and bad input."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanlab import KANLinear
from kanlab.layers.kan.bases import BASES
from kanlab.layers.kan.layer import constructor_options
from kanlab.layers.kan.options import NAMES, POSITIONAL, KANOptions

SWITCHES = list(
    itertools.product([True, False], [True, False], ["silu", "identity", "tanh", None], [True, False])
)
NUMPY_BASES = {
    "silu": lambda v: v / (1.0 + np.exp(-v)),
    "identity": lambda v: v,
    "tanh": np.tanh,
}


def naive_forward(layer: KANLinear, x: np.ndarray) -> np.ndarray:
    """y_o = sum_i [s_oi phi_oi(x_i) + w_oi b(x_i)] + beta_o, one edge at a time with scipy."""
    k = layer.order
    out = np.zeros((x.shape[0], layer.out_features))
    for o in range(layer.out_features):
        for i in range(layer.in_features):
            t = layer.grid[i].detach().numpy()
            c = layer.coef[o, i].detach().numpy()
            # Sum of basis elements: valid inside and outside the base interval.
            phi = sum(
                cj * np.nan_to_num(BSpline.basis_element(t[j : j + k + 2], extrapolate=False)(x[:, i]))
                for j, cj in enumerate(c)
            )
            s = 1.0 if layer.spline_weight is None else layer.spline_weight[o, i].item()
            out[:, o] += s * phi
            if layer.base is not None:
                w = 1.0 if layer.base_weight is None else layer.base_weight[o, i].item()
                out[:, o] += w * NUMPY_BASES[layer.base](x[:, i])
        if layer.bias is not None:
            out[:, o] += layer.bias[o].item()
    return out


def make(switches: tuple, **kwargs) -> KANLinear:  # type: ignore[type-arg]
    bias, spline_weight, base, base_weight = switches
    torch.manual_seed(0)
    return KANLinear(
        3, 2, bias=bias, spline_weight=spline_weight, base=base, base_weight=base_weight,
        init="uniform", **kwargs,
    ).double()


def inputs(n: int = 23, seed: int = 0) -> torch.Tensor:
    # Inside the grid, on knots, at both edges and outside the grid.
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=torch.float64) * 3.2 - 1.6
    x[0], x[1], x[2] = -1.0, 1.0, 0.2
    return x


@pytest.mark.parametrize("path", ["reference", "uniform"])
@pytest.mark.parametrize("switches", SWITCHES, ids=str)
def test_forward_equals_naive_per_edge_loop(switches: tuple, path: str,  # type: ignore[type-arg]
                                           device: torch.device) -> None:
    layer = make(switches, path=path)
    want = naive_forward(layer, inputs().numpy())  # scipy on the CPU copy of the parameters
    layer.to(device)
    x = inputs().to(device)
    np.testing.assert_allclose(layer(x).detach().cpu().numpy(), want, atol=1e-10)
    resp = layer.edge_responses(x)
    bias = 0.0 if layer.bias is None else layer.bias
    torch.testing.assert_close(resp.sum(-1) + bias, layer(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("switches", SWITCHES, ids=str)
def test_parameter_count_is_what_is_switched_on(switches: tuple) -> None:  # type: ignore[type-arg]
    bias, spline_weight, base, base_weight = switches
    layer = KANLinear(3, 2, grid_size=7, order=2, bias=bias, spline_weight=spline_weight,
                      base=base, base_weight=base_weight)
    per_edge = (7 + 2) + spline_weight + (base is not None and base_weight)
    expected = 6 * per_edge + 2 * bias
    assert sum(p.numel() for p in layer.parameters()) == expected
    assert KANLinear.num_params(3, 2, 7, 2, bias=bias, spline_weight=spline_weight, base=base,
                                base_weight=base_weight) == expected


@pytest.mark.parametrize("path", ["reference", "uniform"])
@pytest.mark.parametrize("switches", [SWITCHES[0], (False, False, "tanh", False), (True, True, None, True)])
def test_gradcheck_inputs_and_parameters(switches: tuple, path: str,  # type: ignore[type-arg]
                                         device: torch.device) -> None:
    layer = make(switches, path=path).to(device)
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())
    x = inputs(7).to(device).requires_grad_(True)

    def fn(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_pykan_init_statistics() -> None:
    torch.manual_seed(1)
    layer = KANLinear(16, 8, grid_size=10)
    assert layer.coef.abs().max() <= 0.25 / 10
    assert torch.all(layer.spline_weight == 1.0)  # type: ignore[arg-type]
    bound = 1 / math.sqrt(16)
    assert layer.base_weight.abs().max() <= bound and layer.base_weight.abs().max() > 0.8 * bound  # type: ignore[union-attr]
    assert torch.all(layer.bias == 0)  # type: ignore[arg-type]
    uni = KANLinear(16, 8, init="uniform")
    for p in uni.parameters():
        assert p.abs().max() <= 0.25 and p.abs().max() > 0.2


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_refine_by_integer_factor_preserves_the_function(factor: int) -> None:
    layer = make(SWITCHES[0], grid_size=4)
    x = torch.rand(300, 3, dtype=torch.float64) * 2 - 1  # the grid range
    before = layer(x)
    layer.refine(4 * factor)
    torch.testing.assert_close(layer(x), before, rtol=0, atol=1e-10)
    assert layer.grid_size == 4 * factor and layer.grid.shape == (3, 4 * factor + 7)
    count = sum(p.numel() for p in layer.parameters())
    assert count == KANLinear.num_params(3, 2, 4 * factor, 3)


def test_refine_a_data_adapted_grid_preserves_the_function() -> None:
    layer = make(SWITCHES[0], grid_size=3)
    x = torch.rand(500, 3, dtype=torch.float64) ** 2 * 2 - 1  # skewed: non-uniform quantiles
    layer.update_grid(x, grid_eps=0.0)
    assert not layer.uniform
    before = layer(x)
    layer.refine(9)
    torch.testing.assert_close(layer(x), before, rtol=0, atol=1e-10)


def test_update_grid_moves_knots_to_quantiles_and_keeps_polynomials_exactly() -> None:
    layer = make((True, True, "silu", True), grid_size=5)
    # Every edge a cubic polynomial: representable on any cubic spline grid, so the refit is exact.
    xs = torch.linspace(-1.0, 1.0, 400, dtype=torch.float64)  # the base interval
    poly = torch.stack([xs**3 - xs, 0.5 * xs**2 + 0.1, -xs], 1)  # (n, i)
    with torch.no_grad():
        from kanlab import splines

        for i in range(3):
            c = splines.fit_coefficients(xs, poly[:, i], layer.grid[i], 3)
            layer.coef[:, i] = c
    x = torch.rand(1000, 3, dtype=torch.float64) * 1.6 - 0.7  # inside the old range, off-centre
    before = layer(x)
    layer.update_grid(x, grid_eps=0.0)
    torch.testing.assert_close(layer(x), before, rtol=0, atol=1e-9)
    inner = layer.grid[:, 3:-3]
    ref = torch.sort(x, 0).values[torch.linspace(0, 999, 6).round().long()].T
    torch.testing.assert_close(inner, ref, rtol=0, atol=1e-15)
    assert sum(p.numel() for p in layer.parameters()) == KANLinear.num_params(3, 2, 5, 3)


def test_update_grid_keeps_a_random_spline_close() -> None:
    # A wiggly spline (coefficients +-0.25 on a 5-interval grid) is not in the new spline space,
    # so the refit is approximate. The new knots are data quantiles with spacing close to the old
    # one, so the error is of the order of the spline's local curvature times h^2: measured about
    # 0.5% of the output range; we allow 2%.
    layer = make(SWITCHES[0], grid_size=5)
    x = torch.rand(2000, 3, dtype=torch.float64) * 1.8 - 0.9
    before = layer(x)
    layer.update_grid(x, grid_eps=0.02)
    err = (layer(x) - before).abs().max()
    assert err < 0.02 * (before.max() - before.min())


def test_float32_and_float64_agree_and_state_dict_round_trips() -> None:
    layer = make(SWITCHES[0], grid_size=6)
    x = inputs(50)
    y64 = layer(x)
    y32 = copy.deepcopy(layer).float()(x.float())
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)
    layer.refine(12)
    fresh = KANLinear(3, 2).double()
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=0)
    assert fresh.grid_size == 12 and fresh.uniform


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": -1}, "order"),
        ({"order": 9}, "order"),
        ({"grid_size": 0}, "grid_size"),
        ({"grid_range": (1.0, 1.0)}, "grid_range"),
        ({"grid_range": (2.0, -2.0)}, "grid_range"),
        ({"base": "relu6"}, "unknown base 'relu6'; allowed: silu, identity, tanh"),
        ({"init": "xavier"}, "unknown init"),
        ({"path": "fast"}, "unknown path"),
    ],
)
def test_bad_options_name_the_value(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        KANLinear(3, 2, **kwargs)


def test_bad_inputs_are_named() -> None:
    layer = KANLinear(3, 2)
    with pytest.raises(ValueError, match=r"shape \(batch, 3\), got \(4, 2\)"):
        layer(torch.zeros(4, 2))
    x = torch.zeros(4, 3)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite input \(first at index \[2, 1\]\)"):
        layer(x)
    fast = KANLinear(3, 2, check_finite=False)
    assert torch.isnan(fast(x)[2]).any()  # skipped on request: NaN flows through


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.float64])
@pytest.mark.parametrize(("shape", "path"), [  # auto: native for the small layer, gather for the large one
    *(((2, 3), path) for path in ("auto", "reference", "dense", "gather", "native", "compiled")),
    ((32, 32), "auto")])
def test_an_input_of_another_dtype_is_one_clear_error_on_every_path(shape: tuple[int, int], path: str,
                                                                   dtype: torch.dtype) -> None:
    # Each path failed its own way: KeyError torch.float16 (native), an embedding_bag or addmm error.
    layer = KANLinear(*shape, path=path)
    x = torch.zeros(4, shape[0], dtype=dtype)
    want = (rf"KANLinear got a {dtype} input but its parameters are torch.float32: convert the input "
            r"\(x.to\(torch.float32\)\) or the model \(model.float\(\) or model.double\(\); layers run in "
            r"float32 or float64\)$")
    with pytest.raises(TypeError, match=want):
        layer(x)
    with pytest.raises(TypeError, match=want):
        layer.edge_responses(x)


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        ((float("inf"),), True),
        ((float("-inf"),), True),
        ((float("inf"), float("-inf")), True),   # their sum is NaN
        ((3e38, 3e38), False),                   # finite values whose float32 sum overflows
        ((-3e38, -3e38, 1.0), False),
    ],
)
def test_the_finite_check_is_exact(values: tuple[float, ...], bad: bool) -> None:
    # The check sums x and looks element by element only when the sum is not finite: an
    # overflowing sum of finite values must pass, any infinity must not.
    x = torch.zeros(4, 3)
    x.view(-1)[: len(values)] = torch.tensor(values)
    layer = KANLinear(3, 2, path="dense")
    if bad:
        with pytest.raises(ValueError, match=r"non-finite input \(first at index \[0, 0\]\)"):
            layer(x)
    else:
        layer(x)  # passes the check (the output itself may overflow: not the check's business)


def test_the_finite_check_records_nothing_for_autograd() -> None:
    # The check runs on every call: on x itself, isfinite's composite ops would be recorded and
    # would keep x for a backward that never comes. Only the layer's own backward saves anything.
    x = torch.rand(5, 3, requires_grad=True)
    counts = []
    for check in (True, False):
        saved: list[torch.Tensor] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, s=saved: s.append(t) or t, lambda t: t):
            KANLinear(3, 2, path="dense", check_finite=check)(x)
        counts.append(len(saved))
    assert counts[0] == counts[1] > 0


def test_bases_registry_matches_the_numpy_reference() -> None:
    v = torch.linspace(-3, 3, 13, dtype=torch.float64)
    for name, base in BASES.items():
        np.testing.assert_allclose(base.value(v).numpy(), NUMPY_BASES[name](v.numpy()), atol=1e-14)


def test_refine_with_inputs_keeps_the_function_where_they_lie_outside_the_range() -> None:
    # After training, a layer's inputs may lie past its grid's range, in the extension intervals
    # (a deeper layer's, whose inputs moved after the last grid update): refine(x) widens the
    # range to cover them and keeps the function there too; refine() keeps it on the range only.
    layer = make(SWITCHES[0], grid_size=4)
    x = torch.rand(400, 3, dtype=torch.float64) * 2.6 - 1.3        # 15% past each end of [-1, 1]
    with torch.no_grad():
        before = layer(x)
    kept, blind = copy.deepcopy(layer), copy.deepcopy(layer)
    kept.refine(8, x)
    blind.refine(8)
    scale = float(before.max() - before.min())
    with torch.no_grad():
        err_kept, err_blind = (float((m(x) - before).abs().max()) for m in (kept, blind))
    # measured: 0.11% and 1.7% of the output's range (the wiggly random spline's pieces in the old
    # extension intervals are not in the new space, so the refit is close, not exact)
    assert err_kept < 3e-3 * scale and err_kept < err_blind / 5, (err_kept, err_blind, scale)
    torch.testing.assert_close(kept.grid[:, [3, -4]], torch.stack([x.min(0).values, x.max(0).values], 1))


def test_update_grid_with_a_margin_covers_the_range_widened_on_both_sides() -> None:
    layer = make(SWITCHES[0], grid_size=5)
    x = torch.rand(500, 3, dtype=torch.float64) * 1.6 - 0.7
    layer.update_grid(x, grid_eps=0.0, margin=0.1)
    lo, hi = x.min(0).values, x.max(0).values
    inner = layer.grid[:, 3:-3]
    torch.testing.assert_close(inner[:, 0], lo - 0.1 * (hi - lo), rtol=0, atol=1e-14)
    torch.testing.assert_close(inner[:, -1], hi + 0.1 * (hi - lo), rtol=0, atol=1e-14)
    # the interior knots are the quantiles, stretched about the middle by the same factor
    mid = (lo + hi) / 2
    quantiles = torch.sort(x, 0).values[torch.linspace(0, 499, 6).round().long()].T
    torch.testing.assert_close(inner, mid[:, None] + (quantiles - mid[:, None]) * 1.2, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        layer.update_grid(x, margin=-0.1)


@pytest.mark.parametrize("switches", SWITCHES[::3])
def test_options_rebuild_the_layer_and_count_its_parameters(switches: tuple) -> None:  # type: ignore[type-arg]
    bias, spline_weight, base, base_weight = switches
    layer = KANLinear(3, 2, grid_size=7, order=2, bias=bias, spline_weight=spline_weight, base=base,
                      base_weight=base_weight, init="uniform", path="gather")
    layer.refine(9)
    rebuilt = KANLinear(3, 2, **layer.options())
    assert [(n, p.shape) for n, p in rebuilt.named_parameters()] == [
        (n, p.shape) for n, p in layer.named_parameters()]
    assert (rebuilt.grid_size, rebuilt.init, rebuilt.path) == (9, "uniform", "gather")
    assert KANLinear.num_params(3, 2, **layer.options()) == sum(p.numel() for p in layer.parameters())
    # options() names every option of the constructor but the widths, device and dtype
    assert set(layer.options()) == set(constructor_options(3, 2)) - {"in_features", "out_features",
                                                                      "device", "dtype"}
    # (without a base there is no base weight to have, so options() says so)
    has_base_weight = base_weight and base is not None
    expected = KANOptions(9, 2, bias=bias, spline_weight=spline_weight, base=base,
                          base_weight=has_base_weight, init="uniform", path="gather")
    assert KANOptions(**layer.options()) == expected


def test_the_constructor_takes_the_option_set_with_its_defaults() -> None:
    # The one option set (KANOptions) is the constructor's: same names, order, kinds and defaults.
    params = list(inspect.signature(KANLinear).parameters.values())
    assert [p.name for p in params] == ["in_features", "out_features", *NAMES, "device", "dtype"]
    assert [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD] == list(POSITIONAL)
    assert {p.name: p.default for p in params[2:-2]} == dataclasses.asdict(KANOptions())
    assert KANLinear(3, 2).options() == dataclasses.asdict(KANOptions())


def test_subset_keeps_the_chosen_edges_on_a_moved_grid() -> None:
    torch.manual_seed(0)
    layer = KANLinear(4, 3, grid_size=5, order=3).double()
    x = torch.rand(64, 4, dtype=torch.float64) * 2 - 1
    layer.update_grid(x, grid_eps=0.0)  # knots at the data's quantiles: not uniform
    rows, cols = torch.tensor([2, 0]), torch.tensor([3, 1])
    state = torch.random.get_rng_state()
    sub = layer.subset(rows, cols)
    assert torch.equal(torch.random.get_rng_state(), state)  # the constructor's draws are undone
    assert not sub.uniform and torch.equal(sub.grid, layer.grid[cols])
    # the independent reference: the naive per-edge sum (scipy) over the kept edges only
    full = copy.deepcopy(layer)
    with torch.no_grad():
        keep = torch.zeros(3, 4, dtype=torch.bool)
        keep[rows.unsqueeze(1), cols] = True
        full.coef.mul_(keep.unsqueeze(-1))
        full.spline_weight.mul_(keep)
        full.base_weight.mul_(keep)
    want = naive_forward(full, x.numpy())[:, rows.numpy()]
    np.testing.assert_allclose(sub(x[:, cols]).detach().numpy(), want, rtol=1e-12, atol=1e-12)
