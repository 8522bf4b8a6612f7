"""The dense, gather and native paths of KANLinear against the reference path: values, gradients, memory."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kanlab import KANLinear, splines
from kanlab.layers.kan import _fast, _fast_dense, _fast_gather, _native_gather, native_build, paths

# native only where a C compiler builds it (tests/test_native.py covers the fallback). "gather"
# runs the compiled loops of _native_gather where they build; "gather-bags" is the same path on its
# embedding bags, as on CUDA or without a compiler.
FAST = ["dense", "gather", "gather-bags"] + (["native"] if native_build.available(torch.float64) else [])


def force_bags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native_gather, "kernels", lambda x, coef: None)


@pytest.fixture(autouse=True)
def _bags_where_asked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("path") == "gather-bags":
        force_bags(monkeypatch)


def real(path: str) -> str:
    """The KANLinear path behind a FAST entry."""
    return "gather" if path == "gather-bags" else path


def runs_on(path: str, device: torch.device) -> None:
    """Skip a FAST entry that cannot run on device: native is C loops on the CPU only (on CUDA,
    gather and gather-bags both run the embedding bags)."""
    if path == "native" and device.type != "cpu":
        pytest.skip("the native path runs on the CPU only")
SWITCHES = list(
    itertools.product([True, False], [True, False], ["silu", "identity", "tanh", None], [True, False])
)


def make(path: str, *, order: int = 3, grid_size: int = 5, uniform: bool = True,
         switches: tuple = (True, True, "silu", True), dtype: torch.dtype = torch.float64,  # type: ignore[type-arg]
         device: torch.device | str = "cpu") -> tuple[KANLinear, KANLinear]:
    """A layer on `path` and a reference-path twin with the same parameters and knots, on device
    (built on the CPU, so the same values on every device)."""
    bias, spline_weight, base, base_weight = switches
    torch.manual_seed(0)
    layer = KANLinear(3, 4, grid_size, order, bias=bias, spline_weight=spline_weight, base=base,
                      base_weight=base_weight, init="uniform", path=real(path)).to(dtype)
    if not uniform:
        g = torch.Generator().manual_seed(1)
        layer.update_grid((torch.rand(400, 3, generator=g, dtype=torch.float64) ** 2 * 2.4 - 1.2).to(dtype),
                          grid_eps=0.0)
        assert not layer.uniform
    layer.to(device)
    ref = copy.deepcopy(layer)
    ref.path = "reference"
    return layer, ref


def inputs(layer: KANLinear, dtype: torch.dtype = torch.float64, n: int = 60) -> torch.Tensor:
    """Inside, at every knot (so at both grid edges and the extension's ends) and far outside; on
    the layer's device."""
    g = torch.Generator().manual_seed(2)
    inside = torch.rand(n, 3, generator=g, dtype=torch.float64) * 2.0 - 1.0
    knots = layer.grid.T.to("cpu", torch.float64)                             # (m, 3)
    outside = torch.tensor([[-50.0, 3.0, -1.9], [7.5, -7.5, 1e6], [-1e6, 0.0, 2.5]], dtype=torch.float64)
    mixed = torch.stack([knots[0], knots[-1], inside[0]], 1)                  # (3, 3)
    return torch.cat([inside, knots, outside, mixed]).to(layer.coef.device, dtype).requires_grad_(True)


def assert_same(layer: KANLinear, ref: KANLinear, x: torch.Tensor, rtol: float) -> None:
    """Outputs and the gradients w.r.t. x and every parameter agree to rtol relative to their scale."""
    y, y_ref = layer(x), ref(x)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(y)
    names = [n for n, _ in layer.named_parameters()]
    grads = torch.autograd.grad(y, [x, *layer.parameters()], gy)
    grads_ref = torch.autograd.grad(y_ref, [x, *ref.parameters()], gy)
    for name, got, want in zip(["output", "x", *names], [y, *grads], [y_ref, *grads_ref], strict=True):
        scale = want.abs().max().item() or 1.0
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("uniform", [True, False], ids=["uniform", "quantile-grid"])
@pytest.mark.parametrize("order", range(6))
@pytest.mark.parametrize("path", FAST)
def test_every_order_matches_reference_float64(path: str, order: int, uniform: bool,
                                               device: torch.device) -> None:
    runs_on(path, device)
    layer, ref = make(path, order=order, grid_size=4, uniform=uniform, device=device)
    assert_same(layer, ref, inputs(layer), rtol=1e-12)


@pytest.mark.parametrize("switches", [(True, True, "silu", True), (False, False, None, False)])
def test_dense_path_in_batch_chunks_matches_reference(
    monkeypatch: pytest.MonkeyPatch, switches: tuple  # type: ignore[type-arg]
) -> None:
    # Large batches go through the dense path in chunks; a tiny chunk size makes these inputs span
    # several chunks, the last one partial.
    monkeypatch.setattr(_fast_dense, "CHUNK_BYTES", 2000)  # 5 rows of 3 float64 inputs
    layer, ref = make("dense", switches=switches)
    assert_same(layer, ref, inputs(layer), rtol=1e-12)


@pytest.mark.parametrize("chunk_bytes", [2000, 1 << 22], ids=["chunks", "one-chunk-kept"])
def test_dense_second_backward_through_a_retained_graph(monkeypatch: pytest.MonkeyPatch,
                                                        chunk_bytes: int) -> None:
    # One chunk: backward reuses (and overwrites) the forward's features; a second backward through
    # the retained graph must rebuild them and get the same gradients as the reference.
    monkeypatch.setattr(_fast_dense, "CHUNK_BYTES", chunk_bytes)
    layer, ref = make("dense")
    x = inputs(layer)
    y = layer(x)
    first = torch.autograd.grad(y.sum(), [x, *layer.parameters()], retain_graph=True)
    second = torch.autograd.grad(y.sum(), [x, *layer.parameters()])
    want = torch.autograd.grad(ref(x).sum(), [x, *ref.parameters()])
    for a, b, w in zip(first, second, want, strict=True):
        torch.testing.assert_close(a, w, rtol=1e-12, atol=1e-12 * (w.abs().max().item() or 1.0))
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_dense_keeps_features_for_backward_only_within_one_chunk() -> None:
    # The kept buffer is held on ctx (saved_tensors_hooks do not see it), so the bound that keeps
    # backward memory O(b * i * (k + 1)) is checked here: a batch past one chunk keeps nothing.
    layer = KANLinear(16, 8, 5, path="dense")
    rows_per_chunk = _fast_dense.CHUNK_BYTES // ((5 + 3 + 2 * 3 + 2) * 16 * 4)  # float32 rows
    small = layer(torch.rand(rows_per_chunk, 16, requires_grad=True))
    large = layer(torch.rand(rows_per_chunk + 1, 16, requires_grad=True))
    buf, _ = small.grad_fn.kept  # type: ignore[union-attr]
    assert buf is not None and buf.numel() * buf.element_size() <= _fast_dense.CHUNK_BYTES
    assert large.grad_fn.kept == (None, None)  # type: ignore[union-attr]


@pytest.mark.parametrize("uniform", [True, False], ids=["uniform", "quantile-grid"])
def test_gather_table_gradient_with_a_bag_per_row_matches_reference(
    monkeypatch: pytest.MonkeyPatch, uniform: bool
) -> None:
    # Large tables take one bag per table row (the other branch of _table_grad).
    force_bags(monkeypatch)
    monkeypatch.setattr(_fast_gather, "BAG_PER_SHIFT_BYTES", 0)
    layer, ref = make("gather", grid_size=7, uniform=uniform)
    assert_same(layer, ref, inputs(layer), rtol=1e-12)


@pytest.mark.parametrize("block_bytes", [0, 1200], ids=["one-input-blocks", "two-input-blocks"])
def test_gather_forward_in_blocks_of_inputs_matches_reference(
    monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    # Large tables are read in blocks of inputs (_gather_sum). At grid 7 an input has 18 rows of 4
    # float64 (576 bytes): 1200 bytes make blocks of two, so the 3 inputs give a full and a partial one.
    force_bags(monkeypatch)
    monkeypatch.setattr(_fast_gather, "TABLE_BLOCK_BYTES", block_bytes)
    layer, ref = make("gather", grid_size=7)
    assert_same(layer, ref, inputs(layer), rtol=1e-12)


def test_gather_input_gradient_in_chunks_of_inputs_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # dx goes in chunks of inputs (_sampled_dots); 80 samples x 4 outputs x 2 inputs per chunk make
    # the 3 inputs a full chunk and a partial one.
    x_rows, outputs = 80, 4
    force_bags(monkeypatch)
    monkeypatch.setattr(_fast_gather, "DOTS_CHUNK_ELEMS", 2 * x_rows * outputs)
    layer, ref = make("gather", grid_size=7)
    x = inputs(layer)
    assert x.shape[0] == x_rows and layer.out_features == outputs
    assert_same(layer, ref, x, rtol=1e-12)


@pytest.mark.parametrize("uniform", [True, False], ids=["uniform", "quantile-grid"])
@pytest.mark.parametrize("grid_size", [5, 20])
@pytest.mark.parametrize("path", FAST)
def test_float32_matches_reference(path: str, grid_size: int, uniform: bool, device: torch.device) -> None:
    runs_on(path, device)
    layer, ref = make(path, grid_size=grid_size, uniform=uniform, dtype=torch.float32, device=device)
    x = inputs(layer, torch.float32)
    assert_same(layer, ref, x, rtol=1e-5)
    # and against the float64 truth, not only against the float32 reference
    truth = copy.deepcopy(ref).double()
    torch.testing.assert_close(layer(x).double(), truth(x.double()), rtol=1e-5,
                               atol=1e-5 * truth(x.double()).abs().max().item())


@pytest.mark.parametrize("switches", SWITCHES, ids=str)
@pytest.mark.parametrize("path", FAST)
def test_every_switch_combination(path: str, switches: tuple) -> None:  # type: ignore[type-arg]
    layer, ref = make(path, switches=switches)
    assert_same(layer, ref, inputs(layer), rtol=1e-12)


@pytest.mark.parametrize(("uniform", "order"), [(True, 3), (True, 1), (False, 2), (False, 0)])
@pytest.mark.parametrize("path", FAST)
def test_gradcheck(path: str, uniform: bool, order: int, device: torch.device) -> None:
    runs_on(path, device)
    layer, _ = make(path, order=order, uniform=uniform, device=device)
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())
    # Off the knots (finite differences straddling a knot see the jump of order 0 and 1 derivatives).
    x = (torch.linspace(-1.37, 1.29, 8, dtype=torch.float64).unsqueeze(1) * torch.tensor([1.0, 0.7, 1.5],
         dtype=torch.float64)).to(device).requires_grad_(True)

    def fn(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params))


