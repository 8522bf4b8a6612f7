"""kanlab.training.flat_step: Adam, AdamW and SGD on a native KAN's flat vector follow the same
optimizers on the model's parameters through autograd, step by step; where train() uses it."""

from __future__ import annotations

import pytest
import torch

from kanlab.layers.kan import native_build
from kanlab.models.stack import KAN, MLP
from kanlab.training import flat_step, native_objective
from kanlab.training.config import TrainConfig
from kanlab.training.flat_step import FlatStep
from kanlab.training.loop import train

pytestmark = pytest.mark.skipif(not native_build.available(torch.float64),
                                reason="no C compiler builds the native kernels here")


class Toy:
    g = torch.Generator().manual_seed(3)
    x_train = torch.rand(240, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2
    y_train = torch.sin(3 * x_train[:, :1]) * x_train[:, 1:2] + 0.1
    x_test, y_test = x_train[:60], y_train[:60]


def run(cfg: TrainConfig, flat: bool, monkeypatch: pytest.MonkeyPatch,
        model: torch.nn.Module | None = None) -> tuple[list[float], torch.Tensor, int]:
    """train() from seed 0 with the flat step allowed or not: losses, final parameters, flat steps."""
    steps = 0
    real_step = FlatStep.step

    def counted(self: FlatStep, *args: object) -> float:
        nonlocal steps
        steps += 1
        return real_step(self, *args)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(FlatStep, "step", counted)
        if not flat:
            m.setattr(FlatStep, "applies", classmethod(lambda cls, *args: False))
        torch.manual_seed(0)
        model = model if model is not None else KAN([2, 5, 1])
        history = train(model, Toy(), cfg)
    assert history.status == "finished"
    losses = [r["train_loss"] for r in history.records]
    return losses, torch.cat([p.detach().reshape(-1) for p in model.parameters()]), steps


@pytest.mark.parametrize("options", [
    {"optimizer": "adam", "lr": 0.02, "schedule": "cosine"},
    {"optimizer": "adamw", "lr": 0.02, "weight_decay": 0.1},
    {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 64},
    {"optimizer": "adam", "lr": 0.02, "grid_update_every": 2, "grid_update_until": 8, "grid_stages": (3, 5)},
    {"optimizer": "adam", "lr": 0.02, "sparsity": 0.01, "sparsity_entropy": 1.0},
], ids=["adam-cosine", "adamw-decay", "sgd-momentum-minibatch", "adam-grid-updates-and-refine",
        "adam-sparsity"])
def test_the_flat_step_follows_the_optimizer_on_the_parameters(options: dict[str, object],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrainConfig(dtype="float64", steps=8, eval_every=2, **options)  # type: ignore[arg-type]
    flat_losses, flat_params, used = run(cfg, True, monkeypatch)
    ref_losses, ref_params, unused = run(cfg, False, monkeypatch)
    assert used == cfg.total_steps and unused == 0
    assert flat_losses[-1] < flat_losses[0]
    torch.testing.assert_close(torch.tensor(flat_losses), torch.tensor(ref_losses), rtol=1e-9, atol=0)
    torch.testing.assert_close(flat_params, ref_params, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sparsity", [0.0, 0.01])
def test_a_layer_leaving_the_native_path_mid_stage_steps_by_autograd(sparsity: float,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # the objective refuses from the third step on: those steps take autograd's gradient instead
    calls = 0
    real = native_objective.mse_objective

    def refusing(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs) if calls <= 3 else None  # type: ignore[arg-type]  (call 1: applies())

    cfg = TrainConfig(optimizer="adam", lr=0.02, dtype="float64", steps=6, eval_every=3, sparsity=sparsity)
    ref_losses, ref_params, _ = run(cfg, False, monkeypatch)
    monkeypatch.setattr(native_objective, "mse_objective", refusing)
    losses, params, used = run(cfg, True, monkeypatch)
    assert used == 6 and calls == 7
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-9, atol=0)
    torch.testing.assert_close(params, ref_params, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("options", [{"optimizer": "lbfgs", "lr": 1.0}, {"grad_clip": 1.0},
                                     {"optimizer": "adam", "model": "mlp"}], ids=str)
def test_not_where_the_native_objective_does_not_compute_the_step(options: dict[str, object],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    options = dict(options)
    model = MLP([2, 5, 1]) if options.pop("model", None) == "mlp" else None
    cfg = TrainConfig(dtype="float64", steps=2, eval_every=2, **options)  # type: ignore[arg-type]
    assert run(cfg, True, monkeypatch, model)[2] == 0


def test_only_elementwise_optimizers_take_it() -> None:
    assert set(flat_step.FIRST_ORDER) == {"adam", "adamw", "sgd"}
    assert not FlatStep.applies(KAN([2, 5, 1]).double(), [], TrainConfig(optimizer="lbfgs"),
                                Toy.x_train, Toy.y_train)
