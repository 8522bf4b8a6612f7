"""Full-set evaluation of a model on a dataset's train, test and validation splits; the Data protocol.

Value targets: mean squared error. Class targets (one-hot rows, the model's outputs are logits):
cross-entropy (the loss, the metric to minimise), accuracy and macro-F1.

Legend: n rows, d inputs, t targets (C classes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Data", "accuracy", "evaluate", "loss_function", "macro_f1", "splits", "target_kind"]


class Data(Protocol):
    """What train needs from a dataset (kanlab.tasks.Dataset is one): (n, d) inputs, (n, t) targets.

    A `target_kind` attribute of "class" (one-hot targets) selects cross-entropy; without it the
    targets are values and the loss is the MSE. Optional `x_val` and `y_val` (not None) are a
    validation set: evaluated, never trained on.
    """

    @property
    def x_train(self) -> torch.Tensor: ...
    @property
    def y_train(self) -> torch.Tensor: ...
    @property
    def x_test(self) -> torch.Tensor: ...
    @property
    def y_test(self) -> torch.Tensor: ...


def splits(data: object) -> tuple[str, ...]:
    """The splits evaluate() reports: train and test, and val when data has a validation set."""
    return ("train", "test", "val") if getattr(data, "x_val", None) is not None else ("train", "test")


def target_kind(data: object) -> str:
    """"class" or "value": data's target_kind, "value" when it has none."""
    return str(getattr(data, "target_kind", "value"))


def loss_function(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of a target kind: MSE for "value", cross-entropy on logits for "class"."""
    return F.cross_entropy if kind == "class" else F.mse_loss


def accuracy(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Share of rows whose predicted class equals the true class; (n,) class indices each."""
    return float((pred == true).double().mean())


def macro_f1(pred: torch.Tensor, true: torch.Tensor, n_classes: int) -> float:
    """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN) (scikit-learn's average="macro").

    A class that is neither true nor predicted for any row has no F1 and is left out (scikit-learn
    averages over the labels present in either); one never predicted but present scores 0.

    Args:
        pred, true: (n,) class indices in 0..n_classes-1.
        n_classes: C.
    Returns:
        The macro-averaged F1 in [0, 1].
    """
    tp = torch.bincount(true[pred == true], minlength=n_classes).double()        # (C,)
    predicted = torch.bincount(pred, minlength=n_classes).double()               # (C,) TP + FP
    actual = torch.bincount(true, minlength=n_classes).double()                  # (C,) TP + FN
    denominator = predicted + actual
    present = denominator > 0
    return float((2 * tp[present] / denominator[present]).mean())


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, *, chunk: int = 65536) -> dict[str, float]:
    """Full-set loss of model on the train, test (and validation) sets, in chunks of rows, without gradients.

    Args:
        model: maps (n, d) -> (n, t); data is cast to its first parameter's dtype and device.
        data: any object with x_train, y_train, x_test, y_test (and target_kind, x_val and
            y_val, see Data).
        chunk: rows per forward pass (bounds memory on image tasks).
    Returns:
        Python floats. Value targets: train_loss, test_loss (MSE over all n * t entries) and
        test_rmse. Class targets: train_loss, test_loss (mean cross-entropy per row, nats),
        train_accuracy, test_accuracy and test_macro_f1. With a validation set, val_loss and
        val_rmse, or val_loss, val_accuracy and val_macro_f1, computed as the test's.
    """
    p = next(model.parameters())
    classes = target_kind(data) == "class"
    was_training = model.training
    model.eval()
    try:
        out = {}
        for split in splits(data):
            x = getattr(data, f"x_{split}").to(p.device, p.dtype)
            y = getattr(data, f"y_{split}").to(p.device, p.dtype)
            outputs = [model(x[i : i + chunk]) for i in range(0, len(x), chunk)]  # (chunk, t) each
            if not classes:
                sse = sum(((o - y[i * chunk : (i + 1) * chunk]) ** 2).sum() for i, o in enumerate(outputs))
                out[f"{split}_loss"] = float(sse) / y.numel()
                continue
            logits = torch.cat(outputs)                                              # (n, C)
            out[f"{split}_loss"] = float(F.cross_entropy(logits, y, reduction="sum")) / len(y)
            pred, true = logits.argmax(dim=1), y.argmax(dim=1)                       # (n,)
            out[f"{split}_accuracy"] = accuracy(pred, true)
            if split != "train":
                out[f"{split}_macro_f1"] = macro_f1(pred, true, y.shape[1])
    finally:
        model.train(was_training)
    if not classes:
        for split in splits(data)[1:]:
            out[f"{split}_rmse"] = math.sqrt(out[f"{split}_loss"]) if out[f"{split}_loss"] >= 0 else math.nan
    return out
