"""The report's cost views and classification parts: Pareto fronts, accuracy, class balance, confusion."""

from __future__ import annotations

import itertools
import json
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from kanlab.report import write_report
from kanlab.report.classes import class_balance, confusion, plot_confusion
from kanlab.report.pareto import pareto_front
from kanlab.runs.store import ResultsStore
from report_helpers import write_run


@pytest.mark.parametrize("seed", range(4))
def test_pareto_front_is_the_set_of_undominated_points(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = [(float(c), float(v)) for c, v in rng.integers(1, 6, size=(25, 2))]  # ties on purpose
    dominated = {p for p, q in itertools.product(points, points)
                 if q[0] <= p[0] and q[1] <= p[1] and q != p}
    assert pareto_front(points) == sorted(set(points) - dominated)


def make_class_run(root: Path, label: str, family: str, seed: int, accuracy: float) -> Path:
    """A breast_cancer-like run folder: 3 test rows of class 0, 2 of class 1, logits giving `accuracy`."""
    folder = write_run(root, "cls", label=label, family=family, seed=seed, task="breast_cancer",
                       kind="dataset", test_loss=1.0 - accuracy + 0.05)
    config = json.loads((folder / "config.json").read_text())
    config["task"] = {"kind": "dataset", "name": "breast_cancer", "standardize": "inputs"}
    (folder / "config.json").write_text(json.dumps(config))
    final = json.loads((folder / "final.json").read_text())
    final.update(test_accuracy=accuracy, test_macro_f1=accuracy - 0.1, test_rmse=None, data={
        "target_kind": "class", "n_train": 12, "n_test": 5, "classes": ["benign", "malignant"],
        "train_counts": [9, 3], "test_counts": [3, 2],
        "split": {"seed": 0, "test_fraction": 0.3, "stratified": True, "standardize": "inputs"}})
    (folder / "final.json").write_text(json.dumps(final))
    true = np.array([0, 0, 0, 1, 1])
    pred = np.array([0, 0, 1, 1, 0])  # 3 of 5 right
    np.savez(folder / "predictions.npz", coords_test=np.zeros((5, 2)), y_test=np.eye(2)[true],
             y_pred=np.eye(2)[pred] * 3.0, image_shape=np.zeros(0, dtype=np.int64),
             target_kind=np.array("class"), target_names=np.array(["benign", "malignant"]))
    return folder


def test_the_class_balance_table_and_the_accuracy_to_beat(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "k.db") as store:
        store.record_run(make_class_run(tmp_path, "KAN", "kan", 0, 0.9))
        rows = store.runs()
    text = unescape(re.sub(r"<[^>]+>", " ", class_balance(rows)))
    assert re.search(r"benign\s+9\s+75.0%\s+3\s+60.0%\s+malignant\s+3\s+25.0%\s+2\s+40.0%", text)
    assert "Always answering the most common training class (benign) scores accuracy 60.0%" in text
    assert "largest training class has 3x the rows of the smallest" in text and "stratified by class" in text
    assert class_balance([{**rows[0], "final_json": "{}"}]) == ""  # a value task has none


@pytest.mark.slow  # draws seven figures
def test_a_classification_report_shows_accuracy_class_balance_and_confusion(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "k.db") as store:
        for seed, (kan, mlp) in enumerate(((0.9, 0.8), (0.7, 0.6))):
            store.record_run(make_class_run(tmp_path, "KAN", "kan", seed, kan))
            store.record_run(make_class_run(tmp_path, "MLP", "mlp", seed, mlp))
    source = write_report(tmp_path / "k.db", "cls", tmp_path / "report").read_text()
    text = unescape(re.sub(r"<[^>]+>", " ", source))
    for needle in ("Train cross-entropy", "Test cross-entropy", "Test accuracy", "Test macro-F1",
                   "80.0 ± 14.1 %",  # KAN's accuracy over its two seeds (0.9, 0.7)
                   "the best model is KAN", "accuracy 80.0%", "test cross-entropy",
                   "Always answering the most common training class (benign) scores accuracy 60.0%",
                   "largest training class has 3x the rows of the smallest", "stratified by class"):
        assert needle in text, needle
    assert "Test MSE" not in text
    assert re.search(r"benign\s+9\s+75.0%\s+3\s+60.0%", text)
    assert len(list((tmp_path / "report" / "plots").glob("*confusion.png"))) == 2
    assert len(list((tmp_path / "report" / "plots").glob("*pareto.png"))) == 1


def test_confusion_counts_are_scikit_learns() -> None:
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    np.testing.assert_array_equal(confusion(true, pred, 4), confusion_matrix(true, pred, labels=range(4)))


def test_no_confusion_plot_for_a_value_task(tmp_path: Path) -> None:
    assert plot_confusion(write_run(tmp_path, "v", label="M", family="mlp"), tmp_path / "none") is None
