"""The symbolic layer's cached edge layout and hand-written backward (symbolic.fixed_edges,
training.hand_objective): outputs against a naive per-edge sum, gradients against autograd and
gradcheck, the library's derivatives against autograd, and train() on the hand objective."""

from __future__ import annotations

import gc
import math
import pickle
from types import SimpleNamespace

import pytest
import torch

from kanlab.layers.kan import native_build
from kanlab.layers.kan.layer import KANLinear
from kanlab.models.stack import Stack
from kanlab.symbolic import fixed_edges
from kanlab.symbolic import library as symlib
from kanlab.symbolic.fixed_edges import FixedLayer
from kanlab.symbolic.layer import SymbolicKANLinear
from kanlab.training import native_objective
from kanlab.training.config import TrainConfig
from kanlab.training.hand_objective import Buffers, Values, hand_objective
from kanlab.training.loop import train

F64 = torch.float64
native = pytest.mark.skipif(not native_build.available(F64), reason="no C compiler builds the native kernels")


def naive(layer: SymbolicKANLinear, x: torch.Tensor) -> torch.Tensor:
    """The layer's output edge by edge: the spline's own response, or c * f(a * x + b) + d."""
    spline = layer.kan.edge_responses(x)                                            # (b, o, i)
    y = torch.zeros(len(x), layer.out_features, dtype=x.dtype)
    for o in range(layer.out_features):
        for i in range(layer.in_features):
            name = layer.function_name(o, i)
            if name is None:
                y[:, o] += spline[:, o, i]
            else:
                a, b, c, d = layer.constants(o, i)
                y[:, o] += c * symlib.get(name).torch_fn(a * x[:, i] + b) + d
    return y if layer.kan.bias is None else y + layer.kan.bias.detach()


def inputs(n: int = 50, d: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64) * 1.6 - 0.8


def layer_of(i: int = 3, o: int = 2, seed: int = 0) -> SymbolicKANLinear:
    torch.manual_seed(seed)
    kan = KANLinear(i, o, dtype=F64)
    with torch.no_grad():
        kan.bias.uniform_(-1, 1)
    return SymbolicKANLinear(kan)


def fix_all(layer: SymbolicKANLinear, names: list[str]) -> None:
    for k, (o, i) in enumerate((o, i) for o in range(layer.out_features) for i in range(layer.in_features)):
        layer.fix(o, i, names[k % len(names)], 0.8 + 0.1 * k, 0.3 - 0.1 * k, 1.2 - 0.3 * k, 0.1 * k)


# ---- the library's derivatives -------------------------------------------------------------------
def test_every_library_derivative_is_autograds_through_torch_fn() -> None:
    # Around zero, the poles (TINY = 1e-8), where sqrt/log clamp, and tan's pole at pi/2.
    special = [0.0, 1e-9, -1e-9, 1e-8, -1e-8, 2e-8, math.pi / 2, -math.pi / 2, 1e-3, -1e-3]
    u = torch.cat([torch.linspace(-4, 4, 81, dtype=F64), torch.tensor(special, dtype=F64)])
    for f in symlib.LIBRARY.values():
        v = u.clone().requires_grad_()
        out = f.torch_fn(v)
        (want,) = torch.autograd.grad(out.sum(), v, allow_unused=True) if out.requires_grad else (None,)
        want = torch.zeros_like(u) if want is None else want
        torch.testing.assert_close(f.derivative(u), want, rtol=1e-13, atol=0, msg=f.name)


