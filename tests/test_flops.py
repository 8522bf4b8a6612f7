"""FLOPs (forward multiply-adds per sample): each family's analytic count against a counted forward.

The reference is torch's own counter (torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per
multiply-add of a matmul), run on forwards of small layers; per-sample counts are the difference
between two batch sizes, so work done once per batch (the spline weights times the coefficients)
does not count.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from kanlab import splines
from kanlab.layers import RBFKAN, ChebyshevKAN, Dense, FourierKAN, KANLinear, TanhQuadratic
from kanlab.models.spec import ModelConfig, parse_spec
from kanlab.models.stack import build, count_flops


def traced_macs(model: nn.Module, in_features: int, batches: tuple[int, int] = (3, 7)) -> float:
    """Multiply-adds per sample that FlopCounterMode counts in model's forward."""
    totals = []
    for b in batches:
        x = torch.rand(b, in_features, dtype=torch.float64) * 1.8 - 0.9
        with FlopCounterMode(display=False) as counter:
            model(x)
        totals.append(counter.get_total_flops() / 2)  # 2 FLOPs per multiply-add
    return (totals[1] - totals[0]) / (batches[1] - batches[0])


CASES: list[tuple[type[nn.Module], dict[str, Any]]] = [
    (Dense, {"activation": "tanh"}),
    (Dense, {"activation": "identity", "bias": False}),
    (KANLinear, {"path": "reference"}),
    (KANLinear, {"path": "uniform", "grid_size": 7, "order": 2}),
    (KANLinear, {"path": "reference", "base": None, "spline_weight": False, "bias": False}),
    (KANLinear, {"path": "reference", "base_weight": False, "grid_size": 3, "order": 1}),
    (RBFKAN, {"grid_size": 6}),
    (RBFKAN, {"grid_size": 4, "base": None}),
    (ChebyshevKAN, {"degree": 5}),
    (FourierKAN, {"frequencies": 3}),
    (TanhQuadratic, {"after_sum": True}),
]


@pytest.mark.parametrize(("cls", "options"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_num_flops_equals_a_counted_forward(cls: Any, options: dict[str, Any]) -> None:
    layer = cls(3, 4, dtype=torch.float64, **options)
    assert traced_macs(layer, 3) == cls.num_flops(3, 4, **options)


class ProductCounter(TorchDispatchMode):
    """Counts elementwise products: one per output element of mul and addcmul (a * b + c)."""

    def __init__(self) -> None:
        super().__init__()
        self.products = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten.mul.Tensor, torch.ops.aten.addcmul.default):
            self.products += out.numel()
        return out


def test_tanh_quadratic_per_edge_mode_does_two_multiply_adds_per_edge() -> None:
    # The default mode has no matmul for FlopCounterMode to see: its products are elementwise.
    layer = TanhQuadratic(3, 4, dtype=torch.float64)
    counts = []
    for b in (3, 7):
        with ProductCounter() as counter:
            layer(torch.rand(b, 3, dtype=torch.float64))
        counts.append(counter.products)
    assert (counts[1] - counts[0]) / 4 == TanhQuadratic.num_flops(3, 4) == 2 * 3 * 4


def test_kan_local_support_count_equals_a_counted_local_evaluation() -> None:
    # The local-support evaluation written out: the order + 1 nonzero bases per input, each times
    # its own coefficient row; it must reproduce the layer and do in * out * (order + 1) products.
    torch.manual_seed(0)
    g, k = 6, 3
    layer = KANLinear(3, 4, grid_size=g, order=k, base=None, bias=False, spline_weight=False,
                      dtype=torch.float64)

    def local_forward(x: torch.Tensor) -> torch.Tensor:
        cell, s, _ = splines.uniform_cells(x, layer.grid)                                # (b, i)
        start = cell.long() - k
        pieces = splines.cardinal_coefficients(k)  # elementwise powers: no product the counter sees
        values = torch.stack([sum(m * s**p for p, m in enumerate(pieces[r])) for r in range(k + 1)], -1)
        rows = start.unsqueeze(-1) + torch.arange(k + 1)                                # (b, i, k+1)
        coef = layer.coef.permute(1, 2, 0)                                              # (i, c, o)
        picked = coef[torch.arange(3).unsqueeze(-1), rows]                              # (b, i, k+1, o)
        return torch.einsum("bir,biro->bo", values, picked)

    x = torch.rand(5, 3, dtype=torch.float64) * 1.8 - 0.9
    torch.testing.assert_close(local_forward(x), layer(x))
    counts = []
    for b in (3, 7):
        with FlopCounterMode(display=False) as counter:
            local_forward(torch.rand(b, 3, dtype=torch.float64) * 1.8 - 0.9)
        counts.append(counter.get_total_flops() / 2)
    assert (counts[1] - counts[0]) / 4 == KANLinear.num_flops(3, 4, g, k, base=None, local=True) == 3 * 4 * 4


@pytest.mark.parametrize("spec", ["mlp:3-5-4-2:act=tanh", "kan:2-5-1:g5k3,path=reference",
                                  "kan:2-3:g=4,path=reference+mlp:3-6-1:act=silu",
                                  "chebyshev:2-4-1:degree=3"])
def test_count_flops_of_a_model_equals_its_counted_forward(spec: str) -> None:
    cfg = parse_spec(spec)
    model = build(cfg).double()
    assert traced_macs(model, cfg.in_features) == count_flops(cfg)


def test_local_count_differs_from_the_dense_one_only_for_kan_layers() -> None:
    kan = ModelConfig.single("kan", [2, 5, 1], grid_size=20, order=3)
    # dense: 10 edges * (23 + 1 base) + 5 edges * 24; local: (4 + 1) per edge
    assert count_flops(kan) == 15 * 24
    assert count_flops(kan, local=True) == 15 * 5
    mlp = ModelConfig.single("mlp", [2, 5, 1])
    assert count_flops(mlp) == count_flops(mlp, local=True) == 15
