"""Tables of rows (user files, scikit-learn's bundled data) into a Dataset: classes, split, standardisation.

Choices, stated once:
- The split is seeded: the test rows come from default_rng([seed, 3]). Value targets: a random
  test_fraction of the rows (at least one row each side). Class targets: stratified, the same
  fraction of every class (round(fraction * rows of the class), at least one row each side), so
  train and test keep the table's class balance. Both splits keep the table's row order; the
  row numbers go into Dataset.split (and the run folder's split.npz).
- A validation split (val_fraction > 0, for tuning) is carved out of the training rows after the
  test rows are drawn, by the same rule (stratified for classes, at least one row each side) from
  default_rng([seed, 4]): the test rows are the same with or without it, and no validation row is
  a test row or a training row.
- Standardisation is fitted on the training rows only (never validation or test rows) and applied to
  every split: each input
  minus its training mean, over its training standard deviation (population, ddof=0; 1 where a
  column is constant in training, as digits' corner pixels are). With "inputs+targets", value
  targets are standardised the same way (losses are then in units of the training variance).
- Class targets are one-hot rows (y[:, c] = 1 for class c), the classes sorted (numerically for
  numeric labels); the model's outputs are logits, one per class.

Legend: n rows, d inputs, t targets, C classes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from kanlab.tasks.base import STREAM_VAL, Dataset, raw_dataset

STREAM_SPLIT = 3
STANDARDIZE = ("none", "inputs", "inputs+targets")
TARGET_KINDS = ("value", "class")


def class_codes(values: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class labels (names, or whole numbers) as codes 0..C-1 and the sorted class names.

    Args:
        values: (n,) labels, strings or numbers.
        where: the column, for error messages (e.g. "column 'y' of 'data.csv'").
    Returns:
        (n,) int64 codes and the C class names.
    """
    labels = np.asarray(values)
    if labels.dtype.kind == "U":
        labels = np.char.strip(labels)
        with contextlib.suppress(ValueError):  # else names: the classes are the strings
            labels = np.array([float(v) for v in labels], dtype=np.float64)
    elif labels.dtype.kind == "b":
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iuf":
        raise ValueError(f"{where} is not a class column (dtype {labels.dtype})")
    if labels.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
        if bad.size:
            raise ValueError(
                f"{where} is not categorical: row {bad[0]} holds {values[bad[0]]!s} (the first of "
                f"{bad.size} non-integer values); a class column holds names or whole numbers. For a "
                "numeric target, drop target_kind = \"class\""
            )
        labels = labels.astype(np.int64)
    classes, codes = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        only = "no rows" if classes.size == 0 else f"only {classes[0]!s}"
        raise ValueError(f"{where} holds one class ({only}): classification needs at least 2 classes")
    return codes.astype(np.int64), tuple(str(c) for c in classes)


def split_rows(n: int, test_fraction: float, seed: int,
               codes: np.ndarray | None = None, names: tuple[str, ...] = (), *,
               stream: int = STREAM_SPLIT) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train and test row numbers, each sorted; stratified by class when codes are given.

    Args:
        n: number of rows.
        test_fraction: share of the rows (of each class) for the test set, in (0, 1).
        seed: the split comes from default_rng([seed, stream]).
        codes: (n,) class codes, or None for a plain random split.
        names: the class names (for error messages).
        stream: 3 for the test split; 4 (STREAM_VAL) carves the validation rows out of the
            training rows (n and codes are then the training rows').
    Returns:
        (train rows, test rows): row numbers in 0..n-1.
    """
    held = "validation" if stream == STREAM_VAL else "test"
    if n < 2:
        what = "training rows" if held == "validation" else "rows"
        raise ValueError(f"the table has {n} {what}; a {held} split needs at least 2")
    rng = np.random.default_rng([seed, stream])
    if codes is None:
        n_test = min(n - 1, max(1, round(test_fraction * n)))
        order = rng.permutation(n)
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    test = []
    for c in range(int(codes.max()) + 1):
        rows = np.flatnonzero(codes == c)
        if rows.size < 2:
            name = names[c] if c < len(names) else str(c)
            where, kind, use = ("", "", "testing")
            if held == "validation":
                where, kind, use = " among the training rows", "validation ", "validation"
            raise ValueError(f"class {name!r} has {rows.size} row(s){where}: a stratified {kind}split needs "
                             f"at least 2 rows of every class (one for training, one for {use}); drop it or "
                             "add rows")
        n_test = min(rows.size - 1, max(1, round(test_fraction * rows.size)))
        test.append(rng.permutation(rows)[:n_test])
    test_rows = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(n), test_rows), test_rows


def standardizer(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training mean and standard deviation per column (ddof=0; 1 for a constant column)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def tabular_dataset(
    x: np.ndarray, y: np.ndarray, *, input_names: tuple[str, ...], target_names: tuple[str, ...],
    target_kind: str, standardize: str, test_fraction: float, seed: int, description: str,
    where: str, val_fraction: float = 0.0,
) -> Dataset:
    """A seeded split of a table, inputs standardised on the training rows, classes one-hot.

    Args:
        x: (n, d) numeric inputs.
        y: (n, t) numeric targets ("value"), or (n,) labels ("class": names or whole numbers).
        input_names, target_names: column names (one target for "class").
        target_kind: "value" or "class".
        standardize: one of STANDARDIZE ("inputs+targets" is for value targets).
        test_fraction, seed: the split (see split_rows).
        description: the dataset's one-line description.
        where: the target column, for error messages.
        val_fraction: share of the training rows (of each class) held out for validation (0: none).
    Returns:
        float64 Dataset; for classes y is one-hot with target_names the class names.
    """
    classes: tuple[str, ...] = ()
    codes = None
    if target_kind == "class":
        codes, classes = class_codes(y.reshape(-1), where)
    train, test = split_rows(x.shape[0], test_fraction, seed, codes, classes)
    split: dict[str, Any] = {"seed": seed, "test_fraction": test_fraction, "stratified": codes is not None,
                             "standardize": standardize, "train_rows": train, "test_rows": test}
    parts = {"train": train, "test": test}
    if val_fraction > 0:
        keep, held = split_rows(train.size, val_fraction, seed, None if codes is None else codes[train],
                                classes, stream=STREAM_VAL)
        parts.update(train=train[keep], val=train[held])
        split.update(val_fraction=val_fraction, train_rows=train[keep], val_rows=train[held])
    xs = {k: x[rows] for k, rows in parts.items()}
    if standardize != "none":
        mean, std = standardizer(xs["train"])  # the training rows only: never validation or test rows
        xs = {k: (v - mean) / std for k, v in xs.items()}                              # (n, d) each
        split.update(input_mean=mean, input_std=std)
    if codes is not None:
        onehot = np.eye(len(classes))[codes]                                           # (n, C)
        ys = {k: onehot[rows] for k, rows in parts.items()}
        target_names = classes
    else:
        ys = {k: y[rows] for k, rows in parts.items()}
        if standardize == "inputs+targets":
            mean, std = standardizer(ys["train"])
            ys = {k: (v - mean) / std for k, v in ys.items()}                          # (n, t) each
            split.update(target_mean=mean, target_std=std)
    return raw_dataset(
        xs["train"], ys["train"], xs["test"], ys["test"], input_names=input_names, target_names=target_names,
        description=description, target_kind=target_kind, split=split,
        val=(xs["val"], ys["val"]) if "val" in parts else None,
    )
