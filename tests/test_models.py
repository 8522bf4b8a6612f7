"""Models against hand-computed counts, hand-applied layers and brute-force width searches."""

from __future__ import annotations

import itertools
import json
import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kanlab.layers.activations import RBFKAN, ChebyshevKAN, FourierKAN
from kanlab.layers.dense import ACTIVATIONS, Dense
from kanlab.layers.kan.layer import KANLinear
from kanlab.layers.tanh_quadratic import TanhQuadratic
from kanlab.models.budget import match_params
from kanlab.models.spec import BlockConfig, ModelConfig, format_spec, parse_spec
from kanlab.models.stack import KAN, MLP, build, count_params, param_count

# The test's own family table, so the brute force below does not lean on models.FAMILIES.
CLASSES = {
    "kan": KANLinear, "mlp": Dense, "tanhquad": TanhQuadratic, "rbf": RBFKAN,
    "chebyshev": ChebyshevKAN, "fourier": FourierKAN,
}
BUDGETS = [100, 300, 1000, 3000, 10_000, 100_000, 1_000_000]


# ---- parameter counts ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bias", "spline_weight", "base", "base_weight"),
    list(itertools.product([True, False], [True, False], ["silu", None], [True, False])),
)
@pytest.mark.parametrize(("grid_size", "order"), [(5, 3), (3, 1), (10, 0)])
def test_kan_param_count_closed_form(bias, spline_weight, base, base_weight, grid_size, order):
    # [2, 5, 1]: 2*5 + 5*1 = 15 edges with g + k coefficients, s_oi, w_oi; 5 + 1 = 6 node biases.
    per_edge = grid_size + order + int(spline_weight) + int(base is not None and base_weight)
    expected = 15 * per_edge + (6 if bias else 0)
    opts = dict(bias=bias, spline_weight=spline_weight, base=base, base_weight=base_weight)
    model = KAN([2, 5, 1], grid_size=grid_size, order=order, **opts)
    assert param_count(model) == expected
    assert count_params(model.config) == expected
    assert [layer.grid_size for layer in model.kan_layers()] == [grid_size, grid_size]


def test_kan_default_count_is_pykan_count():
    # grid 5, order 3: 8 coefficients + s + w per edge = 10; 15 edges, 6 biases.
    assert param_count(KAN([2, 5, 1])) == 156


@pytest.mark.parametrize("widths", [[1, 1], [2, 5, 1], [1, 64, 64, 1], [3, 7, 2, 9]])
@pytest.mark.parametrize("bias", [True, False])
def test_mlp_param_count_closed_form(widths, bias):
    expected = sum(a * b + (b if bias else 0) for a, b in itertools.pairwise(widths))
    assert param_count(MLP(widths, bias=bias)) == expected
    assert count_params(ModelConfig.single("mlp", widths, bias=bias)) == expected


def test_param_count_skips_frozen_parameters():
    model = KAN([2, 3, 1])
    model.layers[0].coef.requires_grad_(False)
    assert param_count(model) == param_count(KAN([2, 3, 1])) - 2 * 3 * 8


CONFIGS = [
    "kan:2-5-1", "kan:3-4-2:g=7,k=2,base=none", "kan:2-3-1:spline_weight=false,base_weight=false",
    "mlp:2-16-16-1", "mlp:1-8-1:act=sine,bias=false", "mlp:2-4-1:act=relu",
    "tanhquad:2-5-1", "tanhquad:2-5-1:after_sum=true", "tanhquad:2-5-3:bias=false",
    "rbf:2-5-1", "rbf:2-5-1:g=6,base=none", "chebyshev:2-5-1", "chebyshev:2-5-1:degree=7",
    "fourier:2-5-1", "fourier:2-5-1:frequencies=3,bias=false",
    "kan:2-8:g=5+mlp:8-16-1:act=silu", "mlp:3-16-8+kan:8-4-1:k=2",
    "chebyshev:2-6+fourier:6-3+rbf:3-1", "tanhquad:4-3+kan:3-3+mlp:3-2",
]


