"""Symbolic edges: fitting c f(a x + b) + d, the symbolic layer, auto-fix, formulas, the workflow."""

from __future__ import annotations

import json
import math
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch

from kanlab import splines
from kanlab.layers.kan.layer import KANLinear
from kanlab.models.stack import KAN, Stack
from kanlab.symbolic import library as symlib
from kanlab.symbolic import snap
from kanlab.symbolic.config import SymbolicConfig
from kanlab.symbolic.fit import fit_function, suggest
from kanlab.symbolic.formulas import SplineEdgesError, evaluate, formula, tidy, variables
from kanlab.symbolic.layer import SymbolicKANLinear
from kanlab.symbolic.polish import polish_constants
from kanlab.symbolic.workflow import symbolic_workflow
from kanlab.tasks import TaskConfig, make_dataset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

F64 = torch.float64


def spline_layer(fns: list[list], grid_size: int = 40, lo: float = -1.0, hi: float = 1.0) -> KANLinear:
    """A KANLinear (no base branch) whose edge (o, i) is a least-squares spline fit of fns[o][i]."""
    layer = KANLinear(len(fns[0]), len(fns), grid_size, grid_range=(lo, hi), base=None, dtype=F64)
    x = torch.linspace(lo, hi, 20 * grid_size, dtype=F64).unsqueeze(1).expand(-1, layer.in_features)
    target = torch.stack([torch.stack([fns[o][i](x[:, i]) for o in range(len(fns))], 1)
                          for i in range(layer.in_features)], 1)                    # (n, i, o)
    with torch.no_grad():
        layer.coef.copy_(splines.fit_coefficients(x, target, layer.grid, layer.order).transpose(0, 1))
        layer.bias.zero_()
    return layer


# ---- fitting one edge ------------------------------------------------------------------------
def test_fit_recovers_function_and_affine_constants_to_1e6(device: torch.device) -> None:
    x = torch.linspace(-2, 2, 201, dtype=F64, device=device)
    fit = fit_function(x, 2 * torch.sin(3 * x + 1) - 0.5, "sin")
    assert (fit.a, fit.b, fit.c, fit.d) == pytest.approx((3.0, 1.0, 2.0, -0.5), abs=1e-6)
    assert fit.r2 > 1 - 1e-12
    best = suggest(x, 2 * torch.sin(3 * x + 1) - 0.5, top=3)
    assert best[0].name in ("sin", "cos") and best[0].r2 > 1 - 1e-12
    assert best[0].name == "sin"  # equal fits keep library order


def test_equivalent_constants_come_back_canonical() -> None:
    x = torch.linspace(-2, 2, 201, dtype=F64)
    # -2 sin(-3x - 1) - 0.5 and 2 sin(3x + 1 + 2 pi) - 0.5 are the same edge as above.
    for y in (-2 * torch.sin(-3 * x - 1) - 0.5, 2 * torch.sin(3 * x + 1 + 2 * math.pi) - 0.5):
        fit = fit_function(x, y, "sin")
        assert (fit.a, fit.b, fit.c, fit.d) == pytest.approx((3.0, 1.0, 2.0, -0.5), abs=1e-6)


@pytest.mark.parametrize(("name", "fn", "consts"), [
    ("x^2", lambda x: 1.5 * (x - 0.3) ** 2 + 0.1, (1.0, -0.3, 1.5, 0.1)),
    ("exp", lambda x: 0.7 * torch.exp(1.3 * x) + 0.2, (1.3, 0.0, 0.7, 0.2)),
    ("log", lambda x: -0.8 * torch.log(2.5 - x), (-1.0, 2.5, -0.8, 0.0)),
    ("tanh", lambda x: torch.tanh(2 * x + 0.4) - 1, (2.0, 0.4, 1.0, -1.0)),
    ("J0", lambda x: torch.special.bessel_j0(5 * x - 1), (5.0, -1.0, 1.0, 0.0)),
    ("1/x", lambda x: 2 / (x + 1.4), (1.0, 1.4, 2.0, 0.0)),
    ("sqrt", lambda x: torch.sqrt(1.2 - x), (-1.0, 1.2, 1.0, 0.0)),
    ("x", lambda x: 0.7 * x + 0.1, (1.0, 0.0, 0.7, 0.1)),
])
def test_fit_recovers_library_functions(name: str, fn, consts: tuple[float, ...]) -> None:
    x = torch.linspace(-1, 1, 101, dtype=F64)
    fit = fit_function(x, fn(x), name)
    assert (fit.a, fit.b, fit.c, fit.d) == pytest.approx(consts, abs=1e-6)


