"""First-order steps (Adam, AdamW, SGD) of a small KAN on one flat vector, without autograd.

The loss is the MSE, plus the KAN paper's sparsity term when the config asks for it.

Where every layer of a model runs the native path (the default preset's KANs, the KAN paper's
[2, 5, 1]; see native_objective.mse_objective), train() gives the optimizer one flat copy of the
trainable parameters instead of the parameters themselves. Each step copies the model's
parameters in (grid updates change coefficients in place between steps), takes the MSE and its
gradient on that vector from the native kernels, lets the optimizer update it, and copies it back
into the model. The optimizers' arithmetic is elementwise, so one tensor of n entries holds the
values the per-parameter tensors would; what goes is autograd's graph and the optimizer's cost per
tensor (12 tensors for a three-layer KAN with PyKAN's tricks). benchmarks/profile_step.py
--round-robin measures the step against the MLP's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from kanlab.training import native_objective
from kanlab.training.config import TrainConfig
from kanlab.training.optimizers import make_optimizer

FIRST_ORDER = ("adam", "adamw", "sgd")  # the optimizers whose update is elementwise


def _terms(cfg: TrainConfig) -> dict[str, float]:
    # the sparsity term's weights, as mse_objective takes them
    return {"sparsity": cfg.sparsity, "l1": cfg.sparsity_l1, "entropy": cfg.sparsity_entropy}


class FlatStep:
    """An optimizer over one flat copy of params, stepping on the native kernels' loss and gradient.

    Args:
        model: the model being trained (its parameters are params, in the optimizer's order).
        params: its trainable parameters.
        cfg: the training configuration (which optimizer, its learning rate and settings).
    Attributes:
        opt: the optimizer over the flat vector (a learning-rate schedule is made on it).
    """

    def __init__(self, model: nn.Module, params: Sequence[torch.Tensor], cfg: TrainConfig) -> None:
        self.model, self.params = model, list(params)
        self.sizes = [p.numel() for p in self.params]
        self.flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in self.params]))
        self.opt = make_optimizer([self.flat], cfg)
        self.terms = _terms(cfg)

    @classmethod
    def applies(cls, model: nn.Module, params: Sequence[torch.Tensor], cfg: TrainConfig, x: torch.Tensor,
                y: torch.Tensor) -> bool:
        """Whether cfg's optimizer is first-order and the native objective covers model on (x, y)."""
        if cfg.optimizer not in FIRST_ORDER or len(x) == 0:
            return False
        return native_objective.mse_objective(model, params, x[:1], y[:1], **_terms(cfg)) is not None

    def step(self, x: torch.Tensor, y: torch.Tensor, loss: Callable[[], torch.Tensor]) -> float:
        """One optimizer step on the MSE of the model on (x, y), plus cfg.sparsity times the sparsity
        term; returns the loss before it. loss() computes that same objective on the model's own
        parameters: autograd's fallback where the native objective does not apply."""
        flat = self.flat.detach()
        with torch.no_grad():
            torch.cat([p.reshape(-1) for p in self.params], out=flat)
        objective = native_objective.mse_objective(self.model, self.params, x, y, **self.terms)
        if objective is not None:
            before, grad = objective(flat)
        else:  # a layer left the native path mid-stage: the same gradient by autograd
            for p in self.params:
                p.grad = None
            value = loss()
            value.backward()
            before = float(value.detach())
            grad = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1)
                              for p in self.params])
        self.flat.grad = grad
        self.opt.step()
        with torch.no_grad():
            for p, new in zip(self.params, flat.split(self.sizes), strict=True):
                p.copy_(new.view_as(p))
        return before