@pytest.mark.parametrize("path", FAST)
def test_input_without_grad_and_frozen_parameters(path: str) -> None:
    layer, ref = make(path)
    x = inputs(layer).detach()
    layer.coef.requires_grad_(False)
    ref.coef.requires_grad_(False)
    (g,) = torch.autograd.grad(layer(x).sum(), [layer.spline_weight])
    (g_ref,) = torch.autograd.grad(ref(x).sum(), [ref.spline_weight])
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", FAST)
def test_update_grid_and_refine_work_on_every_path(path: str) -> None:
    layer, ref = make(path)
    x = inputs(layer).detach()
    data = torch.rand(300, 3, dtype=torch.float64) * 1.6 - 0.7
    for m in (layer, ref):
        m.update_grid(data, grid_eps=0.3)
    assert not layer.uniform
    assert_same(layer, ref, inputs(layer), rtol=1e-12)
    for m in (layer, ref):
        m.refine(11)
        m.update_grid(data, grid_eps=1.0)  # uniform again, over the data's range
    assert layer.uniform and layer.grid_size == 11
    assert_same(layer, ref, inputs(layer), rtol=1e-12)
    assert layer(x).shape == (x.shape[0], 4)


def test_auto_gathers_where_the_kernels_build(monkeypatch: pytest.MonkeyPatch) -> None:
    # 16 -> 16 is past the layers auto runs natively (tests/test_native.py)
    if native_build.available(torch.float32):
        assert KANLinear(16, 16, grid_size=5).resolved_path() == "gather"
        assert KANLinear(16, 16, grid_size=5).double().resolved_path() == "gather"
    monkeypatch.setattr(native_build, "available", lambda dtype, asked=False: False)
    assert KANLinear(16, 16, grid_size=5).resolved_path() == "dense"  # the embedding bags lose there
    assert KANLinear(16, 16, grid_size=100).resolved_path() == "gather"
    assert KANLinear(16, 16, grid_size=100, path="dense").resolved_path() == "dense"
    assert KANLinear(2, 2, grid_size=3, order=0).resolved_path() in FAST  # every order is supported
    layer = KANLinear(16, 16, grid_size=5)
    layer.refine(100)
    assert layer.resolved_path() == "gather"  # follows the grid as it is refined


