"""KANLinear(path="compiled") against the reference path, and where it falls back to the eager paths.

Compiling costs seconds per variant, so the comparisons are slow tests (CI runs them); the
fallbacks compile nothing.
"""

from __future__ import annotations

import copy

import pytest
import torch

from kanlab.layers.kan import _compiled
from test_fast_paths import assert_nan_like_reference, assert_same, inputs, make

needs_compiler = pytest.mark.skipif(not _compiled.has_cpu_compiler(),
                                    reason="torch.compile finds no C++ compiler (g++ or $CXX)")


def slow(test):  # type: ignore[no-untyped-def]
    return pytest.mark.slow(needs_compiler(test))


@slow
@pytest.mark.parametrize("order", [2, 3, 5])
def test_every_order_matches_reference_float64(order: int, device: torch.device) -> None:
    layer, ref = make("compiled", order=order, device=device)
    assert layer.resolved_path() == "compiled"
    assert_same(layer, ref, inputs(layer), rtol=1e-12)


@slow
@pytest.mark.parametrize("switches", [(False, False, None, False), (True, False, "identity", False),
                                      (False, True, "tanh", True)], ids=str)
def test_switches_match_reference_float64(switches: tuple) -> None:  # type: ignore[type-arg]
    layer, ref = make("compiled", switches=switches)
    assert_same(layer, ref, inputs(layer), rtol=1e-12)


@slow
@pytest.mark.parametrize("grid_size", [5, 20])
def test_float32_matches_reference(grid_size: int, device: torch.device) -> None:
    layer, ref = make("compiled", grid_size=grid_size, dtype=torch.float32, device=device)
    assert_same(layer, ref, inputs(layer, torch.float32), rtol=1e-5)


@slow
def test_a_nan_input_reaches_the_same_outputs_and_gradients_as_on_the_reference() -> None:
    assert_nan_like_reference("compiled", [(3, True, "silu"), (3, True, None)])


@slow
def test_float32_at_a_fine_grid_keeps_the_inputs_digits() -> None:
    # u in float32 kept s to ~1e-7 * grid size (a relative error of 1.3e-5 at grid 500); in the
    # grid's float64 the error is the float32 rounding of the result
    layer, ref = make("compiled", grid_size=500, dtype=torch.float32)
    x = inputs(layer, torch.float32).detach()
    truth = copy.deepcopy(ref).double()
    with torch.no_grad():
        want = truth(x.double())
        err = (layer(x).double() - want).abs().max() / want.abs().max()
    assert float(err) < 1e-6


@slow
def test_gradcheck_and_a_retained_graph() -> None:
    layer, _ = make("compiled")
    x = inputs(layer, n=6)

    def f(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip([n for n, _ in layer.named_parameters()], params,
                                                          strict=True)), (x,))

    assert torch.autograd.gradcheck(f, (x, *layer.parameters()))
    y = layer(x).sum()
    first = torch.autograd.grad(y, x, retain_graph=True)[0]
    torch.testing.assert_close(torch.autograd.grad(y, x)[0], first, rtol=0, atol=0)


def _no_compile(*args: object, **kwargs: object) -> None:
    raise AssertionError("the compiled function was called")


@pytest.mark.parametrize("order", [0, 1])
def test_orders_below_two_run_the_eager_paths(order: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_compiled, "compiled", _no_compile)
    layer, ref = make("compiled", order=order)
    auto = copy.deepcopy(layer)
    auto.path = "auto"
    assert layer.resolved_path() == auto.resolved_path() != "compiled"
    assert_same(layer, ref, inputs(layer), rtol=1e-12)


def test_without_a_compiler_the_error_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_compiled, "has_cpu_compiler", lambda: False)
    monkeypatch.setattr(_compiled, "compiled", _no_compile)
    layer, _ = make("compiled")
    with pytest.raises(RuntimeError, match="needs a C.. compiler on CPU.*g\\+\\+.*path=\"auto\""):
        layer(inputs(layer))


def test_moved_grids_run_the_eager_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_compiled, "compiled", _no_compile)
    layer, ref = make("compiled", uniform=False)
    auto = copy.deepcopy(layer)
    auto.path = "auto"
    assert layer.resolved_path() == auto.resolved_path() != "compiled"  # native for small layers now
    assert_same(layer, ref, inputs(layer), rtol=1e-12)


@slow
@pytest.mark.parametrize("weights_need_grad", [True, False])
def test_backward_keeps_inputs_parameters_and_features_only(weights_need_grad: bool) -> None:
    # No piece masks or basis copies: x, the parameters, the knots and (only when a weight needs a
    # gradient) the (b, i * (c + 1)) features the forward multiplied.
    layer, _ = make("compiled")
    layer.requires_grad_(weights_need_grad)
    x = inputs(layer)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = layer(x)
    b, i = x.shape
    c = layer.coef.shape[-1]
    expected = x.numel() + layer.grid.numel() + sum(p.numel() for p in layer.parameters())
    if weights_need_grad:
        expected += b * i * (c + 1)
    assert sum(t.numel() for t in saved) == expected
    gx = torch.autograd.grad(y.sum(), x)[0]
    ref = copy.deepcopy(layer)
    ref.path = "reference"
    torch.testing.assert_close(gx, torch.autograd.grad(ref(x).sum(), x)[0], rtol=1e-12, atol=1e-12)


@slow
def test_double_backward_through_the_reference_ops() -> None:
    layer, ref = make("compiled")
    x = inputs(layer, n=6)
    assert torch.autograd.gradgradcheck(lambda x: layer(x), (x,))
    for model in (layer, ref):
        model.zero_grad()
    hess = [torch.autograd.grad(torch.autograd.grad(m(x).square().sum(), x, create_graph=True)[0].sum(),
                                m.coef)[0] for m in (layer, ref)]
    torch.testing.assert_close(hess[0], hess[1], rtol=1e-12, atol=1e-12)


@slow
def test_inside_the_callers_torch_compile() -> None:
    # torch.compile(model) traces the layer's plain ops (CompiledKAN's saved features cannot cross
    # dynamo's autograd.Function capture); outputs and gradients still match the reference.
    layer, ref = make("compiled")
    layer.check_finite = ref.check_finite = False  # its .item() would split the graph
    x = inputs(layer, n=10)
    assert_same(torch.compile(layer, fullgraph=True), ref, x, rtol=1e-12)  # type: ignore[arg-type]