def test_ranking_prefers_the_simple_function_over_imitations() -> None:
    x = torch.linspace(-1, 1, 101, dtype=F64)
    library = ("x", "x^2", "x^3", "sin", "cos", "gaussian", "sigmoid", "tanh", "exp", "0")
    assert suggest(x, 1.5 * (x - 0.3) ** 2, library)[0].name == "x^2"      # not cos near its peak
    assert suggest(x, 0.7 * x + 0.1 + 1e-6 * torch.sin(9 * x), library)[0].name == "x"
    top = suggest(x, 0.7 * torch.exp(1.3 * x), library, top=4)
    assert top[0].name == "exp"  # not a sigmoid tail
    assert len(top) == 4 and [t.score for t in top] == sorted(t.score for t in top)


def test_unknown_function_lists_the_known_ones() -> None:
    x = torch.linspace(-1, 1, 50, dtype=F64)
    with pytest.raises(ValueError, match=r"unknown symbolic function 'sinh'; known: 0, x, x\^2"):
        fit_function(x, x, "sinh")
    layer = SymbolicKANLinear(KANLinear(1, 1))
    with pytest.raises(ValueError, match="known: .*sin, cos"):
        layer.fix(0, 0, "sinh")
    with pytest.raises(ValueError, match="at least 5 finite samples"):
        fit_function(x[:3], x[:3], "sin")


# ---- the symbolic layer --------------------------------------------------------------------------
def test_symbolic_layer_forward_is_splines_plus_fixed_edges(device: torch.device) -> None:
    kan = KANLinear(3, 2, dtype=F64).to(device)
    with torch.no_grad():
        kan.bias.uniform_(-1, 1)
    layer = SymbolicKANLinear(kan)
    x = (torch.rand(64, 3, dtype=F64) * 2 - 1).to(device)
    assert torch.allclose(layer(x), kan(x))
    layer.fix(0, 1, "sin", 3.0, 1.0, 2.0, -0.5)
    layer.fix(1, 2, "x^2", 1.0, 0.2, -1.5, 0.3)
    r = layer.edge_responses(x)                                                     # (b, o, i)
    assert torch.allclose(r[:, 0, 1], 2 * torch.sin(3 * x[:, 1] + 1) - 0.5)
    assert torch.allclose(r[:, 1, 2], -1.5 * (x[:, 2] + 0.2) ** 2 + 0.3)
    assert torch.allclose(r[:, 0, 0], kan.edge_responses(x)[:, 0, 0])
    assert torch.allclose(layer(x), r.sum(2) + kan.bias, atol=1e-12)
    # Fixed edges' spline parameters get no gradient; their constants do.
    layer(x).sum().backward()
    assert kan.coef.grad is not None and layer.affine.grad is not None
    assert float(kan.coef.grad[0, 1].abs().max()) == 0.0 and float(kan.coef.grad[0, 0].abs().max()) > 0
    assert float(layer.affine.grad[0, 1].abs().min()) > 0 and float(layer.affine.grad[0, 0].abs().max()) == 0
    layer.unfix(0, 1)
    layer.unfix(1, 2)
    assert torch.allclose(layer(x), kan(x))


def test_symbolic_layer_grid_methods_and_state_dict() -> None:
    layer = SymbolicKANLinear(KANLinear(2, 2, dtype=F64))
    layer.fix(1, 0, "exp", 0.5, 0.0, 1.0, 0.0)
    x = torch.rand(200, 2, dtype=F64) * 4 - 2
    before = layer(x)[:, 1] - layer.kan.edge_responses(x)[:, 1, 1]
    layer.update_grid(x)
    layer.refine(10)
    assert layer.grid_size == 10
    assert torch.allclose(layer(x)[:, 1] - layer.kan.edge_responses(x)[:, 1, 1], before)  # fixed edge intact
    copy = SymbolicKANLinear(KANLinear(2, 2, grid_size=10, dtype=F64))
    copy.load_state_dict(layer.state_dict())
    assert copy.function_name(1, 0) == "exp" and torch.allclose(copy(x), layer(x))


