"""train(): convergence per optimizer, determinism, divergence, grid stages/updates, sparsity, config."""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline
from torch import nn

from kanlab import KANLinear
from kanlab.training.config import TrainConfig
from kanlab.training.evaluation import evaluate
from kanlab.training.loop import History, train
from kanlab.training.regularization import layer_sparsity, sparsity_loss

RECORD_KEYS = {"step", "time", "train_loss", "test_loss", "test_rmse", "lr", "grid_size"}


@dataclass(frozen=True, eq=False)
class Toy:
    """Stand-in for kanlab.tasks.Dataset: just what train reads."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    image_shape: tuple[int, int] | None = None


class Stack(nn.Module):
    """Layers applied in order, like kanlab.models.Stack, without depending on it."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def sine(n: int = 128, seed: int = 0, dtype: torch.dtype = torch.float32) -> Toy:
    """y = sin(pi x) on [-1, 1], n train and n test points."""
    g = torch.Generator().manual_seed(seed)
    x_train, x_test = (torch.rand(n, 1, generator=g, dtype=dtype) * 2 - 1 for _ in range(2))
    return Toy(x_train, torch.sin(math.pi * x_train), x_test, torch.sin(math.pi * x_test))


def kan(*widths: int, **options: Any) -> Stack:
    return Stack(*(KANLinear(a, b, **options) for a, b in itertools.pairwise(widths)))


