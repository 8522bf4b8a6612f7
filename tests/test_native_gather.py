"""The gather path's compiled loops (_native_gather): that the CPU gather runs them, and what
test_fast_paths.py's 3 -> 4 layers cannot reach: several threads, several blocks of inputs in the
forward, outputs past a whole number of 64-wide spans, non-contiguous inputs, one thread without
torch's OpenMP runtime. Values and gradients always against the reference path."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from kanlab import KANLinear
from kanlab.layers.kan import _native_gather, native_build
from test_fast_paths import assert_same

pytestmark = pytest.mark.skipif(not native_build.available(torch.float64),
                                reason="no C compiler builds the native kernels here")


def twins(i: int, o: int, grid_size: int, dtype: torch.dtype, **kw: Any) -> tuple[KANLinear, KANLinear]:
    torch.manual_seed(0)
    layer = KANLinear(i, o, grid_size, init="uniform", path="gather", check_finite=False, **kw).to(dtype)
    ref = copy.deepcopy(layer)
    ref.path = "reference"
    return layer, ref


def inputs(layer: KANLinear, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Inside, at the knots of every input's grid and far outside, as a non-contiguous view."""
    g = torch.Generator().manual_seed(1)
    inside = torch.rand(n, layer.in_features, generator=g, dtype=torch.float64) * 2.4 - 1.2
    knots = layer.grid.T[:, : layer.in_features].to(torch.float64)            # (m, i)
    far = torch.full((2, layer.in_features), 40.0, dtype=torch.float64) * torch.tensor([[1.0], [-1.0]])
    x = torch.cat([inside, knots, far]).to(dtype)
    wide = torch.zeros(x.shape[0], 2 * x.shape[1], dtype=dtype)
    wide[:, ::2] = x
    return wide[:, ::2].requires_grad_(True)                                    # stride 2


def test_the_cpu_gather_runs_the_compiled_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("basis", "forward_build", "backward"):
        fn = getattr(_native_gather, name)
        monkeypatch.setattr(_native_gather, name, lambda *a, f=fn, n=name, **k: calls.append(n) or f(*a, **k))
    layer, ref = twins(5, 6, 7, torch.float64)
    assert_same(layer, ref, inputs(layer, 30, torch.float64), rtol=1e-12)
    assert calls == ["basis", "forward_build", "backward"]


@pytest.mark.usefixtures("many_threads")
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("grid_size, order", [(30, 3), (3, 2), (70, 3)])
@pytest.mark.parametrize("build", [True, False])
def test_threads_input_blocks_and_partial_output_spans(dtype: torch.dtype, rtol: float, grid_size: int,
                                                       order: int, build: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # 70 outputs are a 64-wide span and a 6-wide one; samples and inputs split over 2 threads.
    # Grid 30: 64 inputs of 41 rows, a 1.3 MB float64 table, read in 512 kB blocks of whole rows.
    # Grid 3, order 2: 11 rows per input, read in 24 kB blocks of 64-wide spans (4 inputs in
    # float64, 8 in float32; the 6-wide span's blocks are read by every sample after).
    # Grid 70: 73 coefficients per edge, unpacked from the table's gradient in tiles of 64 and 9,
    # and 70 outputs are 8 tiles of 8 and one of 6. build: the forward builds the table itself,
    # inputs split over threads, with partial sums of y (else the table first, samples split).
    monkeypatch.setattr(_native_gather, "builds_in_forward", lambda *_: build)
    layer, ref = twins(64, 70, grid_size, dtype, order=order)
    assert_same(layer, ref, inputs(layer, 40, dtype), rtol=rtol)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("outputs", [1, 9, 31, 33, 47, 57, 71])
def test_outputs_past_whole_vectors(dtype: torch.dtype, rtol: float, outputs: int) -> None:
    # A row's last outputs after its whole vectors (of 8 floats or 4 doubles, or 16 / 8 with
    # AVX-512) are summed as whole vectors too, reading past the row (into the next row, or after
    # the table's last into its zero PAD; gy's rows padded with zeros): 1 to 7 spare lanes in the
    # forward's tail (outputs mod 64), the table gradient's (mod 32) and x's dot products. The
    # far-outside inputs read the table's last rows.
    layer, ref = twins(5, outputs, 4, dtype)
    assert_same(layer, ref, inputs(layer, 30, dtype), rtol=rtol)


def test_an_expanded_output_gradient() -> None:
    # y.sum()'s gradient is an expanded view (row stride 0): the kernels read a zero-padded copy.
    layer, ref = twins(4, 47, 5, torch.float64)
    x = inputs(layer, 20, torch.float64)
    got = torch.autograd.grad(layer(x).sum(), [x, layer.coef, layer.spline_weight])
    want = torch.autograd.grad(ref(x).sum(), [x, ref.coef, ref.spline_weight])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12 * w.abs().max().item())


