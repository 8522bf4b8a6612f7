"""Edge/node importance and pruning: a smaller model with the same function up to the removed edges."""

from __future__ import annotations

import pytest
import torch

from kanlab.layers.kan.layer import KANLinear
from kanlab.models.stack import KAN, Stack, param_count
from kanlab.symbolic import snap
from kanlab.symbolic.pruning import edge_scores, node_scores, prune

F64 = torch.float64
WEAK = (1, 3, 4)  # hidden nodes of the hand-built model whose incoming edges are ~1e-4 of the rest


def hand_built(bias: bool = True) -> Stack:
    """A [2, 5, 1] KAN with random splines, where hidden nodes WEAK are nearly switched off."""
    torch.manual_seed(1)
    model = KAN([2, 5, 1], init="uniform", bias=bias).double()
    with torch.no_grad():
        model.layers[1].coef *= 20  # outgoing edges well above the threshold
        model.layers[1].base_weight *= 20
        for j in WEAK:
            model.layers[0].coef[j] *= 1e-4
            model.layers[0].base_weight[j] *= 1e-4
    return model


def inputs(n: int = 500) -> torch.Tensor:
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 2 - 1


def test_scores_are_mean_absolute_responses() -> None:
    model, x = hand_built(), inputs()
    r = model.layers[1].edge_responses(model.layers[0](x).detach()).detach()        # (n, 1, 5)
    paper, centered = edge_scores(model, x, centered=False), edge_scores(model, x)
    assert torch.allclose(paper[1], r.abs().mean(0))
    assert torch.allclose(centered[1], (r - r.mean(0)).abs().mean(0))
    nodes = node_scores(model, x)
    assert len(nodes) == 1 and len(nodes[0].incoming) == 5
    assert max(nodes[0].incoming[j] for j in WEAK) < 1e-2 < min(nodes[0].incoming[j] for j in (0, 2))


def test_prune_shrinks_the_model_and_keeps_its_output() -> None:
    model, x = hand_built(), inputs()
    pruned, report = prune(model, x, threshold=1e-2)
    assert report.kept == ((0, 2),)
    assert report.widths_before == (2, 5, 1) and report.widths_after == (2, 2, 1)
    assert [layer.in_features for layer in pruned.layers] == [2, 2]
    assert [type(layer) for layer in pruned.layers] == [KANLinear, KANLinear]
    # A true smaller model: exactly the parameters of a [2, 2, 1] KAN.
    assert report.params_before == param_count(model)
    assert report.params_after == param_count(pruned) == param_count(KAN([2, 2, 1]))
    assert report.params_after < report.params_before
    # The stated tolerance: the output moves by the removed edges' fluctuation around their mean,
    # which is at most the sum over removed nodes of max |phi_j - mean phi_j| on the data.
    with torch.no_grad():
        h = model.layers[0](x)
        r = model.layers[1].edge_responses(h)[:, 0, :]                              # (n, 5)
        bound = float(sum((r[:, j] - r[:, j].mean()).abs().max() for j in WEAK))
        change = (pruned(x) - model(x)).abs().max()
    assert report.max_output_change == pytest.approx(float(change))
    assert float(change) <= bound + 1e-12
    assert float(change) < 1e-3
    assert "[2, 5, 1] -> [2, 2, 1]" in str(report)


def test_prune_copies_kept_rows_columns_and_knots() -> None:
    model, x = hand_built(bias=False), inputs()
    model.layers[0].update_grid(x)
    pruned, _ = prune(model, x, absorb=False)
    old, new = model.layers[0], pruned.layers[0]
    assert torch.equal(new.coef, old.coef[[0, 2]]) and torch.equal(new.grid, old.grid)
    assert torch.equal(pruned.layers[1].grid, model.layers[1].grid[[0, 2]])
    assert pruned.layers[1].bias is None
    assert torch.equal(pruned.layers[1].coef, model.layers[1].coef[:, [0, 2]])


def test_prune_keeps_symbolic_choices_and_ignores_constant_edges() -> None:
    model = snap.symbolize(hand_built())
    model.layers[0].fix(2, 1, "sin", 2.0, 0.5, 1.0, 0.0)
    # A node fed only by constant edges carries no information: it goes, its constant moves on.
    for i in range(2):
        model.layers[0].fix(0, i, "0", 1.0, 0.0, 0.0, 0.7)
    x = inputs()
    pruned, report = prune(model, x)
    assert report.kept == ((2,),)
    assert pruned.layers[0].function_name(0, 1) == "sin"
    assert pruned.layers[0].constants(0, 1) == (2.0, 0.5, 1.0, 0.0)
    assert report.max_output_change < 1e-3
    # The paper's uncentred score keeps the constant node.
    assert prune(model, x, centered=False)[1].kept == ((0, 2),)


def test_pruning_everything_is_an_error() -> None:
    model, x = hand_built(), inputs()
    with pytest.raises(ValueError, match="remove every node of hidden layer 1"):
        prune(model, x, threshold=1e3)
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        prune(model, x, threshold=-1.0)
    with pytest.raises(ValueError, match="KANLinear .* layers only"):
        prune(Stack([KANLinear(2, 3), torch.nn.Linear(3, 1)]), x.float())
