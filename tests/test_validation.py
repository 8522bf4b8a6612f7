"""Validation sets: held out of the training data of every task kind, never a test point, never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import datasets as skd
from sklearn.metrics import accuracy_score, f1_score, log_loss

from kanlab.runs.experiment import execute
from kanlab.runs.store import ResultsStore
from kanlab.study.config import ExperimentConfig
from kanlab.tasks import TaskConfig, make_dataset
from kanlab.tasks.functions import get_function
from kanlab.tasks.image import load_image, pixel_coords, resize_image
from kanlab.training.config import TrainConfig
from kanlab.training.evaluation import evaluate


def rows_of(points: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(p) for p in points.tolist()}


def test_a_function_task_draws_validation_points_of_its_own() -> None:
    plain = make_dataset(TaskConfig(name="exp_sin", n_train=40, n_test=30), torch.float64)
    ds = make_dataset(TaskConfig(name="exp_sin", n_train=40, n_test=30, val_fraction=0.25), torch.float64)
    assert plain.x_val is None and ds.x_val is not None and ds.y_val is not None and len(ds.x_val) == 10
    assert torch.equal(ds.x_train, plain.x_train) and torch.equal(ds.x_test, plain.x_test)  # unchanged
    val = rows_of(ds.x_val)
    assert len(val) == 10 and not val & rows_of(ds.x_train) and not val & rows_of(ds.x_test)
    np.testing.assert_allclose(ds.y_val.numpy()[:, 0], get_function("exp_sin")(ds.x_val.numpy()), rtol=1e-12)
    other = make_dataset(TaskConfig(name="exp_sin", n_train=40, n_test=30, val_fraction=0.25, seed=1))
    assert other.x_val is not None and not torch.equal(other.x_val, ds.x_val.float())  # seeded
    grid = make_dataset(TaskConfig(name="zigzag", n_train=9, sampling="grid", val_fraction=0.5))
    assert grid.x_val is not None and len(grid.x_val) == 4 and not rows_of(grid.x_val) & rows_of(grid.x_train)


def test_noise_reaches_training_and_validation_targets_never_the_test_targets() -> None:
    cfg = TaskConfig(name="sin", n_train=50, n_test=50, val_fraction=0.4, noise=0.1)
    ds = make_dataset(cfg, torch.float64)
    assert ds.x_val is not None and ds.y_val is not None
    f = get_function("sin")
    for split, noisy in (("train", True), ("val", True), ("test", False)):
        x, y = getattr(ds, f"x_{split}").numpy(), getattr(ds, f"y_{split}").numpy()[:, 0]
        assert (np.abs(y - f(x)).max() > 1e-3) == noisy, split


def test_an_image_holds_a_seeded_share_of_its_pixels_out_of_training() -> None:
    ds = make_dataset(TaskConfig(kind="image", name="camera", image_size=12, val_fraction=0.2), torch.float64)
    assert ds.split is not None and ds.x_val is not None and ds.y_val is not None
    train, val = ds.split["train_rows"], ds.split["val_rows"]
    assert len(val) == round(0.2 * 144) and not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(144))
    coords, lum = pixel_coords(12, 12), resize_image(load_image("camera"), 12).reshape(-1)
    np.testing.assert_array_equal(ds.x_train.numpy(), coords[train])
    np.testing.assert_array_equal(ds.x_val.numpy(), coords[val])
    np.testing.assert_array_equal(ds.y_val.numpy()[:, 0], lum[val])
    np.testing.assert_array_equal(ds.y_test.numpy()[:, 0], lum)  # the test set stays the whole picture
    assert not rows_of(ds.x_val) & rows_of(ds.x_train)
    other = make_dataset(TaskConfig(kind="image", name="camera", image_size=12, val_fraction=0.2, seed=3))
    assert other.split is not None and not np.array_equal(other.split["val_rows"], val)


def test_a_table_carves_a_stratified_validation_split_out_of_its_training_rows_only() -> None:
    bunch = skd.load_digits()
    plain = make_dataset(TaskConfig(kind="dataset", name="digits"), torch.float64)
    ds = make_dataset(TaskConfig(kind="dataset", name="digits", val_fraction=0.25), torch.float64)
    assert plain.split is not None and ds.split is not None and ds.x_val is not None and ds.y_val is not None
    train, val, test = (ds.split[f"{k}_rows"] for k in ("train", "val", "test"))
    np.testing.assert_array_equal(test, plain.split["test_rows"])  # the test rows do not move
    assert not set(train) & set(val) and not set(val) & set(test) and not set(train) & set(test)
    assert sorted([*train, *val, *test]) == list(range(len(bunch.target)))
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), plain.split["train_rows"])
    before = np.bincount(bunch.target[plain.split["train_rows"]], minlength=10)
    assert np.bincount(bunch.target[val], minlength=10).tolist() == [round(0.25 * n) for n in before]
    # Inputs standardised with the mean and std of the training rows: neither validation nor test rows.
    x = bunch.data
    mean, std = x[train].mean(0), x[train].std(0)
    std = np.where(std > 0, std, 1.0)
    for split, rows in (("train", train), ("val", val), ("test", test)):
        np.testing.assert_allclose(getattr(ds, f"x_{split}").numpy(), (x[rows] - mean) / std, atol=1e-12)
    assert not np.allclose(ds.split["input_mean"], x[plain.split["train_rows"]].mean(0))
    np.testing.assert_array_equal(ds.y_val.argmax(1).numpy(), bunch.target[val])


def test_value_targets_are_standardised_with_the_training_rows_only() -> None:
    _, target = skd.load_diabetes(scaled=False, return_X_y=True)
    cfg = TaskConfig(kind="dataset", name="diabetes", standardize="inputs+targets", val_fraction=0.3)
    ds = make_dataset(cfg, torch.float64)
    assert ds.split is not None and ds.y_val is not None
    train, val = ds.split["train_rows"], ds.split["val_rows"]
    assert len(val) == round(0.3 * (len(train) + len(val))) and not set(train) & set(val)
    mean, std = target[train].mean(), target[train].std()
    np.testing.assert_allclose(ds.y_val.numpy()[:, 0], (target[val] - mean) / std, atol=1e-12)
    assert ds.split["target_mean"] == pytest.approx([mean])


def test_validation_metrics_are_the_tests_computed_on_the_validation_rows() -> None:
    ds = make_dataset(TaskConfig(kind="dataset", name="iris", val_fraction=0.3), torch.float64)
    assert ds.x_val is not None and ds.y_val is not None
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    out = evaluate(model, ds)
    with torch.no_grad():
        logits = model(ds.x_val)
    true, pred = ds.y_val.argmax(1).numpy(), logits.argmax(1).numpy()
    probs = torch.softmax(logits, 1).numpy()
    assert out["val_loss"] == pytest.approx(log_loss(true, probs, labels=[0, 1, 2]))
    assert out["val_accuracy"] == pytest.approx(accuracy_score(true, pred))
    assert out["val_macro_f1"] == pytest.approx(f1_score(true, pred, average="macro"))
    values = make_dataset(TaskConfig(name="zigzag", n_train=20, n_test=20, val_fraction=0.5), torch.float64)
    assert values.x_val is not None and values.y_val is not None
    net = torch.nn.Linear(1, 1).double()
    with torch.no_grad():
        mse = float(((net(values.x_val) - values.y_val) ** 2).mean())
    got = evaluate(net, values)
    assert got["val_loss"] == pytest.approx(mse, rel=1e-12) and got["val_rmse"] == pytest.approx(mse**0.5)
    assert "val_loss" not in evaluate(net, make_dataset(TaskConfig(name="zigzag", n_train=20), torch.float64))


def test_a_run_records_its_validation_metrics_split_and_curve(tmp_path: Path) -> None:
    task = TaskConfig(kind="dataset", name="iris", val_fraction=0.2)
    exp = ExperimentConfig(experiment="v", label="MLP", family="mlp", spec="mlp:4-8-3:act=tanh", task=task,
                           train=TrainConfig(steps=20, eval_every=10), seed=0)
    folder = execute(exp, tmp_path)
    final = json.loads((folder / "final.json").read_text())
    last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["status"] == "finished", final["message"]
    assert {k: final[k] for k in ("val_loss", "val_accuracy", "val_macro_f1")} == {
        k: last[k] for k in ("val_loss", "val_accuracy", "val_macro_f1")}
    assert final["data"]["n_val"] == 24 and final["data"]["val_counts"] == [8, 8, 8]
    with np.load(folder / "split.npz") as z:
        assert len(z["val_rows"]) == 24
        assert not set(z["val_rows"]) & (set(z["train_rows"]) | set(z["test_rows"]))
    with ResultsStore(tmp_path / "k.db") as store:
        store.record_run(folder)
        (row,) = store.runs()
        curve = store.curves(row["run_id"])
    assert row["val_loss"] == final["val_loss"] and row["val_accuracy"] == final["val_accuracy"]
    assert [c["val_loss"] for c in curve][-1] == last["val_loss"] and curve[0]["val_accuracy"] is not None


def test_only_runs_with_a_validation_set_carry_it_in_their_ids() -> None:
    plain = ExperimentConfig(experiment="v", label="MLP", family="mlp", spec="mlp:1-4-1",
                             task=TaskConfig(name="zigzag"), train=TrainConfig(), seed=0)
    assert "val_fraction" not in plain.to_dict()["task"]  # plain runs keep the ids they had
    assert plain.run_id == "zigzag-mlp-s0-" + plain.run_id.rsplit("-", 1)[1]
    held = ExperimentConfig.from_dict({**plain.to_dict(), "task": {"name": "zigzag", "val_fraction": 0.2}})
    assert held.to_dict()["task"]["val_fraction"] == 0.2 and held.run_id != plain.run_id
    assert ExperimentConfig.from_dict(plain.to_dict()).run_id == plain.run_id


@pytest.mark.parametrize("bad", [-0.1, 1.0, True, "0.2"])
def test_a_bad_val_fraction_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match=r"val_fraction must be a number in \[0, 1\) \(0: no validation"):
        TaskConfig(val_fraction=bad)  # type: ignore[arg-type]


def test_a_class_with_one_training_row_cannot_be_split_for_validation(tmp_path: Path) -> None:
    path = tmp_path / "few.csv"
    path.write_text("x,y\n" + "".join(f"{i},{'a' if i < 8 else 'b'}\n" for i in range(10)))
    task = TaskConfig(kind="data", path=str(path), targets=("y",), target_kind="class", val_fraction=0.3,
                      test_fraction=0.4)
    with pytest.raises(ValueError, match=r"class 'b' has 1 row\(s\) among the training rows: a stratified "
                                         r"validation split needs at least 2"):
        make_dataset(task)
