"""The native (C) KANLinear path: what test_fast_paths.py does not cover, i.e. batches past one
chunk, NaN inputs, dtype mismatches, which layers "auto" runs natively and the fallback when no C
compiler works. Values and gradients against the reference path are in test_fast_paths.py."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from kanlab import KANLinear
from kanlab.layers.kan import _native, native_build
from kanlab.models.stack import KAN

NATIVE_OK = native_build.available(torch.float64)
needs_native = pytest.mark.skipif(not NATIVE_OK, reason="no C compiler builds the native kernels here")


def twins(i: int = 3, o: int = 4, **kw: object) -> tuple[KANLinear, KANLinear]:
    layer = KANLinear(i, o, init="uniform", path="native", **kw).double()  # type: ignore[arg-type]
    ref = copy.deepcopy(layer)
    ref.path = "reference"
    return layer, ref


@needs_native
@pytest.mark.parametrize("threads", [1, 2], ids=["one-thread", "two-threads"])
@pytest.mark.parametrize("batch", [1, 127, 128, 129, 1000])
def test_batches_across_chunks_match_reference(batch: int, threads: int,
                                               request: pytest.FixtureRequest) -> None:
    # The kernels take 128 samples at a time: batches around that size and several chunks, split
    # over two threads (each with its own gradient sums) or not.
    if threads == 2:
        request.getfixturevalue("many_threads")
    layer, ref = twins(grid_size=7)
    x = (torch.rand(batch, 3, dtype=torch.float64) * 2.6 - 1.3).requires_grad_(True)
    y, y_ref = layer(x), ref(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    gy = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, *layer.parameters()], gy)
    grads_ref = torch.autograd.grad(y_ref, [x, *ref.parameters()], gy)
    for g, w in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12 * w.abs().max().item())


@needs_native
@pytest.mark.parametrize("path", ["native", "gather"])  # both read the same local basis
def test_nan_input_gives_nan_in_its_own_row_only(path: str) -> None:
    layer = KANLinear(2, 3, path=path, check_finite=False).double()
    x = torch.tensor([[0.1, 0.2], [float("nan"), 0.3], [0.5, -0.5]], dtype=torch.float64)
    y = layer(x)
    assert torch.isnan(y[1]).all()
    assert torch.isfinite(y[[0, 2]]).all()
    ref = copy.deepcopy(layer)
    ref.path = "reference"
    torch.testing.assert_close(y[[0, 2]], ref(x[[0, 2]]), rtol=1e-12, atol=1e-12)


def moved_twins() -> tuple[KANLinear, KANLinear, torch.Tensor]:
    """twins() on grids moved to squared data (other cells than uniform ones), and inputs around them."""
    layer, ref = twins(grid_size=6)
    data = torch.rand(200, 3, dtype=torch.float64) ** 2 * 2 - 1
    for m in (layer, ref):
        m.update_grid(data, grid_eps=0.0)
    return layer, ref, torch.rand(50, 3, dtype=torch.float64) * 2.4 - 1.2


@needs_native
def test_a_moved_grid_first_used_under_inference_mode_still_trains() -> None:
    # Evaluating under torch.inference_mode() built the moved grid's cached cell table as an
    # inference tensor; the next training forward could not save it for backward.
    layer, ref, x = moved_twins()
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), ref(x), rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad(layer(x).square().sum(), layer.coef)[0]
    want = torch.autograd.grad(ref(x).square().sum(), ref.coef)[0]
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@needs_native
def test_a_moved_grid_changed_in_place_is_read_afresh() -> None:
    # The cell tables of moved grids are cached per grid tensor: an in-place change (a new version)
    # must rebuild them, a new grid tensor must get its own.
    layer, ref, x = moved_twins()
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        for m in (layer, ref):
            m.grid.mul_(1.3)  # still sorted, other cells
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-12, atol=1e-12)
    table = _native.cells(layer.grid, layer.order, uniform=False)
    assert table is _native.cells(layer.grid, layer.order, uniform=False)  # cached while unchanged
    torch.testing.assert_close(table, _native.cell_table(layer.grid, layer.order), rtol=0, atol=0)


@needs_native
def test_input_of_another_dtype_is_refused_with_the_fix() -> None:
    layer = KANLinear(2, 3, path="native").double()
    with pytest.raises(TypeError, match=r"float32 input but its parameters are torch.float64.*model.double"):
        layer(torch.rand(4, 2))


@needs_native
def test_auto_runs_native_for_the_smallest_layers_and_gathers_beyond() -> None:
    assert KANLinear(2, 5).resolved_path() == "native"
    assert KANLinear(8, 16).resolved_path() == "native"           # 128 edges
    assert KANLinear(16, 16).resolved_path() == "gather"          # 256 edges: the gather kernels
    assert KANLinear(2, 5, order=1).resolved_path() == "gather"   # jumps of slope at the knots
    layer = KANLinear(2, 5)
    layer.update_grid(torch.rand(100, 2) ** 3, grid_eps=0.0)      # quantile knots: not uniform
    assert layer.resolved_path() == "native"                      # found by a binary search


@pytest.fixture
def no_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> None:
    monkeypatch.setenv("CC", os.path.join(str(tmp_path), "no-such-cc"))
    monkeypatch.setenv("KANLAB_CACHE", str(tmp_path))  # nothing built there yet
    monkeypatch.setattr(native_build, "_LIBS", {})
    monkeypatch.setattr(native_build, "_FAILED", {})


@pytest.mark.usefixtures("no_compiler")
def test_without_a_compiler_native_warns_once_and_runs_auto() -> None:
    layer, ref = twins()
    x = torch.rand(20, 3, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match=r"native KAN path is unavailable .*no-such-cc.*C compiler"):
        assert layer.resolved_path() == "dense"
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-12, atol=1e-12)  # no second warning (error)


@pytest.mark.usefixtures("no_compiler")
def test_without_a_compiler_auto_falls_back_silently() -> None:
    layer = KANLinear(2, 5).double()
    assert layer.resolved_path() == "dense"  # filterwarnings = error: any warning would fail this


@pytest.mark.parametrize(
    ("machine", "capability", "common", "gather_extra"),
    [
        ("x86_64", "AVX512", ["-mavx2", "-mfma"], ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]),
        ("x86_64", "AVX2", ["-mavx2", "-mfma"], []),
        ("x86_64", "DEFAULT", [], []),
        ("aarch64", "DEFAULT", [], []),
    ],
)
def test_vector_flags_follow_torchs_own_cpu_capability(monkeypatch: pytest.MonkeyPatch, machine: str,
                                                      capability: str, common: list[str],
                                                      gather_extra: list[str]) -> None:
    # Never more than torch itself runs here; AVX-512 only for the gather kernels (_native.c's
    # were no faster with it and compiled in twice the time).
    monkeypatch.setattr(native_build.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert native_build.vector_flags() == common
    by_name = {p.name: p for p in native_build.SOURCES}
    assert native_build.wide_flags(by_name["_native_gather.c"]) == gather_extra
    assert native_build.wide_flags(by_name["_native.c"]) == []


@pytest.mark.slow  # torch.compile
@needs_native
# dynamo itself reads .grad of the second layer's (non-leaf) input when it resumes after a break
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
@pytest.mark.parametrize(("widths", "paths"), [([2, 5, 1], {"native"}), ([16, 10, 3], {"gather", "native"})])
def test_inside_torch_compile_the_native_layers_run_eagerly_and_agree(widths: list[int],
                                                                     paths: set[str]) -> None:
    # Tracing a ctypes call would bake in the addresses of trace-time tensors: the native layers
    # and the gather path's compiled loops are graph breaks instead, and a compiled model gives the
    # eager model's outputs and gradients.
    model = KAN(widths).double()
    assert {layer.resolved_path() for layer in model.layers} == paths
    x = torch.rand(100, widths[0], dtype=torch.float64) * 2.4 - 1.2
    want = model(x)
    want_grads = torch.autograd.grad(want.sum(), list(model.parameters()))
    torch._dynamo.reset()
    got = torch.compile(model)(x)
    grads = torch.autograd.grad(got.sum(), list(model.parameters()))
    # the gather path's base branch and bias are compiled by inductor: same values up to round-off
    tol = 0.0 if paths == {"native"} else 1e-12
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    for g, w in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)