@pytest.mark.parametrize("spec", CONFIGS)
def test_count_params_matches_built_model(spec):
    cfg = parse_spec(spec)
    model = build(cfg)
    assert count_params(cfg) == param_count(model)
    # Built from the explicit classes, one layer at a time, the count is the same.
    assert count_params(cfg) == sum(param_count(layer) for layer in model.layers)
    assert model.spec == format_spec(cfg) and parse_spec(model.spec) == cfg
    x = torch.rand(7, cfg.in_features) * 2 - 1
    assert model(x).shape == (7, cfg.out_features)


# ---- forward is the composition of the layers ------------------------------------------------
def test_kan_forward_is_composition_of_kan_layers(device):
    torch.manual_seed(0)
    model = KAN([2, 5, 3, 1], grid_size=4, order=2, init="uniform").to(device)
    torch.manual_seed(0)
    refs = [KANLinear(a, b, 4, 2, init="uniform").to(device) for a, b in [(2, 5), (5, 3), (3, 1)]]
    x = (torch.rand(11, 2) * 2 - 1).to(device)
    y = x
    for ref in refs:
        y = ref(y)
    torch.testing.assert_close(model(x), y, rtol=0, atol=0)
    assert model.kan_layers() == list(model.layers)


def test_mixed_stack_is_composition_and_kan_layers_picks_kan():
    torch.manual_seed(1)
    model = build(parse_spec("kan:2-8:g=5+mlp:8-16-1:act=silu"))
    torch.manual_seed(1)
    refs = [KANLinear(2, 8, 5), Dense(8, 16, "silu"), Dense(16, 1, "identity")]
    x = torch.rand(9, 2) * 2 - 1
    y = refs[2](refs[1](refs[0](x)))
    torch.testing.assert_close(model(x), y, rtol=0, atol=0)
    assert model.kan_layers() == [model.layers[0]]


def test_mlp_forward_is_manual_linear_tanh(device):
    torch.manual_seed(2)
    model = MLP([3, 6, 4, 2]).double().to(device)
    x = (torch.rand(13, 3, dtype=torch.float64) * 2 - 1).to(device)
    h = x
    for i, layer in enumerate(model.layers):
        h = F.linear(h, layer.weight, layer.bias)
        h = h if i == len(model.layers) - 1 else torch.tanh(h)  # linear output layer
    torch.testing.assert_close(model(x), h)


def test_mlp_sine_first_layer_init_only_on_stack_input():
    torch.manual_seed(3)
    model = MLP([2, 8, 8, 1], activation="sine", omega_0=10.0)
    torch.manual_seed(3)
    refs = [Dense(2, 8, "sine", first=True, omega_0=10.0), Dense(8, 8, "sine", omega_0=10.0),
            Dense(8, 1, "identity", omega_0=10.0)]
    for layer, ref in zip(model.layers, refs, strict=True):
        for p, q in zip(layer.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    x = torch.rand(5, 2)
    torch.testing.assert_close(model(x), refs[2](refs[1](refs[0](x))), rtol=0, atol=0)


# ---- spec strings and saved configs ------------------------------------------------------------
def test_parse_spec_reads_aliases_and_compact_form():
    expected = ModelConfig.single("kan", [2, 5, 1], grid_size=5, order=3)
    assert parse_spec("kan:2-5-1:g5k3") == expected
    assert parse_spec(" kan : 2-5-1 : g=5, order=3 ") == expected
    assert parse_spec("kan:2-5-1:g=5,k=3,base=none,bias=false").blocks[0].options == {
        "grid_size": 5, "order": 3, "base": None, "bias": False,
    }
    assert parse_spec("kan:2-5-1:grid_range=(-2,2.5)").blocks[0].options == {"grid_range": (-2, 2.5)}
    mlp = ModelConfig.single("mlp", [1, 64, 64, 1], activation="tanh")
    assert parse_spec("mlp:1-64-64-1:act=tanh") == mlp
    mixed = parse_spec("kan:2-8:g=5+mlp:8-16-1:act=silu,omega_0=1e+3")
    assert mixed == ModelConfig((
        BlockConfig("kan", (2, 8), {"grid_size": 5}),
        BlockConfig("mlp", (8, 16, 1), {"activation": "silu", "omega_0": 1000.0}),
    ))


@pytest.mark.parametrize("spec", CONFIGS + ["kan:2-5-1:g5k3", "mlp:1-4-1:act=sine,omega_0=30.0"])
def test_spec_round_trip(spec):
    cfg = parse_spec(spec)
    assert parse_spec(format_spec(cfg)) == cfg
    assert format_spec(parse_spec(format_spec(cfg))) == format_spec(cfg)


VALUES = st.one_of(
    st.integers(-10**6, 10**6), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["silu", "tanh", "identity", "pykan", "uniform", "auto"]),
    st.tuples(st.floats(-5, 5), st.floats(-5, 5)),
)


