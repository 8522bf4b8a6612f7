"""Full-set evaluation of a model on a dataset's train and test splits, and the Data protocol.

Legend: n rows, d inputs, t targets.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

__all__ = ["Data", "evaluate"]


class Data(Protocol):
    """What train needs from a dataset (kanlab.tasks.Dataset is one): (n, d) inputs, (n, t) targets."""

    @property
    def x_train(self) -> torch.Tensor: ...
    @property
    def y_train(self) -> torch.Tensor: ...
    @property
    def x_test(self) -> torch.Tensor: ...
    @property
    def y_test(self) -> torch.Tensor: ...


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, *, chunk: int = 65536) -> dict[str, float]:
    """Full-set MSE of model on the train and test sets, in chunks of rows, without gradients.

    Args:
        model: maps (n, d) -> (n, t); data is cast to its first parameter's dtype and device.
        data: any object with x_train, y_train, x_test, y_test.
        chunk: rows per forward pass (bounds memory on image tasks).
    Returns:
        {"train_loss", "test_loss", "test_rmse"} as Python floats (MSE over all n * t entries).
    """
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        out = {}
        for split in ("train", "test"):
            x = getattr(data, f"x_{split}").to(p.device, p.dtype)
            y = getattr(data, f"y_{split}").to(p.device, p.dtype)
            sse = sum(  # (chunk, t) squared errors
                ((model(x[i : i + chunk]) - y[i : i + chunk]) ** 2).sum()
                for i in range(0, len(x), chunk))
            out[f"{split}_loss"] = float(sse) / y.numel()
    finally:
        model.train(was_training)
    out["test_rmse"] = math.sqrt(out["test_loss"]) if out["test_loss"] >= 0 else math.nan
    return out
