"""The Dataset every task produces: train, test (and validation) tensors plus what is needed to plot them.

Legend: n rows, d raw coordinates, e encoded inputs (e = d without an encoding), t targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# The random streams of a task, default_rng([seed, stream]), one per purpose (0, 1: a function's
# train and test points; 2: training noise; 3: a table's test split); 4: the validation set.
STREAM_VAL = 4


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value to compare
class Dataset:
    """Train/test tensors of one task; x is encoded, coords are the raw inputs.

    Attributes:
        x_train, x_test: (n, e) network inputs, already encoded.
        y_train, y_test: (n, t) targets; noise (if any) is in y_train only. Class targets are
            one-hot, t = C classes (the model's outputs are logits).
        coords_train, coords_test: (n, d) raw coordinates before encoding, for plotting.
        input_names: d names, one per column of coords (not of the encoded x).
        target_names: t names, one per column of y (the class names for class targets).
        image_shape: (height, width) for image tasks, where the test set is every pixel in
            row-major order so that y_test.reshape(image_shape) is the image; else None.
        description: human-readable, e.g. "zigzag x + frac(|1.5x|) on [-2, 2]".
        target_kind: "value" (regression, MSE) or "class" (classification, cross-entropy).
        split: for tables (kanlab.tasks.tabular), how the rows were split and standardised:
            seed, test_fraction, stratified, standardize, train_rows and test_rows (row numbers
            in the table), val_fraction and val_rows with a validation split, input_mean and
            input_std (and target_*) when standardised; for images with a validation split the
            held-out pixels (seed, val_fraction, train_rows, val_rows: row-major pixel indices);
            else None.
        x_val, y_val, coords_val: the validation set, (v, e), (v, t), (v, d), or None without
            one (TaskConfig.val_fraction = 0): never trained on, never part of the training rows.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    coords_train: torch.Tensor
    coords_test: torch.Tensor
    input_names: tuple[str, ...]
    target_names: tuple[str, ...]
    image_shape: tuple[int, int] | None
    description: str
    target_kind: str = "value"
    split: dict[str, Any] | None = None
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    coords_val: torch.Tensor | None = None

    def __post_init__(self) -> None:
        given = [getattr(self, f"{v}_val") is not None for v in ("x", "y", "coords")]
        if any(given) and not all(given):
            raise ValueError("x_val, y_val and coords_val go together: give all three or none")
        for split in ("train", "test", "val") if all(given) else ("train", "test"):
            x, y, c = (getattr(self, f"{v}_{split}") for v in ("x", "y", "coords"))
            if x.ndim != 2 or y.ndim != 2 or c.ndim != 2:
                raise ValueError(f"x_{split}, y_{split} and coords_{split} must all be 2-D")
            if not x.shape[0] == y.shape[0] == c.shape[0]:
                raise ValueError(
                    f"{split} row counts differ: x {x.shape[0]}, y {y.shape[0]}, "
                    f"coords {c.shape[0]}"
                )
            if c.shape[1] != len(self.input_names) or y.shape[1] != len(self.target_names):
                raise ValueError(
                    f"{split}: {c.shape[1]} coordinate columns for input_names "
                    f"{self.input_names} and {y.shape[1]} target columns for {self.target_names}"
                )
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ValueError("x_train and x_test must have the same number of columns")
        if self.x_val is not None and self.x_val.shape[1] != self.x_train.shape[1]:
            raise ValueError("x_val must have as many columns as x_train")
        if self.target_kind not in ("value", "class"):
            raise ValueError(f"target_kind must be 'value' or 'class', got {self.target_kind!r}")

    @property
    def in_dim(self) -> int:
        """Number of network inputs (encoded features)."""
        return int(self.x_train.shape[1])

    @property
    def out_dim(self) -> int:
        """Number of targets."""
        return int(self.y_train.shape[1])


def raw_dataset(
    coords_train: np.ndarray,
    y_train: np.ndarray,
    coords_test: np.ndarray,
    y_test: np.ndarray,
    *,
    input_names: tuple[str, ...],
    target_names: tuple[str, ...],
    description: str,
    image_shape: tuple[int, int] | None = None,
    target_kind: str = "value",
    split: dict[str, Any] | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> Dataset:
    """A float64 Dataset with x = coords (no encoding, no noise), as the task builders return it.

    Args:
        coords_train, coords_test: (n, d) arrays.
        y_train, y_test: (n,) or (n, t) arrays.
        val: (coords_val, y_val) of a validation set, or None.
    Returns:
        Dataset whose tensors are float64 and x_* is coords_*.
    """

    def col(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
        return t.reshape(-1, 1) if t.ndim == 1 else t

    c_tr, c_te = col(coords_train), col(coords_test)
    c_val, y_val = (None, None) if val is None else (col(val[0]), col(val[1]))
    return Dataset(
        x_train=c_tr,
        y_train=col(y_train),
        x_test=c_te,
        y_test=col(y_test),
        coords_train=c_tr,
        coords_test=c_te,
        input_names=input_names,
        target_names=target_names,
        image_shape=image_shape,
        description=description,
        target_kind=target_kind,
        split=split,
        x_val=c_val,
        y_val=y_val,
        coords_val=c_val,
    )
