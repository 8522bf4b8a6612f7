"""scikit-learn's bundled tables, read from the files inside its wheel (no download).

Classification: digits (8x8 handwritten digits, 1797 rows, 64 pixel inputs in 0..16, 10 classes),
breast_cancer (569 rows, 30 inputs, 2 classes: 212 malignant, 357 benign), wine (178 rows, 13
inputs, 3 classes), iris (150 rows, 4 inputs, 3 classes). Regression: diabetes (442 rows, 10
inputs, disease progression after one year, 25..346), read unscaled (scaled=False): scikit-learn's
scaled copy is standardised over every row, test rows included, where kanlab fits the
standardisation on the training rows only (kanlab.tasks.tabular).
"""

from __future__ import annotations

import functools

import numpy as np

from kanlab.tasks.base import Dataset
from kanlab.tasks.tabular import tabular_dataset

# name -> (target kind, target name)
DATASETS = {
    "digits": ("class", "digit"),
    "breast_cancer": ("class", "diagnosis"),
    "wine": ("class", "cultivar"),
    "iris": ("class", "species"),
    "diabetes": ("value", "progression"),
}


@functools.lru_cache(maxsize=len(DATASETS))
def load_table(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A bundled table as (x (n, d) float64, y (n,) labels or values, input names); read-only arrays.

    Class labels are the class names (digits: "0".."9"), so reports show them.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; bundled: {', '.join(DATASETS)}")
    from sklearn import datasets  # imported on first use: a second or so

    loader = getattr(datasets, f"load_{name}")
    bunch = loader(scaled=False) if name == "diabetes" else loader()
    x = np.asarray(bunch.data, dtype=np.float64)
    if DATASETS[name][0] == "class":
        y = np.asarray(bunch.target_names).astype(str)[bunch.target]
    else:
        y = np.asarray(bunch.target, dtype=np.float64)
    inputs = tuple(str(f) for f in bunch.feature_names)
    for a in (x, y):
        a.flags.writeable = False  # shared by every call (the cache): nobody may change it
    return x, y, inputs


def sklearn_dataset(name: str, *, test_fraction: float = 0.2, seed: int = 0,
                    standardize: str = "inputs", val_fraction: float = 0.0) -> Dataset:
    """A bundled table split and standardised as kanlab.tasks.tabular says.

    Args:
        name: a key of DATASETS.
        test_fraction, seed: the split (stratified by class for classification tables).
        standardize: "none", "inputs" or "inputs+targets" (the last for diabetes only).
        val_fraction: share of the training rows held out for validation (0: none).
    Returns:
        float64 Dataset (one-hot targets for the classification tables).
    """
    x, y, inputs = load_table(name)
    kind, target = DATASETS[name]
    if kind == "class":
        labels, count = y, f"{len(np.unique(y))} classes"
    else:
        labels, count = y.reshape(-1, 1), "values"
    return tabular_dataset(
        x, labels, input_names=inputs, target_names=(target,), target_kind=kind, standardize=standardize,
        test_fraction=test_fraction, seed=seed, where=f"dataset {name!r}", val_fraction=val_fraction,
        description=f"dataset {name} (scikit-learn): {target} ({count}) from {len(inputs)} inputs, "
                    f"{x.shape[0]} rows",
    )