# ---- auto-fix, polishing, formulas ---------------------------------------------------------------
def hand_fixed_model() -> Stack:
    """A [2, 3, 1] network with every edge fixed to a known function (domains safe on [-1, 1])."""
    model = snap.symbolize(Stack([KANLinear(2, 3, dtype=F64), KANLinear(3, 1, dtype=F64)]))
    names = ["sin", "x^2", "exp", "tanh", "x", "J0"]
    for k, (o, i) in enumerate((o, i) for o in range(3) for i in range(2)):
        model.layers[0].fix(o, i, names[k], 0.7 + 0.1 * k, 0.2 - 0.05 * k, 1.1 - 0.2 * k, 0.1 * k)
    for i, name in enumerate(("sin", "x^3", "sigmoid")):
        model.layers[1].fix(0, i, name, 0.9, 0.1, 1.3, -0.2)
    with torch.no_grad():
        model.layers[0].kan.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        model.layers[1].kan.bias.fill_(0.05)
    return model


def test_formula_evaluates_to_the_model_within_1e10() -> None:
    model = hand_fixed_model()
    x = torch.rand(500, 2, dtype=F64) * 2 - 1
    expr = formula(model)
    assert expr.free_symbols == set(variables(2))
    with torch.no_grad():
        y = model(x)[:, 0].numpy()
    assert np.abs(evaluate(expr, x) - y).max() < 1e-10
    rounded = formula(model, precision=3)
    assert np.abs(evaluate(rounded, x) - y).max() < 0.05
    assert "besselj" in str(rounded) and r"J_{0}" in sympy.latex(rounded)
    named = formula(model, names=("p", "q"))
    assert {s.name for s in named.free_symbols} == {"p", "q"}


def test_formula_with_spline_edges_names_them_or_approximates() -> None:
    model = snap.symbolize(Stack([spline_layer([[torch.sin, lambda v: v**2]]),
                                  spline_layer([[lambda v: 0.5 * v]], lo=-1, hi=2)]))
    model.layers[0].fix(0, 0, "sin", 1.0, 0.0, 1.0, 0.0)
    with pytest.raises(SplineEdgesError, match=r"layer 0 edge \(o=0, i=1\), layer 1 edge \(o=0, i=0\)"):
        formula(model)
    with pytest.raises(SplineEdgesError, match="still splines"):
        formula(Stack([KANLinear(2, 1)]))
    x = torch.rand(300, 2, dtype=F64) * 2 - 1
    approx = formula(model, approximate_on=x, library=("x", "x^2", "sin"))
    with torch.no_grad():
        y = model(x)[:, 0].numpy()
    assert np.abs(evaluate(approx, x) - y).max() < 1e-3
    assert model.layers[0].function_name(0, 1) is None  # approximated on a copy


def test_tidy_expands_pulls_exp_constants_and_rounds() -> None:
    x1, x2 = variables(2)
    f = sympy.Float
    expr = f(2.0) * sympy.exp(f(0.99999999) * (x2 + f(1e-9)) ** 2 + f(0.6931471805599453)
                              + f(1.00000001) * sympy.sin(f(3.14159265) * x1 + f(2e-11))) + f(3e-7)
    assert str(tidy(expr, 4)) == "4*exp(x_2**2 + sin(3.1416*x_1))"
    assert tidy(expr) != tidy(expr, 4)
    with pytest.raises(ValueError, match="precision"):
        tidy(expr, -1)