@st.composite
def configs(draw: st.DrawFn) -> ModelConfig:
    blocks, width = [], draw(st.integers(1, 9))
    for _ in range(draw(st.integers(1, 3))):
        family = draw(st.sampled_from(sorted(CLASSES)))
        widths = (width, *draw(st.lists(st.integers(1, 999), min_size=1, max_size=4)))
        names = [n for n in allowed(family) if n != "activation"]
        options = draw(st.dictionaries(st.sampled_from(names), VALUES, max_size=4))
        if family == "mlp" and draw(st.booleans()):
            options["activation"] = draw(st.sampled_from(ACTIVATIONS))
        blocks.append(BlockConfig(family, widths, options))
        width = widths[-1]
    return ModelConfig(tuple(blocks))


def allowed(family: str) -> list[str]:
    with pytest.raises(ValueError, match="allowed: ") as err:
        BlockConfig(family, (1, 1), {"no_such_option": 1})
    return str(err.value).split("allowed: ")[1].split(", ")


@settings(max_examples=200, deadline=None)
@given(configs())
def test_spec_and_dict_round_trip_random(cfg):
    assert parse_spec(format_spec(cfg)) == cfg
    data = json.loads(json.dumps(cfg.to_dict()))
    assert ModelConfig.from_dict(data) == cfg
    assert "null" not in json.dumps(cfg.to_dict())  # TOML has no null


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_from_dict_reads_toml():
    import tomllib

    text = """
    [[blocks]]
    family = "kan"
    widths = [2, 8]
    options = { grid_size = 5, base = "none", grid_range = [-2.0, 2.0] }
    [[blocks]]
    family = "mlp"
    widths = [8, 16, 1]
    options = { activation = "silu" }
    """
    cfg = ModelConfig.from_dict(tomllib.loads(text))
    assert cfg == parse_spec("kan:2-8:g=5,base=none,grid_range=(-2.0,2.0)+mlp:8-16-1:act=silu")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_options_are_normalised_and_exclude_device_dtype():
    explicit = ModelConfig.single("kan", [2, 1], base=None, grid_range=(-2, 2))
    assert ModelConfig.single("kan", [2, 1], base="none", grid_range=[-2, 2]) == explicit
    assert hash(explicit) == hash(ModelConfig.single("kan", [2, 1]))  # usable as a dict key
    for family in CLASSES:
        assert not {"device", "dtype", "in_features", "out_features"} & set(allowed(family))
    assert "first" not in allowed("mlp") and "activation" in allowed("mlp")


SYNTAX_ERRORS = [
    "", "kan", "kan:", "kan:2-x-1", "kan:2--1", "kan:2-5-1:", "kan:2-5-1:g=", "kan:2-5-1:=5",
    "kan:2-5-1:g5k", "kan:2-5-1:grid_range=(1,2", "kan:2-5-1:grid_range=((1,2))",
    "kan:2-5-1:base=si lu", "kan:2-5-1+", "+kan:2-1", "kan:+2-1", "kan:2-5-1:a.b=1",
    "kan:2-5-1:g=5,g=6", "kan:2-5-1:g=5,grid_size=6",
]


