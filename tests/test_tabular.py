"""Tables: scikit-learn's bundled datasets, class columns, stratified seeded splits, standardisation."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn import datasets as skd

from kanlab.tasks import DATASETS, TaskConfig, make_dataset


def table(name: str) -> tuple[np.ndarray, np.ndarray]:
    bunch = skd.load_diabetes(scaled=False) if name == "diabetes" else getattr(skd, f"load_{name}")()
    return np.asarray(bunch.data), np.asarray(bunch.target)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> str:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return str(path)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_bundled_rows_and_labels_are_scikit_learns(name: str) -> None:
    x, target = table(name)
    ds = make_dataset(TaskConfig(kind="dataset", name=name, standardize="none"), torch.float64)
    assert ds.split is not None
    train, test = ds.split["train_rows"], ds.split["test_rows"]
    assert sorted([*train, *test]) == list(range(len(x)))  # every row once
    np.testing.assert_array_equal(ds.x_train.numpy(), x[train])
    np.testing.assert_array_equal(ds.x_test.numpy(), x[test])
    if DATASETS[name][0] == "value":
        assert ds.target_kind == "value"
        np.testing.assert_array_equal(ds.y_test.numpy()[:, 0], target[test])
    else:
        bunch = getattr(skd, f"load_{name}")()
        assert ds.target_kind == "class" and ds.out_dim == len(bunch.target_names)
        names = np.array(ds.target_names)[ds.y_test.argmax(1).numpy()]                 # one-hot -> class
        np.testing.assert_array_equal(names, np.asarray(bunch.target_names).astype(str)[target[test]])
        assert torch.equal(ds.y_train.sum(1), torch.ones(len(train), dtype=torch.float64))


def test_stratified_split_keeps_each_class_share_and_is_seeded() -> None:
    _, target = table("breast_cancer")  # 212 malignant, 357 benign
    ds = make_dataset(TaskConfig(kind="dataset", name="breast_cancer", test_fraction=0.25))
    assert ds.split is not None and ds.split["stratified"]
    test = ds.split["test_rows"]
    assert np.bincount(target[test]).tolist() == [round(0.25 * 212), round(0.25 * 357)]
    again = make_dataset(TaskConfig(kind="dataset", name="breast_cancer", test_fraction=0.25))
    assert again.split is not None and np.array_equal(again.split["test_rows"], test)
    other = make_dataset(TaskConfig(kind="dataset", name="breast_cancer", test_fraction=0.25, seed=1))
    assert other.split is not None and not np.array_equal(other.split["test_rows"], test)


def test_standardisation_uses_the_training_rows_only() -> None:
    x, _ = table("digits")
    ds = make_dataset(TaskConfig(kind="dataset", name="digits"), torch.float64)
    assert ds.split is not None
    raw_train, raw_test = x[ds.split["train_rows"]], x[ds.split["test_rows"]]
    mean, std = raw_train.mean(0), raw_train.std(0)
    std = np.where(std > 0, std, 1.0)  # constant corner pixels stay 0
    np.testing.assert_allclose(ds.x_train.numpy(), (raw_train - mean) / std, atol=1e-12)
    np.testing.assert_allclose(ds.x_test.numpy(), (raw_test - mean) / std, atol=1e-12)
    varying = raw_train.std(0) > 0
    np.testing.assert_allclose(ds.x_train.numpy()[:, varying].std(0), 1.0)
    assert not np.allclose(ds.x_test.numpy()[:, varying].mean(0), 0.0, atol=1e-3)  # test stats not used


def test_value_targets_standardised_with_the_training_mean_and_std() -> None:
    _, target = table("diabetes")
    cfg = TaskConfig(kind="dataset", name="diabetes", standardize="inputs+targets")
    ds = make_dataset(cfg, torch.float64)
    assert ds.split is not None
    y_train, y_test = target[ds.split["train_rows"]], target[ds.split["test_rows"]]
    np.testing.assert_allclose(ds.y_test.numpy()[:, 0], (y_test - y_train.mean()) / y_train.std(), atol=1e-12)
    assert ds.split["target_mean"] == pytest.approx([y_train.mean()])


def test_csv_class_columns_of_names_and_of_whole_numbers(tmp_path: Path) -> None:
    rows = [[i * 0.1, ["cat", "dog", "bird"][i % 3], [2, 10, 1][i % 3]] for i in range(30)]
    path = write_csv(tmp_path / "pets.csv", ["x", "pet", "code"], rows)
    cfg = TaskConfig(kind="data", path=path, inputs=("x",), targets=("pet",), target_kind="class")
    ds = make_dataset(cfg)
    assert ds.target_names == ("bird", "cat", "dog") and ds.target_kind == "class"
    assert ds.y_train.sum(0).tolist() == [8.0, 8.0, 8.0] and ds.y_test.sum(0).tolist() == [2.0, 2.0, 2.0]
    coded = make_dataset(TaskConfig(kind="data", path=path, inputs=("x",), targets=("code",),
                                    target_kind="class", standardize="none"), torch.float64)
    assert coded.target_names == ("1", "2", "10")  # sorted as numbers
    x = coded.x_train[:, 0]
    codes = torch.round(x * 10).long() % 3  # row i has label [2, 10, 1][i % 3]
    assert torch.equal(coded.y_train.argmax(1), torch.tensor([1, 2, 0])[codes])


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        (["a"] * 6, r"column 'y' of .*one.csv.* holds one class \(only a\)"),
        (["0.5", "1", "2", "0.5", "1", "2"], r"column 'y' .* is not categorical: row 0 holds 0.5"),
        (["a", "a", "b", "b", "c", "a"], r"class 'c' has 1 row\(s\): a stratified split needs at least 2"),
    ],
)
def test_bad_class_columns_are_named(tmp_path: Path, labels: list[str], fragment: str) -> None:
    path = write_csv(tmp_path / "one.csv", ["x", "y"], [[i, v] for i, v in enumerate(labels)])
    with pytest.raises(ValueError, match=fragment):
        make_dataset(TaskConfig(kind="data", path=path, targets=("y",), target_kind="class"))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "dataset", "name": "mnist"}, r"unknown dataset 'mnist'.*digits"),
        ({"kind": "dataset", "name": "diabetes", "target_kind": "class"}, "has value targets"),
        ({"kind": "dataset", "name": "iris", "noise": 0.1}, "noise = 0.1 is for value targets"),
        ({"kind": "dataset", "name": "iris", "standardize": "inputs+targets"}, "class targets are one-hot"),
        ({"kind": "dataset", "name": "iris", "standardize": "all"}, "standardize must be one of"),
        ({"kind": "function", "target_kind": "class"}, "is for data and dataset tasks"),
        ({"kind": "data", "path": "d.csv", "targets": ("a", "b"), "target_kind": "class"}, "exactly one"),
        ({"kind": "data", "path": "d.csv", "targets": ("a",), "target_kind": "label"}, "target_kind must be"),
    ],
)
def test_bad_table_task_configs(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        TaskConfig(**kwargs)


def test_npz_class_labels_of_integers_and_of_strings(tmp_path: Path) -> None:
    labels = {"y": np.array([3, 7, 7] * 4), "name": np.array(["b", "a", "a"] * 4)}
    np.savez(tmp_path / "i.npz", x=np.arange(12.0), **labels)
    for column, classes in (("y", ("3", "7")), ("name", ("a", "b"))):
        ds = make_dataset(TaskConfig(kind="data", path=str(tmp_path / "i.npz"), inputs=("x",),
                                     targets=(column,), target_kind="class"))
        assert ds.target_names == classes and ds.split is not None
        for split in ("train", "test"):
            decoded = np.array(classes)[getattr(ds, f"y_{split}").argmax(1).numpy()]
            np.testing.assert_array_equal(decoded, labels[column][ds.split[f"{split}_rows"]].astype(str))