def mlp(hidden: int = 16) -> Stack:
    return Stack(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def curve(h: History) -> list[tuple[object, ...]]:
    """Records without wall-clock time, for exact comparisons."""
    return [tuple(r[k] for k in sorted(RECORD_KEYS - {"time"})) for r in h.records]


# ---- convergence ------------------------------------------------------------------------------
# Spread of the final test MSE over seeds 0-7 (model init and data), measured when writing:
# adam/adamw 1.2e-5..3.9e-5, sgd 5.5e-5..4.3e-4, lbfgs 2.9e-7..1.5e-5 (one seed stalls on a plateau).
@pytest.mark.parametrize(
    ("optimizer", "lr", "dtype", "steps", "threshold"),
    [
        ("adam", 1e-2, "float32", 300, 1e-3),
        ("adamw", 1e-2, "float32", 300, 1e-3),
        ("sgd", 0.1, "float32", 400, 2e-3),
        ("lbfgs", 1.0, "float64", 30, 1e-4),
    ],
)
def test_each_optimizer_fits_a_sine_with_a_kan(
    optimizer: str, lr: float, dtype: str, steps: int, threshold: float, device: torch.device
) -> None:
    cfg = TrainConfig(optimizer=optimizer, lr=lr, dtype=dtype, steps=steps, eval_every=steps,
                      weight_decay=1e-5 if optimizer == "adamw" else 0.0)
    h = train(kan(1, 3, 1).to(device), sine(), cfg)  # train moves the data to the model's device
    assert h.status == "finished" and h.message is None and h.steps_done == steps
    assert h.records[0]["test_loss"] > 0.1  # it starts far from the target
    assert h.records[-1]["test_loss"] < threshold


def test_lbfgs_fits_a_sine_with_an_mlp_in_float64(device: torch.device) -> None:
    # seeds 0-7: 9.8e-7..2.1e-5 after 200 steps
    cfg = TrainConfig(optimizer="lbfgs", lr=1.0, dtype="float64", steps=200, eval_every=200)
    h = train(mlp().to(device), sine(), cfg)
    assert h.records[-1]["test_loss"] < 1e-4


# ---- records, callbacks, timing ---------------------------------------------------------------
def test_records_callback_progress_and_timing() -> None:
    seen: list[dict[str, object]] = []
    ticks: list[tuple[int, int]] = []
    cfg = TrainConfig(steps=25, eval_every=10)
    h = train(mlp(), sine(), cfg, callback=seen.append, progress=lambda s, t: ticks.append((s, t)))
    assert [r["step"] for r in h.records] == [0, 10, 20, 25]
    assert all(set(r) == RECORD_KEYS for r in h.records)
    assert seen == h.records
    assert ticks == [(k, 25) for k in range(1, 26)]
    assert all(r["grid_size"] is None and r["lr"] == cfg.lr for r in h.records)
    assert all(math.isclose(r["test_rmse"], math.sqrt(r["test_loss"])) for r in h.records)
    times = [r["time"] for r in h.records]
    assert times == sorted(times) and h.wall_time >= times[-1]
    assert 0 < h.time_per_step * h.steps_done <= h.wall_time
    assert h.stages == [{"grid_size": None, "step": 25, "train_rmse": math.sqrt(h.records[-1]["train_loss"]),
                         "test_rmse": h.records[-1]["test_rmse"]}]


def test_evaluate_matches_a_direct_mse_and_chunks_agree() -> None:
    model, data = kan(1, 3, 1).double(), sine(n=50, dtype=torch.float64)
    ev = evaluate(model, data)
    with torch.no_grad():
        direct = torch.mean((model(data.x_test) - data.y_test) ** 2).item()
    assert ev["test_loss"] == pytest.approx(direct, rel=1e-12)
    assert evaluate(model, data, chunk=7)["train_loss"] == pytest.approx(ev["train_loss"], rel=1e-12)


# ---- determinism ------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 32])
def test_same_seed_gives_identical_curves(batch_size: int | None) -> None:
    cfg = TrainConfig(steps=40, eval_every=10, batch_size=batch_size,
                      grid_update_every=10, grid_update_until=30)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append(train(kan(1, 3, 1), sine(), cfg))
    assert curve(runs[0]) == curve(runs[1])


def test_minibatch_seed_changes_the_curve_and_global_rng_is_untouched() -> None:
    curves = []
    for seed in (0, 1):
        torch.manual_seed(1)
        model = kan(1, 3, 1)
        state = torch.get_rng_state()
        cfg = TrainConfig(steps=20, eval_every=10, batch_size=16, seed=seed)
        curves.append(curve(train(model, sine(), cfg)))
        assert torch.equal(torch.get_rng_state(), state)
    assert curves[0][0] == curves[1][0] and curves[0][1:] != curves[1][1:]


# ---- divergence -------------------------------------------------------------------------------
@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 1e3), ("sgd", 1e6)])
def test_a_huge_lr_ends_as_diverged_with_records_kept(optimizer: str, lr: float) -> None:
    seen: list[dict[str, object]] = []
    h = train(kan(1, 3, 1), sine(), TrainConfig(optimizer=optimizer, lr=lr, steps=50, eval_every=1),
              callback=seen.append)
    assert h.status == "diverged"
    match = re.search(r"at step (\d+)", h.message or "")
    assert match and int(match.group(1)) == h.steps_done < 50
    assert "last finite loss" in (h.message or "")
    # every step up to the divergence was evaluated (the last one only if its evaluation was finite)
    assert seen == h.records and [r["step"] for r in h.records] == list(range(len(h.records)))
    assert h.steps_done in (len(h.records), len(h.records) - 1)
    assert all(math.isfinite(r["train_loss"]) for r in h.records)


def test_lbfgs_backs_off_from_a_huge_lr_instead_of_diverging() -> None:
    # Its line search treats an inf/NaN trial loss as a step too long (torch's LBFGS diverged here).
    h = train(kan(1, 3, 1), sine(), TrainConfig(optimizer="lbfgs", lr=1e6, steps=5, eval_every=1))
    assert h.status == "finished" and h.steps_done == 5
    losses = [r["train_loss"] for r in h.records]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.5 * losses[0]


def test_inf_loss_at_the_first_evaluation() -> None:
    data = sine()
    data = Toy(data.x_train, data.y_train * 1e30, data.x_test, data.y_test)  # squares overflow float32
    h = train(mlp(), data, TrainConfig(steps=10))
    assert h.status == "diverged" and "at step 0" in (h.message or "") and h.records == []
    assert h.steps_done == 0 and h.stages == []


def test_other_errors_propagate_and_bad_data_is_refused() -> None:
    data = sine()
    wide = Toy(torch.cat([data.x_train] * 2, 1), data.y_train, torch.cat([data.x_test] * 2, 1), data.y_test)
    with pytest.raises(ValueError, match="expects input of shape"):
        train(kan(1, 3, 1), wide, TrainConfig(steps=5))
    nan = Toy(data.x_train.clone().fill_(math.nan), data.y_train, data.x_test, data.y_test)
    with pytest.raises(ValueError, match="x_train must be 2-D and finite"):
        train(mlp(), nan, TrainConfig(steps=5))


