"""Classification: cross-entropy training on logits, accuracy and macro-F1 against scikit-learn."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, log_loss

from kanlab.models.stack import MLP
from kanlab.runs.experiment import evaluate_run, execute
from kanlab.runs.store import CURVE_COLUMNS, RUN_COLUMNS, ResultsStore
from kanlab.study.config import ExperimentConfig
from kanlab.tasks import TaskConfig, make_dataset
from kanlab.training.config import TrainConfig
from kanlab.training.evaluation import evaluate, macro_f1
from kanlab.training.loop import train


@dataclass
class Classes:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    target_kind: str = "class"


def blobs(n: int, seed: int = 0) -> Classes:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3                                                       # (n,)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) + 2.0 * F.one_hot(labels, 3)[:, :2]
    y = F.one_hot(labels, 3).double()
    return Classes(x[: n // 2], y[: n // 2], x[n // 2 :], y[n // 2 :])


def test_evaluate_gives_scikit_learns_log_loss_accuracy_and_macro_f1() -> None:
    torch.manual_seed(0)
    data = blobs(60)
    model = torch.nn.Linear(2, 3).double()
    out = evaluate(model, data)
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        with torch.no_grad():
            logits = model(x)
        true, pred = y.argmax(1).numpy(), logits.argmax(1).numpy()
        probs = torch.softmax(logits, 1).numpy()
        assert out[f"{split}_loss"] == pytest.approx(log_loss(true, probs, labels=[0, 1, 2]), rel=1e-12)
        assert out[f"{split}_accuracy"] == pytest.approx(accuracy_score(true, pred))
    assert out["test_macro_f1"] == pytest.approx(f1_score(data.y_test.argmax(1), pred, average="macro"))
    assert "test_rmse" not in out


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_scikit_learn_with_missing_and_never_predicted_classes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 4, 40)   # class 4 never occurs; some of 0..3 may never be predicted
    pred = rng.integers(0, 3, 40)
    got = macro_f1(torch.from_numpy(pred), torch.from_numpy(true), 5)
    assert got == pytest.approx(f1_score(true, pred, average="macro", zero_division=0.0))


def test_training_minimises_the_cross_entropy_of_the_logits() -> None:
    # One SGD step moves each parameter by -lr * d(cross-entropy)/d(parameter), computed here by hand.
    torch.manual_seed(0)
    data = blobs(30)
    model = torch.nn.Linear(2, 3).double()
    before = [p.detach().clone() for p in model.parameters()]
    expected_loss = F.cross_entropy(model(data.x_train), data.y_train)
    grads = torch.autograd.grad(expected_loss, list(model.parameters()))
    cfg = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.0, steps=1, dtype="float64")
    history = train(model, data, cfg)
    for p, p0, g in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * g)
    assert history.records[0]["train_loss"] == pytest.approx(expected_loss.item())
    assert {"train_accuracy", "test_accuracy", "test_macro_f1"} <= set(history.records[-1])


def test_a_classification_run_records_metrics_classes_and_its_split(tmp_path: Path) -> None:
    exp = ExperimentConfig(
        experiment="iris", label="MLP", family="mlp", spec="mlp:4-8-3:act=tanh",
        task=TaskConfig(kind="dataset", name="iris"), train=TrainConfig(steps=30, eval_every=10), seed=0)
    folder = execute(exp, tmp_path)
    final = json.loads((folder / "final.json").read_text())
    assert final["status"] == "finished", final["message"]
    assert final["data"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert final["data"]["train_counts"] == [40, 40, 40] and final["data"]["test_counts"] == [10, 10, 10]
    assert final["flops"] == final["flops_local"] == 4 * 8 + 8 * 3
    with np.load(folder / "predictions.npz") as z:
        logits, onehot = z["y_pred"], z["y_test"]
        assert str(z["target_kind"]) == "class" and z["target_names"].tolist() == final["data"]["classes"]
    assert final["test_accuracy"] == pytest.approx(accuracy_score(onehot.argmax(1), logits.argmax(1)))
    with np.load(folder / "split.npz") as z:
        assert len(z["test_rows"]) == 30 and len(np.intersect1d(z["train_rows"], z["test_rows"])) == 0
        assert z["input_mean"].shape == (4,)
    again = evaluate_run(folder)  # `kanlab eval`: the checkpoint reloaded gives the same metrics
    assert again["test_accuracy"] == final["test_accuracy"] and again["test_loss"] == pytest.approx(
        final["test_loss"], rel=1e-5)
    with ResultsStore(tmp_path / "k.db") as store:
        store.record_run(folder)
        row = store.runs()[0]
        curve = store.curves(row["run_id"])
    assert row["test_accuracy"] == final["test_accuracy"] and row["test_macro_f1"] == final["test_macro_f1"]
    assert row["flops"] == 56 and [c["step"] for c in curve] == [0, 10, 20, 30]
    assert curve[-1]["test_accuracy"] == final["test_accuracy"]


def test_an_older_database_gains_the_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    new = ("flops", "flops_local", "test_accuracy", "test_macro_f1", "val_loss", "val_rmse", "val_accuracy",
           "val_macro_f1")
    old_runs = ", ".join(f"{n} {t}" for n, t in RUN_COLUMNS if n not in new)
    old_curves = ", ".join(f"{n} {t}" for n, t in CURVE_COLUMNS if n not in new)
    with sqlite3.connect(db) as raw:  # the tables as kanlab created them before these columns
        raw.execute(f"CREATE TABLE runs ({old_runs})")
        raw.execute(f"CREATE TABLE curves ({old_curves}, PRIMARY KEY (run_id, step))")
        raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        raw.execute("INSERT INTO schema_version VALUES (2)")  # these columns came within version 2
        raw.execute("INSERT INTO runs (run_id, experiment, label, family, task, task_kind, seed, status, "
                    "test_loss, run_dir, config_json, final_json, versions_json, created) "
                    "VALUES ('a', 'e', 'l', 'mlp', 't', 'function', 0, 'finished', 0.5, 'd', '{}', '{}', "
                    "'{}', 'x')")
    with ResultsStore(db) as store:
        row = store.runs()
        assert store.curves("a") == []
    assert row[0]["test_loss"] == 0.5 and row[0]["test_accuracy"] is None and row[0]["flops"] is None
    with sqlite3.connect(db) as raw:
        curves = {r[1] for r in raw.execute("PRAGMA table_info(curves)")}
        assert {"test_accuracy", "val_loss", "val_accuracy"} <= curves
        assert "val_macro_f1" in {r[1] for r in raw.execute("PRAGMA table_info(runs)")}


@pytest.mark.slow  # 200 full-batch steps on 1438 rows
def test_an_mlp_reaches_95_percent_accuracy_on_digits() -> None:
    # Measured: 96.7 % test accuracy (359 rows, stratified seed-0 split) after 200 steps, ~2-5 s here.
    data = make_dataset(TaskConfig(kind="dataset", name="digits"))
    torch.manual_seed(0)
    model = MLP([64, 64, 10])
    history = train(model, data, TrainConfig(lr=0.01, steps=200, eval_every=100))
    final = history.records[-1]
    assert history.status == "finished" and final["test_accuracy"] >= 0.95, final
    assert final["test_macro_f1"] >= 0.95 and final["test_loss"] < 0.2
