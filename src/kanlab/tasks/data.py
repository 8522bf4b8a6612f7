"""User data: named numeric columns from a CSV (with a header row) or an .npz (arrays by name).

Rows are counted from 0 after the header. The split, the standardisation of the inputs and the
classes of a class target are kanlab.tasks.tabular's.

Legend: n rows, d input columns, t target columns.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from kanlab.tasks.base import Dataset
from kanlab.tasks.tabular import tabular_dataset

DATA_SUFFIXES = (".csv", ".npz")


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """Every column of a CSV as an array of strings, keyed by its header name."""
    with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: drop a BOM
        rows = [row for row in csv.reader(fh) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{str(path)!r} is empty; expected a header row of column names")
    header = [name.strip() for name in rows[0]]
    dupes = sorted({name for name in header if header.count(name) > 1})
    if dupes or "" in header:
        raise ValueError(f"{str(path)!r}: column names must be unique and non-empty, got {header}")
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ValueError(
                f"{str(path)!r}: row {i} has {len(row)} fields but the header has {len(header)}"
            )
    cells = np.array(rows[1:], dtype=str).reshape(len(rows) - 1, len(header))
    return {name: cells[:, j] for j, name in enumerate(header)}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, flattened to one column each."""
    with path.open("rb") as fh:  # our handle: np.load(path) leaks its own when the file is bad
        try:
            loaded = np.load(fh, allow_pickle=False)
            if not hasattr(loaded, "files"):  # a bare .npy array under an .npz name
                raise ValueError("it holds one unnamed array, not named arrays")
            arrays = {name: np.asarray(loaded[name]) for name in loaded.files}
        except (ValueError, zipfile.BadZipFile) as err:  # object arrays need pickle: refused
            raise ValueError(f"cannot read {str(path)!r} as an .npz archive: {err}") from err
    for name, a in arrays.items():
        if a.ndim > 2 or (a.ndim == 2 and a.shape[1] != 1):
            raise ValueError(f"{str(path)!r}: array {name!r} must be 1-D (n,), got {a.shape}")
        arrays[name] = a.reshape(-1)
    return arrays


def read_columns(path: str) -> dict[str, np.ndarray]:
    """Read a CSV or .npz into raw (unconverted) columns of equal length.

    Args:
        path: a .csv file with a header row, or an .npz of 1-D arrays.
    Returns:
        {column name: (n,) array}; CSV columns are strings until numeric_column converts them.
    """
    p = Path(path).expanduser()
    if p.suffix.lower() not in DATA_SUFFIXES:
        raise ValueError(f"data file {path!r} must end with one of {DATA_SUFFIXES}")
    if not p.is_file():
        raise FileNotFoundError(f"data file {str(p)!r} does not exist or is not a file")
    try:
        columns = _read_csv(p) if p.suffix.lower() == ".csv" else _read_npz(p)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read data file {str(p)!r}: {err}") from err
    lengths = {name: a.shape[0] for name, a in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{str(p)!r}: columns have different lengths {lengths}")
    return columns


def numeric_column(name: str, values: np.ndarray) -> np.ndarray:
    """Convert one column to float64, or raise naming the column and its first bad row."""
    if values.dtype.kind in "biuf":
        out = values.astype(np.float64)
    elif values.dtype.kind == "U":
        out = np.empty(values.shape[0], dtype=np.float64)
        for i, cell in enumerate(values):
            try:
                out[i] = float(cell)
            except ValueError:
                raise ValueError(
                    f"column {name!r} is not numeric: row {i} (counting data rows from 0) "
                    f"holds {str(cell)!r}"
                ) from None
    else:
        raise ValueError(f"column {name!r} is not numeric (dtype {values.dtype})")
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise ValueError(
            f"column {name!r} has a non-finite value ({out[bad[0]]}) at row {bad[0]} "
            f"(the first bad row, counting data rows from 0; {bad.size} in all)"
        )
    return out


def select_columns(
    available: tuple[str, ...], inputs: tuple[str, ...], targets: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Check the requested names; empty inputs means every column that is not a target."""
    for name in (*inputs, *targets):
        if name not in available:
            raise ValueError(f"unknown column {name!r}; available columns: {', '.join(available)}")
    if not targets:
        raise ValueError(f"no target columns given; available columns: {', '.join(available)}")
    if not inputs:
        inputs = tuple(name for name in available if name not in targets)
        if not inputs:
            raise ValueError(f"no input columns left: every column is a target ({targets})")
    return inputs, targets


def data_dataset(
    path: str,
    inputs: tuple[str, ...],
    targets: tuple[str, ...],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    target_kind: str = "value",
    standardize: str = "inputs",
    val_fraction: float = 0.0,
) -> Dataset:
    """A seeded train/test split of the named columns of a CSV or .npz file.

    Args:
        path: the file (see read_columns).
        inputs: input column names; () means every column not in targets.
        targets: target column names (at least one; exactly one for target_kind "class").
        test_fraction: share of rows for the test set, in (0, 1); at least one row each side.
        seed: the split's seed (see kanlab.tasks.tabular.split_rows).
        target_kind: "value" (numeric targets) or "class" (one column of labels: names or whole
            numbers, split stratified by class).
        standardize: "none", "inputs" or "inputs+targets" (fitted on the training rows).
        val_fraction: share of the training rows held out for validation (0: none).
    Returns:
        float64 Dataset with x = coords = the (standardised) input columns.
    """
    columns = read_columns(path)
    inputs, targets = select_columns(tuple(columns), inputs, targets)
    if target_kind == "class" and len(targets) != 1:
        raise ValueError(f"target_kind = \"class\" needs exactly one target column (the labels), "
                         f"got {targets}")
    x = np.stack([numeric_column(c, columns[c]) for c in inputs], axis=1)          # (n, d)
    if target_kind == "class":
        y = columns[targets[0]]                                                     # (n,) labels
    else:
        y = np.stack([numeric_column(c, columns[c]) for c in targets], axis=1)     # (n, t)
    if x.shape[0] < 2:
        raise ValueError(f"{path!r} has {x.shape[0]} data rows; a train/test split needs at least 2")
    what = f"classes of {targets[0]}" if target_kind == "class" else ", ".join(targets)
    return tabular_dataset(
        x, y, input_names=inputs, target_names=targets, target_kind=target_kind, standardize=standardize,
        test_fraction=test_fraction, seed=seed, where=f"column {targets[0]!r} of {str(path)!r}",
        description=f"data {Path(path).name}: {what} from {', '.join(inputs)}", val_fraction=val_fraction,
    )