# ---- grid stages and grid updates -------------------------------------------------------------
def test_grid_stages_refine_preserve_the_function_and_record_each_stage() -> None:
    # One layer: its input is the data, always inside the grid range [-1, 1], where integer-factor
    # refinement keeps every knot and the function exactly (a hidden layer's input may drift outside).
    model = kan(1, 1, grid_size=5)
    cfg = TrainConfig(optimizer="lbfgs", lr=1.0, dtype="float64", steps=10, eval_every=5,
                      grid_stages=(3, 6, 12))
    h = train(model, sine(), cfg)
    assert h.status == "finished" and h.steps_done == cfg.total_steps == 30
    assert all(layer.grid_size == 12 for layer in model.layers)
    assert [(s["grid_size"], s["step"]) for s in h.stages] == [(3, 10), (6, 20), (12, 30)]
    assert h.stages[0]["train_rmse"] > h.stages[1]["train_rmse"] > h.stages[2]["train_rmse"] > 0
    assert [(r["step"], r["grid_size"]) for r in h.records] == [
        (0, 3), (5, 3), (10, 3), (10, 6), (15, 6), (20, 6), (20, 12), (25, 12), (30, 12)]
    # the loss just after each refinement equals the loss just before it
    for before, after in ((2, 3), (5, 6)):
        assert h.records[after]["train_loss"] == pytest.approx(h.records[before]["train_loss"], rel=1e-6)
    assert h.records[-1]["train_loss"] < h.records[6]["train_loss"]  # the fresh optimizer trains the new coef


def test_grid_updates_happen_on_schedule_and_stop() -> None:
    model = kan(1, 3, 1)
    layers = [m for m in model.modules() if isinstance(m, KANLinear)]
    grids: list[list[torch.Tensor]] = [[layer.grid.clone() for layer in layers]]
    cfg = TrainConfig(steps=20, batch_size=32, grid_update_every=5, grid_update_until=12, eval_every=20)
    train(model, sine(), cfg, progress=lambda s, t: grids.append([layer.grid.clone() for layer in layers]))
    # grids[k] is the state after k steps; updates run before steps 0, 5 and 10 (t < 12).
    for layer in range(2):
        changed = [k for k in range(1, 21) if not torch.equal(grids[k][layer], grids[k - 1][layer])]
        assert changed == [1, 6, 11]


def test_grid_updates_wait_for_their_start_in_every_stage() -> None:
    model = kan(1, 3, 1)
    layers = [m for m in model.modules() if isinstance(m, KANLinear)]
    grids: list[list[torch.Tensor]] = [[layer.grid.clone() for layer in layers]]
    cfg = TrainConfig(steps=12, batch_size=32, grid_update_every=2, grid_update_start=4, grid_update_until=8,
                      grid_stages=(3, 6), eval_every=12)
    train(model, sine(), cfg, progress=lambda s, t: grids.append([layer.grid.clone() for layer in layers]))
    # grids[k] is the state after k steps; in each stage of 12 steps the updates run before its
    # steps 4 and 6 (t % 2 == 0, 4 <= t < 8): none on the untrained model at the start. Each
    # stage's refinement (5 -> 3, 3 -> 6) happens before its first step (grids[1], grids[13]).
    for layer in range(2):
        changed = [k for k in range(1, 25) if not torch.equal(grids[k][layer], grids[k - 1][layer])]
        assert changed == [1, 5, 7, 13, 17, 19]
    with pytest.raises(ValueError, match="grid_update_start=8 is invalid.*below grid_update_until"):
        TrainConfig(grid_update_every=2, grid_update_start=8, grid_update_until=8)
    with pytest.raises(ValueError, match="grid_update_start=-1 is invalid"):
        TrainConfig(grid_update_start=-1)