# ---- the layer's forward: cached layout --------------------------------------------------------
def test_forward_equals_the_naive_sum_whatever_is_fixed() -> None:
    layer, x = layer_of(), inputs()
    torch.testing.assert_close(layer(x), naive(layer, x), rtol=1e-12, atol=1e-12)  # no edge fixed
    layer.fix(0, 1, "sin", 3.0, 1.0, 2.0, -0.5)
    layer.fix(1, 2, "x^2", 1.0, 0.2, -1.5, 0.3)
    layer.fix(1, 0, "sin", -2.0, 0.1, 0.5, 0.0)  # two edges share a function
    torch.testing.assert_close(layer(x), naive(layer, x), rtol=1e-12, atol=1e-12)
    fix_all(layer, ["exp", "tanh", "1/x", "x"])
    torch.testing.assert_close(layer(x), naive(layer, x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.edge_responses(x).sum(2) + layer.kan.bias, naive(layer, x))


def test_the_cached_layout_follows_fix_unfix_writes_and_load_state_dict() -> None:
    # Each change of fn_index comes right after a forward that cached the old layout.
    layer, x = layer_of(), inputs()
    layer(x)
    layer.fix(0, 0, "sin", 2.0, 0.5, 1.5, -0.2)
    torch.testing.assert_close(layer(x), naive(layer, x), rtol=1e-12, atol=1e-12)
    layer.fix(1, 1, "x^3", 1.0, 0.1, 0.7, 0.0)
    torch.testing.assert_close(layer(x), naive(layer, x), rtol=1e-12, atol=1e-12)
    layer.fix(0, 0, "exp", 0.5, 0.0, 1.0, 0.0)  # another function on the same edge
    torch.testing.assert_close(layer(x), naive(layer, x), rtol=1e-12, atol=1e-12)
    layer.unfix(1, 1)
    torch.testing.assert_close(layer(x), naive(layer, x), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        layer.fn_index[1, 2] = symlib.NAMES.index("tanh")  # a direct write
    torch.testing.assert_close(layer(x), naive(layer, x), rtol=1e-12, atol=1e-12)
    other = layer_of(seed=1)
    fix_all(other, ["gaussian", "x^2"])
    other(x)
    other.load_state_dict(layer.state_dict())  # fewer fixed edges than it had
    torch.testing.assert_close(other(x), naive(layer, x), rtol=1e-12, atol=1e-12)
    layer.unfix(0, 0)
    layer.unfix(1, 2)
    torch.testing.assert_close(layer(x), layer.kan(x))  # none fixed again: the spline layer itself


def test_a_layer_with_its_layout_cached_still_pickles() -> None:
    layer, x = layer_of(), inputs()
    layer.fix(0, 0, "x^2", 1.0, 0.2, 0.5, 0.0)  # a lambda in the library
    layer(x)
    copy = pickle.loads(pickle.dumps(layer))
    torch.testing.assert_close(copy(x), naive(layer, x), rtol=1e-12, atol=1e-12)
    copy.unfix(0, 0)
    torch.testing.assert_close(copy(x), copy.kan(x))


def test_mixed_layer_gradcheck() -> None:
    layer, x = layer_of(i=2, o=2), inputs(n=6, d=2).requires_grad_()
    layer.fix(0, 1, "sin", 2.0, 0.3, 1.1, 0.2)
    layer.fix(1, 1, "x^2", 1.0, -0.1, 0.6, 0.0)
    params = (layer.affine, layer.kan.coef, layer.kan.bias)
    assert torch.autograd.gradcheck(lambda x, *p: layer(x), (x, *params))


# ---- the hand objective ---------------------------------------------------------------------------
def autograd_reference(model: torch.nn.Module, params: list[torch.Tensor], x: torch.Tensor,
                       y: torch.Tensor) -> tuple[float, torch.Tensor]:
    loss = torch.mean((model(x) - y) ** 2)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return float(loss.detach()), torch.cat([torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1)
                                   for p, g in zip(params, grads, strict=True)])


def stacks() -> dict[str, Stack]:
    torch.manual_seed(0)

    def symbolic_stack() -> Stack:
        return Stack([SymbolicKANLinear(KANLinear(3, 2, dtype=F64)),
                      SymbolicKANLinear(KANLinear(2, 1, dtype=F64))])

    autofix = symbolic_stack()
    fix_all(autofix.layers[0], ["sin", "x^2", "exp"])  # the auto-fix stage: layer 0 fixed, layer 1 splines
    symbolic = symbolic_stack()
    fix_all(symbolic.layers[0], ["tanh", "sigmoid", "J0", "sqrt", "0", "x"])  # sqrt clamps
    fix_all(symbolic.layers[1], ["log", "abs"])  # log clamps, abs kinks: inputs on both sides
    spline_first = Stack([KANLinear(3, 2, dtype=F64), SymbolicKANLinear(KANLinear(2, 1, dtype=F64))])
    fix_all(spline_first.layers[1], ["gaussian", "arctan"])  # gradient through it into the kernels
    no_bias = Stack([SymbolicKANLinear(KANLinear(3, 2, bias=False, dtype=F64)),
                     SymbolicKANLinear(KANLinear(2, 1, dtype=F64))])
    fix_all(no_bias.layers[0], ["cos", "x^3", "1/x"])  # the C kernels without a bias to read or write
    return {"autofix": autofix, "symbolic": symbolic, "spline-first": spline_first, "no-bias": no_bias}


@native
@pytest.mark.parametrize("name", ["autofix", "symbolic", "spline-first", "no-bias"])
def test_loss_and_gradient_equal_autograds(name: str) -> None:
    model = stacks()[name]
    params = list(model.parameters())
    x = inputs(n=300)
    y = torch.sin(3 * x[:, :1]) * x[:, 1:2]
    objective = hand_objective(model, params, x, y)
    assert objective is not None
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    # The second point is read from the vector alone (the model stays); the first result must
    # survive the second call (LBFGS keeps its gradients).
    results = [objective(flat), objective(flat + 0.01)]
    wants = [autograd_reference(model, params, x, y)]
    with torch.no_grad():
        for p in params:
            p.add_(0.01)
    wants.append(autograd_reference(model, params, x, y))
    for (loss, grad), (want_loss, want_grad) in zip(results, wants, strict=True):
        assert loss == pytest.approx(want_loss, rel=1e-12)
        torch.testing.assert_close(grad, want_grad, rtol=1e-11, atol=1e-12 * want_grad.abs().max().item())


@native
def test_refuses_what_it_cannot_compute() -> None:
    model, x = stacks()["autofix"], inputs()
    y = x[:, :1]
    params = list(model.parameters())
    assert hand_objective(model, params, x, y) is not None
    assert hand_objective(model, params, x.float(), y.float()) is None  # another dtype
    assert hand_objective(model, [*params, torch.zeros(2, dtype=F64, requires_grad=True)], x, y) is None
    read = model.layers[1].kan.coef
    assert hand_objective(model, [p for p in params if p is not read], x, y) is None  # trained elsewhere
    read.requires_grad_(False)  # trained by no one: read as it is
    assert hand_objective(model, [p for p in params if p is not read], x, y) is not None
    model.layers[1].fix(0, 0, "sin")  # a layer half fixed: autograd's
    assert hand_objective(model, params, x, y) is None


@native
def test_train_uses_it_and_follows_the_closure(monkeypatch: pytest.MonkeyPatch) -> None:
    x = inputs(n=200)
    y = torch.exp(torch.sin(2 * x[:, :1]) + x[:, 1:2] ** 2)
    data = SimpleNamespace(x_train=x, y_train=y, x_test=x[:50], y_test=y[:50])
    built: list[object] = []
    monkeypatch.setattr(native_objective, "hand_objective",
                        lambda *args: built.append(hand_objective(*args)) or built[-1])
    # Two steps: from the third on, LBFGS on this fit turns round-off into differences of 1e-6
    # (a gradient perturbed by 1e-15 relative on the closure's path does the same).
    losses = {clip: [r["train_loss"] for r in train(stacks()["autofix"], data, TrainConfig(
        optimizer="lbfgs", lr=1.0, dtype="float64", steps=2, eval_every=1, grad_clip=clip)).records]
        for clip in (None, 1e30)}  # any gradient clipping needs the closure
    assert len(built) == 2 and None not in built
    assert losses[None][-1] < 0.01 * losses[None][0]
    torch.testing.assert_close(torch.tensor(losses[None]), torch.tensor(losses[1e30]), rtol=1e-8, atol=0)


@native
def test_a_moved_grid_first_seen_by_the_objective_still_trains_by_autograd() -> None:
    # The objective runs in inference mode; the cell table of a moved grid it is the first to ask
    # for is cached (_native.cells) and read later by the autograd path, which must be able to
    # save it for backward: an inference tensor there would fail.
    model = stacks()["spline-first"]
    x = inputs(n=300)
    y = torch.sin(3 * x[:, :1]) * x[:, 1:2]
    with torch.no_grad():
        model.layers[0].update_grid(x**3)  # moved knots: a new table, not yet built
    assert not model.layers[0].uniform
    params = list(model.parameters())
    objective = hand_objective(model, params, x, y)
    assert objective is not None
    loss, grad = objective(torch.cat([p.detach().reshape(-1) for p in params]))
    want_loss, want_grad = autograd_reference(model, params, x, y)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-11, atol=1e-12 * want_grad.abs().max().item())


