"""Which implementation KANLinear's forward runs: one table of rules (RULES), read top to bottom.

The paths (see KANLinear's docstring and benchmarks/README.md for their speeds):
  reference  Cox-de Boor basis + matmul, the readable one (splines.bspline_basis);
  uniform    the closed-form dense basis + matmul (splines.uniform_bspline_basis);
  dense      local values, the dense GEMM, a hand-written backward (_fast_dense.py);
  gather     local values, embedding bags or the C gather kernels (_fast_gather.py, _native_gather.*);
  compiled   the closed-form dense basis fused by torch.compile (_compiled.py);
  native     the whole layer as C loops (_native.py, _native.c).
The paths asked for by name other than "auto", "native" and "compiled" always run as asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kanlab.layers.kan import _native, native_build

# "auto" runs native for layers with at most this many edges (in * out): up to there it beats the
# gather kernels (benchmarks/README.md, 'Measured figures behind code choices').
SMALL_EDGES = 128
# Without the C gather kernels, the embedding bags lose to the dense GEMM on coarse grids: the
# GEMM's work grows with grid_size + order + 1 columns per input at GEMM speed, the bags' with
# order + 1 rows at a few times lower speed per multiply-add. Measured crossover (benchmarks/layers.py,
# benchmarks/README.md): the bags win from grid_size + order + 1 > GATHER_FROM * (order + 1).
# Off the CPU (CUDA) "auto" runs dense or the bags by this same rule, never native nor the C
# kernels (both CPU only): a crossover measured on the CPU only, no GPU figures yet (benchmarks/
# README.md, "GPU"; benchmarks/gpu_check.sh measures it).
GATHER_FROM = 4


@dataclass(frozen=True)
class Layer:
    """What the choice reads of a layer."""

    path: str  # what the layer was built with
    edges: int  # in_features * out_features
    grid_size: int
    order: int
    uniform: bool  # the grid is uniform per input
    cpu: bool  # its parameters are on the CPU
    dtype: torch.dtype


def _native_runs(layer: Layer, *, asked: bool = False) -> bool:
    # available() builds the kernels on first use: asked last, and only where they could run
    return (2 <= layer.order <= _native.MAX_ORDER and layer.cpu
            and native_build.available(layer.dtype, asked=asked))


def _kernels(layer: Layer) -> bool:
    # the C gather kernels beat the dense GEMM at every grid measured (benchmarks/README.md)
    return layer.cpu and native_build.available(layer.dtype)


CHOOSING = ("auto", "native", "compiled")  # the paths that may run another one
# (paths asked for, the path run, when): the first rule whose paths include the layer's and whose
# condition holds decides. Conditions call native_build.available (which builds the C kernels on first
# use) only where nothing before them in the rule has failed.
RULES: tuple[tuple[tuple[str, ...], str, Callable[[Layer], bool]], ...] = (
    (("compiled",), "compiled", lambda l: l.uniform and l.order >= 2),  # the closed form only
    (("native",), "native", lambda l: _native_runs(l, asked=True)),  # warns once when it cannot
    (("auto", "compiled"), "native", lambda l: l.edges <= SMALL_EDGES and _native_runs(l)),
    (CHOOSING, "gather", _kernels),
    (CHOOSING, "gather", lambda l: l.grid_size + l.order + 1 > GATHER_FROM * (l.order + 1)),
    (CHOOSING, "dense", lambda l: True),
)


def choose_path(layer: Layer) -> str:
    """The path a layer's forward runs now: layer.path itself unless RULES pick another."""
    if layer.path not in CHOOSING:
        return layer.path
    for asked, runs, when in RULES:
        if layer.path in asked and when(layer):
            return runs
    raise AssertionError("RULES ends with a rule for every path")  # unreachable
