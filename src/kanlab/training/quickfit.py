"""kanlab.fit: train a model in one call, with a study's [train] options as keywords.

A notebook's front door over kanlab.training.loop.train: data is a Dataset (or anything with x_train,
y_train, x_test, y_test) or plain (x, y) tensors or arrays. Legend: n rows, d inputs, t targets.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from kanlab.training.config import TrainConfig
from kanlab.training.evaluation import Data
from kanlab.training.loop import History, train

TRAIN_OPTIONS = tuple(f.name for f in dataclasses.fields(TrainConfig))  # a study's [train] keys


@dataclass(frozen=True, eq=False)
class XYData:
    """Tensors given as (x, y) or (x_train, y_train, x_test, y_test): (n, d) inputs, (n, t) targets."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _column(value: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if t.ndim == 1:
        t = t.unsqueeze(1)                                                             # (n,) -> (n, 1)
    if t.ndim != 2 or not t.is_floating_point():
        raise ValueError(f"{name} must be a 1-D or 2-D array of floats, got shape {tuple(t.shape)} "
                         f"and dtype {t.dtype}")
    return t


def as_data(data_or_xy: Data | Sequence[Any]) -> Data:
    """data_or_xy as a Data: a Dataset (any object with x_train) unchanged, or tensors/arrays as XYData.

    Args:
        data_or_xy: a Dataset, (x, y) (trained and evaluated on the same rows), or
            (x_train, y_train, x_test, y_test). 1-D arrays are taken as one column.
    Returns:
        Something kanlab.training.loop.train accepts.
    """
    if hasattr(data_or_xy, "x_train"):
        return data_or_xy  # type: ignore[return-value]
    if not isinstance(data_or_xy, (tuple, list)) or len(data_or_xy) not in (2, 4):
        raise TypeError(f"expected a Dataset, (x, y) or (x_train, y_train, x_test, y_test), got "
                        f"{type(data_or_xy).__name__}" + (f" of {len(data_or_xy)} items"
                                                          if isinstance(data_or_xy, (tuple, list)) else ""))
    names = ("x", "y") if len(data_or_xy) == 2 else ("x_train", "y_train", "x_test", "y_test")
    x, y, *test = (_column(v, n) for v, n in zip(data_or_xy, names, strict=True))
    x_test, y_test = test or (x, y)
    for (a, b), split in (((x, y), "train"), ((x_test, y_test), "test")):
        if len(a) != len(b):
            raise ValueError(f"{split} inputs have {len(a)} rows but targets {len(b)}")
    return XYData(x, y, x_test, y_test)


def fit(model: nn.Module, data_or_xy: Data | Sequence[Any], **train_options: Any) -> History:
    """Train model in place (kanlab.training.loop.train) with a study's [train] options as keywords.

    Args:
        model: any kanlab model or layer; converted to the dtype option (default float32) in place.
        data_or_xy: a Dataset (kanlab.tasks.make_dataset), (x, y) tensors or arrays (evaluated on
            the training rows), or (x_train, y_train, x_test, y_test).
        **train_options: TrainConfig fields, e.g. steps=500, lr=0.01, optimizer="lbfgs",
            grid_stages=(5, 10, 20); an unknown name is a TypeError listing the allowed ones.
    Returns:
        The History: records (step, train_loss, test_loss, ...), stages, status and timings.
    """
    unknown = sorted(set(train_options) - set(TRAIN_OPTIONS))
    if unknown:
        hints = [f"{close[0]!r} for {name!r}" for name in unknown
                 if (close := difflib.get_close_matches(name, TRAIN_OPTIONS, n=1))]
        raise TypeError(f"kanlab.fit got unknown option(s) {', '.join(map(repr, unknown))}"
                        + (f" (did you mean {', '.join(hints)}?)" if hints else "")
                        + f"; allowed (a study's [train] keys): {', '.join(TRAIN_OPTIONS)}")
    return train(model, as_data(data_or_xy), TrainConfig(**train_options))