def test_auto_fix_polish_and_formula_recover_sin_plus_square(device: torch.device) -> None:
    # Splines fitted to sin(x1) and x2^2 feed one hidden node; the output edge is the identity.
    model = snap.symbolize(Stack([spline_layer([[torch.sin, lambda v: v**2]], lo=-2, hi=2),
                                  spline_layer([[lambda v: v]], lo=-2, hi=5)])).to(device)
    x = (torch.rand(400, 2, dtype=F64) * 4 - 2).to(device)
    y = torch.sin(x[:, :1]) + x[:, 1:] ** 2
    choices = snap.auto_fix(model, x, ("x", "x^2", "x^3", "sin", "exp", "tanh"))
    assert [(c.layer, c.o, c.i, c.fit.name, c.fixed) for c in choices] == [
        (0, 0, 0, "sin", True), (0, 0, 1, "x^2", True), (1, 0, 0, "x", True)]
    assert snap.spline_edges(model) == []
    rmse = polish_constants(model, x, y)
    assert rmse < 1e-12
    x1, x2 = variables(2)
    assert sympy.simplify(formula(model, precision=6) - (sympy.sin(x1) + x2**2)) == 0


def test_fix_edge_and_suggest_edge_on_a_model() -> None:
    model = snap.symbolize(Stack([KANLinear(1, 2, dtype=F64), KANLinear(2, 1, dtype=F64)]))
    model.layers[0].fix(1, 0, "sin", 3.0, 1.0, 2.0, -0.5)
    x = torch.linspace(-2, 2, 300, dtype=F64).unsqueeze(1)
    best = snap.suggest_edge(model, x, 0, 1, 0, ("x", "x^2", "sin", "tanh"))[0]
    assert best.name == "sin"
    assert (best.a, best.b, best.c, best.d) == pytest.approx((3.0, 1.0, 2.0, -0.5), abs=1e-6)
    fit = snap.fix_edge(model, 1, 0, 1, "x", x=x)
    assert fit is not None and model.layers[1].function_name(0, 1) == "x"
    snap.fix_edge(model, 1, 0, 0, "0", constants=(1.0, 0.0, 0.0, 0.25))
    assert model.layers[1].constants(0, 0) == (1.0, 0.0, 0.0, 0.25)
    with pytest.raises(ValueError, match="symbolize"):
        snap.fix_edge(Stack([KANLinear(1, 1)]), 0, 0, 0, "x", constants=(1, 0, 1, 0))
    with pytest.raises(ValueError, match="exactly one of"):
        snap.fix_edge(model, 1, 0, 0, "x")
    with pytest.raises(IndexError, match="outside"):
        snap.fix_edge(model, 0, 5, 0, "x", x=x)


def test_library_is_consistent() -> None:
    u = torch.linspace(0.3, 1.7, 9, dtype=F64)
    for f in symlib.LIBRARY.values():
        s = sympy.Symbol("u")
        fn = sympy.lambdify(s, f.sympy_fn(s), modules=["numpy", "scipy"])
        assert np.allclose(np.broadcast_to(fn(u.numpy()), u.shape), f.torch_fn(u).numpy()), f.name
        for a, b in ((-1.3, 0.4), (2.0, 7.0)):  # canonical constants describe the same function
            if f.a_mode != "free" or (f.valid is not None and not bool(f.valid(a * u + b).all())):
                continue
            a2, b2, c2, d2 = symlib.canonical(f, a, b, 1.5, 0.2)
            same = torch.allclose(c2 * f.torch_fn(a2 * u + b2) + d2, 1.5 * f.torch_fn(a * u + b) + 0.2)
            assert same, f.name


# ---- the workflow ----------------------------------------------------------------------------
def test_workflow_stages_save_and_preset(tmp_path: Path) -> None:
    # Plumbing only (a few steps each); tests below check what the workflow recovers.
    data = make_dataset(TaskConfig(kind="function", name="sin_plus_sq", n_train=100, n_test=50), F64)
    model = KAN([2, 3, 1], grid_size=4).double()
    cfg = SymbolicConfig(steps=2, refine_grid=6, library=("x", "x^2", "sin"), r2_threshold=-math.inf,
                         final_steps=1, polish=False, prune_threshold=1e-3)
    result = symbolic_workflow(model, data, cfg)
    names = [s.name for s in result.stages]
    assert names == ["sparsify", "prune", "retrain", "refine", "auto-fix-0", "auto-fix-1", "final"]
    assert result.prune_report is not None and result.stages[1].widths == result.prune_report.widths_after
    assert all(s.edges["layers"].tolist() == [0, 1] for s in result.stages)
    assert result.formula is not None and result.formula_error < 1e-10
    folder = result.save(tmp_path / "symbolic")
    summary = json.loads((folder / "symbolic.json").read_text())
    assert summary["formula"] == str(result.formula) and summary["formula_latex"]
    assert (folder / "0-sparsify" / "edges.npz").is_file() and (folder / "6-final" / "edges.npz").is_file()
    # The preset's [symbolic] table is a valid SymbolicConfig.
    raw = tomllib.loads(resources.files("kanlab.presets").joinpath("symbolic-demo.toml").read_text())
    assert SymbolicConfig(**raw["symbolic"]).library[0] == "x"
    with pytest.raises(ValueError, match="unknown symbolic function 'sinh'"):
        SymbolicConfig(library=("x", "sinh"))