F32, F64 = torch.float32, torch.float64
# (path asked, in, out, grid_size, order, uniform, dtype) -> the path a layer off the CPU runs: never
# native nor gather's C kernels (on CUDA gather is its embedding bags); dense up to
# grid_size + order + 1 == paths.GATHER_FROM * (order + 1) columns, then gather; compiled as asked
# where its closed form holds (uniform grid, order >= 2)
OFF_CPU = [
    (("auto", 2, 5, 5, 3, True, F64), "dense"),          # on CPU: native (<= 128 edges)
    (("auto", 8, 16, 5, 3, True, F32), "dense"),         # on CPU: native
    (("auto", 64, 64, 5, 3, True, F32), "dense"),        # on CPU: gather's C kernels
    (("auto", 64, 64, 12, 3, True, F32), "dense"),       # 16 columns = 4 * (k + 1): not past it
    (("auto", 64, 64, 13, 3, True, F32), "gather"),
    (("auto", 64, 64, 100, 3, False, F64), "gather"),
    (("auto", 16, 16, 6, 1, True, F32), "dense"),        # 8 = 4 * 2
    (("auto", 16, 16, 7, 1, False, F32), "gather"),
    (("auto", 16, 16, 3, 0, True, F64), "dense"),
    (("auto", 16, 16, 4, 0, True, F64), "gather"),
    (("native", 2, 5, 5, 3, True, F64), "dense"),        # native asked: CPU only, runs auto's choice
    (("native", 2, 5, 100, 3, True, F32), "gather"),
    (("compiled", 2, 5, 5, 3, True, F32), "compiled"),   # on CPU: native, faster there
    (("compiled", 64, 64, 100, 2, True, F64), "compiled"),
    (("compiled", 64, 64, 5, 1, True, F32), "dense"),    # closed form needs order >= 2
    (("compiled", 64, 64, 20, 3, False, F32), "gather"), # and a uniform grid
    (("gather", 64, 64, 5, 3, True, F32), "gather"),     # asked by name: as asked
    (("dense", 64, 64, 100, 3, True, F32), "dense"),
    (("reference", 2, 5, 5, 3, True, F32), "reference"),
]