@pytest.mark.usefixtures("many_threads")
def test_the_forward_builds_the_table_unless_partial_sums_outgrow_it() -> None:
    # Two threads: one (b, o) buffer of partial sums, against a table of 64 * (33 + 2 * 3 + 2) rows
    # of o (grid 30, order 3).
    coef = torch.zeros(32, 64, 33)
    assert torch.get_num_threads() >= 2
    assert _native_gather.builds_in_forward(64 * 41, coef, 3)
    assert not _native_gather.builds_in_forward(64 * 41 + 1, coef, 3)


@pytest.mark.usefixtures("many_threads")
@pytest.mark.parametrize("order", [0, 1, 2, 5])
def test_moved_grids_and_every_order_on_threads(order: int) -> None:
    # Orders below 2 and moved grids take torch's local basis into the compiled loops.
    layer, ref = twins(9, 5, 6, torch.float64, order=order)
    data = torch.rand(300, 9, dtype=torch.float64) ** 2 * 2 - 1
    for m in (layer, ref):
        m.update_grid(data, grid_eps=0.3)
    assert not layer.uniform
    assert_same(layer, ref, inputs(layer, 50, torch.float64), rtol=1e-12)


@pytest.mark.usefixtures("many_threads")
def test_one_thread_without_an_openmp_runtime() -> None:
    lib = native_build.library(torch.float64)
    assert lib is not None
    layer, ref = twins(12, 10, 8, torch.float64)
    x = inputs(layer, 200, torch.float64)
    lib.kan_runtime(None, None, None)
    try:
        assert_same(layer, ref, x, rtol=1e-12)
    finally:
        lib.kan_runtime(*native_build.openmp_runtime())


def test_torch_runs_on_openmp_here_and_the_kernels_use_it() -> None:
    # The speed claim rests on sharing torch's threads; where torch is built on OpenMP (Linux
    # wheels) the runtime must be found.
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("this torch does not run on OpenMP")
    assert all(native_build.openmp_runtime())


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, True), (False, False, True)])
@pytest.mark.parametrize("outputs", [7, 40])  # the table gradient per sample; by row (32 + 8 outputs)
def test_only_the_gradients_asked_for(needs: tuple[bool, bool, bool], outputs: int) -> None:
    layer, ref = twins(6, outputs, 9, torch.float64)
    x = inputs(layer, 30, torch.float64).detach().requires_grad_(needs[0])
    for m in (layer, ref):
        m.coef.requires_grad_(needs[1])
        m.spline_weight.requires_grad_(needs[2])  # type: ignore[union-attr]
    wanted = [t for t, need in zip([x, layer.coef, layer.spline_weight], needs, strict=True) if need]
    wanted_ref = [t for t, need in zip([x, ref.coef, ref.spline_weight], needs, strict=True) if need]
    gy = torch.randn(x.shape[0], outputs, dtype=torch.float64)
    got = torch.autograd.grad(layer(x), wanted, gy)
    want = torch.autograd.grad(ref(x), wanted_ref, gy)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12 * w.abs().max().item())