# (task, seed, sparsity, hidden nodes after pruning, the formula). Each seed also recovers its
# formula at neighbouring sparsities (exp_sin: 1e-2 .. 5e-2; xy: 3e-3, 1e-2; sin_plus_sq: 1e-2 .. 5e-2);
# x*y needs two hidden nodes, ((x + y)^2 - (x - y)^2) / 4, so it wants the weakest regulariser.
RECOVERY = [
    ("exp_sin", 3, 2e-2, 1, lambda x1, x2: sympy.exp(sympy.sin(sympy.pi * x1) + x2**2)),
    ("xy", 0, 1e-2, 2, lambda x1, x2: x1 * x2),
    ("sin_plus_sq", 2, 5e-2, 1, lambda x1, x2: sympy.sin(x1) + x2**2),
]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "seed", "sparsity", "hidden", "target"), RECOVERY,
                         ids=[r[0] for r in RECOVERY])
def test_workflow_recovers_the_formula_to_machine_precision(task, seed, sparsity, hidden, target) -> None:
    data = make_dataset(TaskConfig(kind="function", name=task, n_train=1000, n_test=1000, seed=seed), F64)
    torch.manual_seed(seed)
    model = KAN([2, 5, 1], grid_size=5).double()
    result = symbolic_workflow(model, data, SymbolicConfig(seed=seed, sparsity=sparsity))
    assert result.prune_report is not None and result.prune_report.widths_after == (2, hidden, 1)
    assert result.prune_report.params_after < result.prune_report.params_before
    assert result.formula is not None, [str(c) for c in result.choices]
    x1, x2 = variables(2)
    # Equal to the target up to constant rounding (pi is printed as 3.1416).
    floats = result.formula.atoms(sympy.Float)
    recovered = result.formula.xreplace({f: sympy.pi for f in floats if abs(float(f) - math.pi) < 1e-3})
    assert sympy.simplify(recovered - target(x1, x2)) == 0, str(result.formula)
    final = result.stages[-1]
    assert final.test_rmse < 1e-10 and final.train_rmse < 1e-10
    assert result.formula_error < 1e-10


def test_grid_updates_and_sparsity_see_a_symbolic_wrapper_as_one_layer():
    """update_grids and the sparsity term walk a symbolized stack: the wrapper, not the KANLinear inside."""
    from kanlab.training.loop import update_grids
    from kanlab.training.regularization import kan_like_layers, sparsity_loss

    torch.manual_seed(0)
    model = snap.symbolize(KAN([2, 3, 1], grid_size=5).double())
    assert kan_like_layers(model) == list(model.layers)
    x = torch.rand(64, 2, dtype=F64) * 1.2 - 0.6          # inside the initial grid [-1, 1]
    model.layers[0].fix(0, 0, "sin", a=2.0, b=0.5, c=1.5, d=-0.2)
    before = model(x)
    update_grids(model, x, grid_eps=0.0)
    inner = model.layers[0].kan
    lo, hi = inner.grid[:, inner.order], inner.grid[:, -inner.order - 1]
    assert torch.allclose(lo, x.min(0).values) and torch.allclose(hi, x.max(0).values)  # knots moved
    assert torch.allclose(model(x), before, atol=5e-3)   # the function is kept, up to the refit
    sparse = sparsity_loss(model, x)
    assert torch.isfinite(sparse) and sparse > 0