def test_grid_updates_need_a_walkable_model() -> None:
    class Hidden(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.ModuleList([KANLinear(1, 1)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body[0](x)

    cfg = TrainConfig(steps=3, grid_update_every=1, grid_update_until=2)
    with pytest.raises(ValueError, match="nested"):
        train(Hidden(), sine(), cfg)
    single = KANLinear(1, 1)  # a bare layer is its own stack
    before = single.grid.clone()
    assert train(single, sine(), cfg).status == "finished" and not torch.equal(single.grid, before)
    assert train(mlp(), sine(), cfg).status == "finished"  # no KAN layers: nothing to update


# ---- sparsity ---------------------------------------------------------------------------------
def naive_edges(layer: KANLinear, x: np.ndarray) -> np.ndarray:
    """(b, o, i) edge responses s_oi * phi_oi(x_i) + w_oi * silu(x_i), one scipy spline per edge."""
    out = np.zeros((x.shape[0], layer.out_features, layer.in_features))
    for o in range(layer.out_features):
        for i in range(layer.in_features):
            t, c = layer.grid[i].numpy(), layer.coef[o, i].detach().numpy()
            phi = BSpline(t, c, layer.order, extrapolate=False)(x[:, i])  # inputs stay inside the grid
            silu = x[:, i] / (1 + np.exp(-x[:, i]))
            assert layer.spline_weight is not None and layer.base_weight is not None
            out[:, o, i] = layer.spline_weight[o, i].item() * phi + layer.base_weight[o, i].item() * silu
    return out


def test_sparsity_loss_matches_a_hand_computation() -> None:
    first = KANLinear(2, 3, 4, init="uniform")
    second = KANLinear(3, 2, 4, grid_range=(-4.0, 4.0), init="uniform")
    model = Stack(first, second).double()
    x = torch.rand(17, 2, dtype=torch.float64) * 1.8 - 0.9
    expected, h = 0.0, x.numpy()
    for layer in (first, second):
        r = naive_edges(layer, h)                                         # (b, o, i)
        a = np.abs(r).mean(axis=0)                                        # (o, i)
        p = a / (a.sum() + 1e-4)                                          # eps as PyKAN's entropy
        expected += 0.7 * a.sum() - 1.3 * float((p * np.log(p + 1e-4)).sum())
        assert layer.bias is not None
        h = r.sum(axis=2) + layer.bias.detach().numpy()                   # next layer's input
        assert np.abs(h).max() < 4  # inside the second layer's grid range
    assert sparsity_loss(model, x, l1=0.7, entropy=1.3).item() == pytest.approx(expected, rel=1e-10)


def test_sparsity_loss_is_finite_with_zero_responses() -> None:
    layer = KANLinear(2, 2, base=None)
    with torch.no_grad():
        layer.coef[0].zero_()  # one output's edges are exactly 0
    x = torch.rand(8, 2)
    for model in (layer, nn.Sequential(layer)):
        loss = sparsity_loss(model, x)
        loss.backward()
        assert layer.spline_weight is not None
        grads = [layer.coef.grad, layer.spline_weight.grad]  # bias and base play no part in the responses
        assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)
        layer.zero_grad()
    with torch.no_grad():
        layer.coef.zero_()  # every response is 0: p = 0 / 0 is guarded
    assert sparsity_loss(layer, x).item() == 0.0


def test_training_with_sparsity_shrinks_the_activations() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 2, generator=g) * 2 - 1
    data = Toy(x[:128], torch.sin(math.pi * x[:128, :1]), x[128:], torch.sin(math.pi * x[128:, :1]))
    l1 = []
    for lam in (0.0, 1e-2):
        torch.manual_seed(0)
        model = kan(2, 4, 1)
        h = train(model, data, TrainConfig(steps=200, eval_every=200, sparsity=lam))
        assert h.status == "finished" and h.records[-1]["test_loss"] < 0.05
        l1.append(sparsity_loss(model, data.x_train, l1=1.0, entropy=0.0).item())
    assert l1[1] < 0.8 * l1[0]  # seeds 0-3: ratios 0.54-0.64


# ---- dtype and schedules ----------------------------------------------------------------------
def test_float64_training_leaves_the_callers_data_alone() -> None:
    data = sine()  # float32
    kept = data.x_train.clone()
    model = kan(1, 3, 1)
    h = train(model, data, TrainConfig(dtype="float64", steps=5, eval_every=5))
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert data.x_train.dtype == torch.float32 and torch.equal(data.x_train, kept)
    with torch.no_grad():
        mse64 = torch.mean((model(data.x_train.double()) - data.y_train.double()) ** 2).item()
        mse32 = torch.mean((copy.deepcopy(model).float()(data.x_train) - data.y_train) ** 2).item()
    assert h.records[-1]["train_loss"] == pytest.approx(mse64, rel=1e-13)
    assert h.records[-1]["train_loss"] != pytest.approx(mse32, rel=1e-12)


def test_cosine_schedule_ends_at_zero() -> None:
    h = train(mlp(), sine(), TrainConfig(lr=0.02, schedule="cosine", steps=20, eval_every=5))
    lrs = [r["lr"] for r in h.records]
    assert lrs[0] == 0.02 and lrs[2] == pytest.approx(0.01) and lrs[-1] < 1e-12
    assert lrs == sorted(lrs, reverse=True)


def test_step_schedule_multiplies_by_gamma_every_step_every() -> None:
    cfg = TrainConfig(lr=0.02, schedule="step", step_every=10, gamma=0.5, steps=25, eval_every=5)
    h = train(mlp(), sine(), cfg)
    assert [(r["step"], r["lr"]) for r in h.records] == [
        (0, 0.02), (5, 0.02), (10, 0.01), (15, 0.01), (20, 0.005), (25, 0.005)]


# ---- config -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("optimizer", "rmsprop", "adam, adamw, sgd, lbfgs"),
        ("schedule", "linear", "constant, cosine, step"),
        ("dtype", "float16", "float32, float64"),
        ("lr", 0.0, "a number > 0"),
        ("lr", "fast", "a number > 0"),
        ("steps", 2.5, "an integer >= 0"),
        ("batch_size", 0, "None or an integer >= 1"),
        ("momentum", 1.0, "[0, 1)"),
        ("gamma", 0.0, "(0, 1]"),
        ("grid_eps", 1.5, "[0, 1]"),
        ("grid_stages", (3, 0), "a tuple of integers >= 1"),
        ("eval_every", 0, "an integer >= 1"),
        ("grad_clip", -1.0, "None or a number > 0"),
        ("seed", True, "an integer"),
    ],
)
def test_config_errors_name_the_field_value_and_allowed(field: str, value: Any, allowed: str) -> None:
    pattern = re.escape(f"TrainConfig.{field}={value!r}") + ".*" + re.escape(allowed)
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**{field: value})