@pytest.mark.parametrize(("layer", "runs"), OFF_CPU, ids=str)
def test_a_layer_off_the_cpu_never_runs_the_c_kernels(monkeypatch: pytest.MonkeyPatch, layer: tuple,  # type: ignore[type-arg]
                                                      runs: str) -> None:
    # CUDA faked: a layer on the meta device is off the CPU as a CUDA one is, to KANLinear and
    # paths.choose_path alike. Asking whether the C kernels build would be the bug.
    def asked(*args: object, **kwargs: object) -> bool:
        raise AssertionError("asked whether the C kernels build for a layer off the CPU")

    monkeypatch.setattr(native_build, "available", asked)
    path, i, o, grid_size, order, uniform, dtype = layer
    assert paths.choose_path(paths.Layer(path, i * o, grid_size, order, uniform, False, dtype)) == runs
    kan = KANLinear(i, o, grid_size, order, path=path, device="meta", dtype=dtype)
    kan.uniform = uniform  # as update_grid leaves it (meta tensors hold no data to move knots by)
    assert kan.resolved_path() == runs


@pytest.mark.parametrize("path", FAST)
def test_saved_for_backward_grows_with_order_not_grid(path: str) -> None:
    # The promise: what autograd keeps for backward is O(b * i * (k + 1)) (plus parameter-sized
    # tensors), never O(b * i * (grid_size + k)).
    def saved_numel(grid_size: int, batch: int, order: int = 3) -> int:
        layer = KANLinear(16, 8, grid_size, order, path=real(path))
        x = torch.rand(batch, 16, requires_grad=True)
        total = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            total[0] += t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            layer(x).sum().backward()
        return total[0]

    per_sample = {g: (saved_numel(g, 512) - saved_numel(g, 256)) / 256 for g in (5, 50)}
    # Per input: slots, values and derivatives of the k + 1 = 4 local bases, plus x and b(x) for
    # the base branch (and x for double backward); the dense basis alone is grid_size + 3 per input.
    assert per_sample[5] <= 16 * (3 * (3 + 1) + 4), per_sample
    assert per_sample[50] == per_sample[5]  # the grid adds nothing per sample


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("path", FAST)
def test_second_derivatives_go_through_the_general_path(path: str, uniform: bool) -> None:
    layer, ref = make(path, uniform=uniform)
    x = inputs(layer).detach()[:40].requires_grad_(True)
    got, want = [torch.autograd.grad(m(x).square().sum(), x, create_graph=True)[0] for m in (layer, ref)]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    second = torch.autograd.grad(got.sum(), [x, *layer.parameters()])
    second_ref = torch.autograd.grad(want.sum(), [x, *ref.parameters()])
    for g, w in zip(second, second_ref, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())

    def fn(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x,))

    xs = torch.linspace(-1.37, 1.29, 6, dtype=torch.float64).unsqueeze(1).repeat(1, 3).requires_grad_(True)
    assert torch.autograd.gradgradcheck(fn, (xs, *params))