@pytest.mark.parametrize("spec", SYNTAX_ERRORS)
def test_malformed_spec_quotes_spec_and_grammar(spec):
    with pytest.raises(ValueError) as err:
        parse_spec(spec)
    msg = str(err.value)
    assert repr(spec) in msg
    assert "grammar" in msg or "given twice" in msg or "widths must be" in msg


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("foo:2-1", r"unknown model family 'foo'; allowed: kan, mlp, tanhquad, rbf, chebyshev, fourier"),
        ("kan:2-5-1:nope=1", r"unknown option 'nope' for family 'kan'; allowed: grid_size, order"),
        ("mlp:2-5-1:act=swish", r"unknown activation 'swish'; allowed: tanh, relu"),
        ("mlp:2-5-1:first=true", r"'first' of family 'mlp' is set per layer"),
        ("kan:2-8+mlp:4-1", r"block 1 \(mlp\) starts at width 4 but block 0 \(kan\) ends at width 8"),
        ("kan:2-0-1", r"widths must be >= 2 positive integers"),
        ("kan:2", r"widths must be >= 2 positive integers"),
    ],
)
def test_bad_spec_content_names_the_problem(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(spec)


def test_format_spec_refuses_unwritable_values():
    for value in ["a,b", "true", "5", float("inf"), ((1, 2),), [1, 2, {3}]]:
        with pytest.raises(ValueError, match="cannot be written"):
            format_spec(ModelConfig.single("kan", [2, 1], init=value))


# ---- errors from the Python API ------------------------------------------------------------------
@pytest.mark.parametrize("widths", [[2], [], [2, 0, 1], [2, -1], [2, True], [2.5, 1], "2-5-1", None])
def test_bad_widths(widths):
    with pytest.raises(ValueError, match="widths must be >= 2 positive integers"):
        KAN(widths)


def test_unknown_family_option_activation():
    with pytest.raises(ValueError, match="unknown model family 'kann'; allowed: kan, mlp"):
        ModelConfig.single("kann", [2, 1])
    with pytest.raises(ValueError, match="unknown option 'grid' for family 'kan'; allowed: grid_size"):
        KAN([2, 1], grid=5)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        MLP([2, 4, 1], activation="swish")
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        count_params(ModelConfig.single("mlp", [2, 4, 1], activation="swish"))
    with pytest.raises(ValueError, match="unknown option 'degree' for family 'fourier'"):
        match_params("fourier", 1000, degree=3)


# ---- match_params --------------------------------------------------------------------------------
def brute_count(family: str, widths: tuple[int, ...], options: dict) -> int:
    cls, n = CLASSES[family], len(widths) - 1
    total = 0
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        opts = dict(options)
        if family == "mlp":
            opts["activation"] = "identity" if i == n - 1 else opts.get("activation", "tanh")
        total += cls.num_params(a, b, **opts)
    return total


def brute_force(family: str, budget: int, tol: float = 0.02, **options):
    """All (h1, h2) hits within tol of budget, and the closest count, for widths (2, h1, h2, 1)."""
    hits, closest = [], None
    h1 = 1
    while True:
        h2 = 1
        while True:
            c = brute_count(family, (2, h1, h2, 1), options)
            closest = c if closest is None or abs(c - budget) < abs(closest - budget) else closest
            if abs(c - budget) <= tol * budget:
                hits.append((h1, h2))
            if c > budget * (1 + tol):
                break
            h2 += 1
        if h2 == 1:
            return hits, closest
        h1 += 1


@pytest.mark.parametrize("family", sorted(CLASSES))
def test_match_params_every_family_and_budget(family):
    for budget in BUDGETS:
        try:
            widths = match_params(family, budget, depth=2, in_features=2, out_features=1, widths_only=True)
        except ValueError as err:
            assert budget < 1000, f"{family} {budget}: {err}"
            hits, closest = brute_force(family, budget)
            assert hits == [], f"{family} {budget}: search missed {hits}"
            assert re.search(rf"the closest has {closest} ", str(err)), (str(err), closest)
            continue
        assert len(widths) == 4 and widths[0] == 2 and widths[-1] == 1
        analytic = brute_count(family, widths, {})
        assert abs(analytic - budget) <= 0.02 * budget, (family, budget, widths, analytic)
        if budget <= 10_000:
            model = match_params(family, budget, depth=2, in_features=2, out_features=1)
            assert param_count(model) == analytic and model.config.blocks[0].widths == widths
        # Uniform widths win whenever some (h, h) is within tol.
        h = widths[1]
        uniform = [g for g in range(max(1, h // 2), 2 * h + 2)
                   if abs(brute_count(family, (2, g, g, 1), {}) - budget) <= 0.02 * budget]
        if uniform:
            assert widths[1] == widths[2] and widths[1] in uniform


def test_match_params_small_budgets_agree_with_brute_force_closest():
    for family, budget in itertools.product(sorted(CLASSES), [60, 100, 150, 300, 500]):
        hits, closest = brute_force(family, budget)
        try:
            widths = match_params(family, budget, in_features=2, widths_only=True)
        except ValueError as err:
            assert hits == [] and (f"the closest has {closest} " in str(err) or "smallest" in str(err))
            continue
        assert tuple(widths[1:3]) in hits
        spread = min(abs(a - b) for a, b in hits)
        assert abs(widths[1] - widths[2]) == spread


@pytest.mark.parametrize("depth", [1, 3, 4])
def test_match_params_other_depths(depth):
    for family, budget in itertools.product(["kan", "mlp", "chebyshev"], [5_000, 50_000, 500_000]):
        widths = match_params(family, budget, depth=depth, in_features=3, out_features=2, widths_only=True)
        assert len(widths) == depth + 2 and (widths[0], widths[-1]) == (3, 2)
        count = count_params(ModelConfig.single(family, widths))
        assert abs(count - budget) <= 0.02 * budget
        assert max(widths[1:-1]) - min(widths[1:-1]) <= max(2, widths[1] // 4)


def test_match_params_passes_options_and_float_budget():
    model = match_params("kan", 1e4, in_features=2, grid_size=10, order=2, base=None)
    assert all(layer.grid_size == 10 and layer.base is None for layer in model.kan_layers())
    assert abs(param_count(model) - 10_000) <= 200
    mlp = match_params("mlp", 5000, activation="sine")
    assert mlp.config.blocks[0].options == {"activation": "sine"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(family="kan", budget=0), "budget must be a positive integer"),
        (dict(family="kan", budget=-5), "budget must be a positive integer"),
        (dict(family="kan", budget=1.5), "budget must be a positive integer"),
        (dict(family="kan", budget=True), "budget must be a positive integer"),
        (dict(family="kan", budget="100"), "budget must be a positive integer"),
        (dict(family="kan", budget=1000, depth=0), "depth must be an integer >= 1"),
        (dict(family="kan", budget=1000, tol=-0.1), r"tol must be in \[0, 1\)"),
        (dict(family="kan", budget=10), r"budget 10 is below the smallest kan model .*\(2, 1, 1, 1\)"),
        (dict(family="nope", budget=1000), "unknown model family 'nope'"),
    ],
)
def test_match_params_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        match_params(in_features=2, **kwargs)


def test_match_params_impossible_budget_names_closest():
    with pytest.raises(ValueError) as err:
        match_params("kan", 100, in_features=2)
    msg = str(err.value)
    assert "100" in msg and "the closest has 105 (+5.0%)" in msg and "grid_size" in msg
    assert math.isclose(brute_count("kan", (2, 2, 2, 1), {}), 105)