def test_config_cross_field_rules_and_toml_friendly_values() -> None:
    with pytest.raises(ValueError, match="weight_decay.*lbfgs"):
        TrainConfig(optimizer="lbfgs", weight_decay=1e-4)
    with pytest.raises(ValueError, match="grid_update_until=0.*grid_update_every > 0"):
        TrainConfig(grid_update_every=5)
    cfg = TrainConfig(batch_size="none", grad_clip="None", grid_stages=[3, 5], lr=1)  # type: ignore[arg-type]
    assert cfg.batch_size is None and cfg.grad_clip is None and cfg.grid_stages == (3, 5)
    assert isinstance(cfg.lr, float) and cfg.total_steps == 2 * cfg.steps
    assert TrainConfig(steps=7).total_steps == 7


# ---- with the real model builder --------------------------------------------------------------
def test_kan_then_mlp_model_from_a_spec() -> None:
    from kanlab.models.spec import parse_spec
    from kanlab.models.stack import build

    model = build(parse_spec("kan:1-3:g3+mlp:3-8-1"))
    x = sine().x_train
    # Dense layers have edge_responses too, but they are not KAN edges: only layer 0 counts.
    assert isinstance(model.layers[0], KANLinear)
    expected = layer_sparsity(model.layers[0].edge_responses(x))
    assert sparsity_loss(model, x).item() == pytest.approx(expected.item(), rel=1e-6)
    cfg = TrainConfig(steps=20, eval_every=10, grid_stages=(3, 6), grid_update_every=5, grid_update_until=10,
                      sparsity=1e-3, grad_clip=1.0)
    h = train(model, sine(), cfg)
    assert h.status == "finished" and model.layers[0].grid_size == 6
    assert h.records[-1]["train_loss"] < h.records[0]["train_loss"]