@pytest.mark.parametrize("order", range(6))
def test_closed_form_local_values_match_the_recursion(order: int) -> None:
    # The cardinal B-spline's pieces by the Cox-de Boor recursion on integer knots, in floats,
    # against cardinal_coefficients' exact polynomials evaluated at the same s.
    s = torch.linspace(0.0, 1.0, 97, dtype=torch.float64)[:-1]
    values = torch.ones(len(s), 1, dtype=torch.float64)
    for d in range(1, order + 1):
        pad = torch.zeros(len(s), 1, dtype=torch.float64)
        lower, upper = torch.cat([pad, values], 1), torch.cat([values, pad], 1)
        r = torch.arange(d + 1, dtype=torch.float64)
        values = ((s.unsqueeze(1) + d - r) * lower + (1 - s.unsqueeze(1) + r) * upper) / d
    coef = np.array(splines.cardinal_coefficients(order))                   # (k + 1, k + 1)
    poly = coef @ np.vander(s.numpy(), order + 1, increasing=True).T        # (k + 1, n)
    np.testing.assert_allclose(poly.T, values.numpy(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(poly.sum(0), 1.0, atol=1e-14)  # partition of unity


@pytest.mark.parametrize("uniform", [True, False])
def test_local_basis_derivative_matches_autograd_of_reference(uniform: bool) -> None:
    layer, _ = make("dense", uniform=uniform)
    x = (torch.rand(50, 3, dtype=torch.float64) * 2.6 - 1.3)
    start, values, dvalues = _fast.local_basis(x, layer.grid, 3, layer.uniform, derivative=True)
    xr = x.clone().requires_grad_(True)
    dense = splines.bspline_basis(xr, layer.grid, 3)                          # (b, i, c)
    c = dense.shape[-1]
    n = start + torch.arange(4).view(4, 1, 1)                                 # (k + 1, b, i)
    inside = (n >= 0) & (n < c)
    picked = dense.permute(2, 0, 1).gather(0, n.clamp(0, c - 1)) * inside     # (k + 1, b, i)
    torch.testing.assert_close(values * inside, picked.detach(), rtol=0, atol=1e-13)
    for r in range(4):
        (g,) = torch.autograd.grad(picked[r].sum(), xr, retain_graph=True)
        torch.testing.assert_close(dvalues[r] * inside[r], g, rtol=0, atol=1e-11)


@pytest.mark.parametrize("path", ["uniform", *FAST])
def test_a_nan_input_reaches_the_same_outputs_and_gradients_as_on_the_reference(path: str) -> None:
    assert_nan_like_reference(path, itertools.product((0, 1, 3), (True, False), ("silu", None)))


def assert_nan_like_reference(path: str, cases: Iterable[tuple[int, bool, str | None]]) -> None:
    """check_finite=False lets a NaN through. The reference's Cox-de Boor row of a NaN input is NaN
    at every order, so its sample's outputs and every gradient of its edges' parameters are NaN;
    nothing else is. Every path must agree, with a finite output gradient and with the MSE's
    (which is NaN on that sample's row). x's own gradient at the NaN entry is 0 for order 0
    without a base branch (flat pieces: no slope), NaN otherwise, on every path too.
    cases: (order, uniform grid, base) triples."""
    for order, uniform, base in cases:
        layer, ref = make(path, order=order, grid_size=4, uniform=uniform, switches=(True, True, base, True))
        assert layer.resolved_path() == real(path) or order < 2
        layer.check_finite = ref.check_finite = False
        x = inputs(layer).detach()[:12].clone()
        x[[2, 7], [1, 1]] = float("nan")
        x[5, 0] = float("nan")
        x.requires_grad_(True)
        y, y_ref = layer(x), ref(x)
        where = f"order {order}, uniform {uniform}, base {base}"
        rows = torch.isnan(x).any(1)
        assert torch.equal(torch.isnan(y).all(1), rows) and torch.equal(torch.isnan(y).any(1), rows), where
        torch.testing.assert_close(y[~rows], y_ref[~rows], rtol=1e-12, atol=1e-12)
        bad = torch.isnan(x).any(0)                                              # inputs 0 and 1
        finite_gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(4), dtype=y.dtype)
        for gy in (finite_gy, None):
            target = torch.zeros_like(y)
            params, params_ref = [x, *layer.parameters()], [x, *ref.parameters()]
            if gy is None:  # the MSE's gradient, NaN on the NaN rows
                got = torch.autograd.grad(F.mse_loss(layer(x), target), params, allow_unused=True)
                want = torch.autograd.grad(F.mse_loss(ref(x), target), params_ref, allow_unused=True)
            else:
                got = torch.autograd.grad(layer(x), params, gy, allow_unused=True)
                want = torch.autograd.grad(ref(x), params_ref, gy, allow_unused=True)
            names = ["x", *(n for n, _ in layer.named_parameters())]
            for name, g, w in zip(names, got, want, strict=True):
                if w is None:  # order 0 without a base branch: the reference does not depend on x
                    assert name == "x" and g is not None and not torch.isnan(g).any(), where
                    continue
                assert g is not None
                assert torch.equal(torch.isnan(g), torch.isnan(w)), f"{name}, {where}"
                ok = ~torch.isnan(w)
                scale = w[ok].abs().max().item() if ok.any() else 1.0
                torch.testing.assert_close(g[ok], w[ok], rtol=1e-12, atol=1e-12 * (scale or 1.0))
                if gy is not None and name in ("coef", "spline_weight", "base_weight"):
                    nan_edges = torch.isnan(g).flatten(2).all(2) if g.dim() == 3 else torch.isnan(g)
                    assert torch.equal(nan_edges, bad.expand(g.shape[0], -1)), f"{name}, {where}"
                    assert not torch.isnan(g[:, ~bad]).any(), f"{name}, {where}"