# ---- the fixed layer's C kernels (layers/kan/_native_fixed.c) ------------------------------------
def fixed_layer_calls(layer: SymbolicKANLinear, x: torch.Tensor, gy: torch.Tensor) -> list[torch.Tensor]:
    """A fully fixed layer bound as the hand objective binds it: [output, d/d affine, d/d bias, d/d x]."""
    hand = layer.by_hand()
    assert isinstance(hand, FixedLayer)
    affine, bias = layer.affine.detach(), layer.kan.bias.detach()
    got = [x.new_empty(len(x), layer.out_features), torch.empty_like(affine), torch.empty_like(bias),
           torch.empty_like(x)]
    bound = hand.bind(Buffers(x, got[0], gy, got[3]), Values([affine, bias]), Values(got[1:3]))
    bound.forward()
    bound.backward()
    return got


@native
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_the_c_kernels_give_every_library_function_as_its_torch_form(
        monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    # u = x on every edge (a = 1, b = 0): around zero, the poles (TINY = 1e-8), where sqrt/log clamp,
    # tan's pole at pi/2, and a NaN; the torch operations (C_CODES emptied) are the reference.
    special = [0.0, 1e-9, -1e-9, 1e-8, -1e-8, 2e-8, math.pi / 2, -math.pi / 2, 1e-3, -1e-3, math.nan]
    u = torch.cat([torch.linspace(-4, 4, 81, dtype=F64), torch.tensor(special, dtype=F64)]).unsqueeze(1)
    names = [name for name in symlib.NAMES if name != "J0"]  # J0: the torch form always (C_CODES)
    assert set(fixed_edges.C_CODES) == set(names)
    layer = SymbolicKANLinear(KANLinear(1, len(names), dtype=F64)).to(dtype)
    for o, name in enumerate(names):
        layer.fix(o, 0, name, 1.0, 0.0, 1.5 - 0.1 * o, 0.05 * o)
    gy = torch.linspace(-1, 1, len(u) * len(names), dtype=dtype).view(len(u), len(names))
    x = u.to(dtype)
    got = fixed_layer_calls(layer, x, gy)
    monkeypatch.setattr(fixed_edges, "C_CODES", {})
    want = fixed_layer_calls(layer, x, gy)
    assert type(layer.by_hand().bind(Buffers(x, got[0], gy, None), Values([layer.affine.detach(), None]),  # type: ignore[union-attr]
                                     Values([None, None]))).__name__ == "_BoundFixed"
    tol = {"rtol": 1e-12, "atol": 1e-13} if dtype == F64 else {"rtol": 2e-5, "atol": 1e-5}
    # the output and d/d affine, d/d bias column by column (NaN where the torch form gives NaN)
    for o, name in enumerate(names):
        torch.testing.assert_close(got[0][:, o], want[0][:, o], equal_nan=True, **tol, msg=name)
        scale = want[1][o].nan_to_num().abs().max().item()
        torch.testing.assert_close(got[1][o], want[1][o], equal_nan=True, rtol=tol["rtol"],
                                   atol=tol["atol"] * max(scale, 1.0), msg=name)
    torch.testing.assert_close(got[2], want[2], equal_nan=True, **tol)
    torch.testing.assert_close(got[3], want[3], equal_nan=True, rtol=tol["rtol"],
                               atol=tol["atol"] * want[3].nan_to_num().abs().max().item())


@native
def test_the_c_kernels_refuse_an_unknown_function_code() -> None:
    layer, x = layer_of(i=2, o=1), inputs(d=2)
    fix_all(layer, ["sin"])
    hand = layer.by_hand()
    assert isinstance(hand, FixedLayer) and hand.codes is not None
    hand.codes[0, 1] = len(fixed_edges.C_CODES)
    bound = hand.bind(Buffers(x, x.new_empty(len(x), 1), x.new_empty(len(x), 1), None),
                      Values([layer.affine.detach(), layer.kan.bias.detach()]), Values([None, None]))
    with pytest.raises(RuntimeError, match="status 2"):
        bound.forward()


@native
def test_the_objective_holds_every_buffer_its_kernels_write() -> None:
    # Two spline layers bound to the native kernels: the gradient between them lives in a buffer
    # that only the kernels' argument lists named by address. Freed once hand_objective returned,
    # the backward wrote into whatever was allocated there next (a segfault in CI's slow suite).
    torch.manual_seed(0)
    model = Stack([SymbolicKANLinear(KANLinear(2, 3, dtype=F64)),
                   SymbolicKANLinear(KANLinear(3, 1, dtype=F64))])
    params = list(model.parameters())
    x = inputs(n=300, d=2)
    y = torch.sin(3 * x[:, :1]) * x[:, 1:2]
    objective = hand_objective(model, params, x, y)
    assert objective is not None
    gc.collect()
    fillers = [torch.full((300, 3), 7.0, dtype=F64) for _ in range(20)]  # take the freed blocks, if any
    loss, grad = objective(torch.cat([p.detach().reshape(-1) for p in params]))
    assert all(bool((f == 7.0).all()) for f in fillers)
    want_loss, want_grad = autograd_reference(model, params, x, y)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-11, atol=1e-12 * want_grad.abs().max().item())
