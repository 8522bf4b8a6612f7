"""The CLI end to end on the smoke preset: run folders, database, report, resume, bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from kanlab.cli import main
from kanlab.runs import load_run

SMALL = ["--set", "train.steps=20", "--set", "train.eval_every=10"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    assert main(["compare", "smoke", "--root", str(root), *SMALL]) == 0
    return root


def rows(root: Path) -> list[dict]:  # type: ignore[type-arg]
    con = sqlite3.connect(root / "kanlab.db")
    con.row_factory = sqlite3.Row
    out = [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY run_id")]
    con.close()
    return out


def test_compare_smoke_writes_runs_database_and_report(smoke: Path, capsys: pytest.CaptureFixture) -> None:
    runs = rows(smoke)
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}
    assert {r["family"] for r in runs} == {"kan", "mlp"}
    for r in runs:
        folder = Path(r["run_dir"])
        final = json.loads((folder / "final.json").read_text())
        assert r["test_loss"] == pytest.approx(final["test_loss"]) and final["steps"] == 20
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == [0, 10, 20]
        assert (folder / "plots").is_dir() and any((folder / "plots").glob("*.png"))
        # The checkpoint reloads (weights_only) into a model that reproduces the saved predictions.
        exp, model = load_run(folder)
        pred = np.load(folder / "predictions.npz")
        with torch.no_grad():
            from kanlab.tasks import make_dataset

            data = make_dataset(exp.task)
            np.testing.assert_allclose(model(data.x_test).numpy(), pred["y_pred"], rtol=1e-6, atol=1e-7)
    report = smoke / "smoke" / "report.html"
    assert report.is_file() and "zigzag" in report.read_text()


def test_rerun_resumes_without_redoing_finished_runs(smoke: Path, capsys: pytest.CaptureFixture) -> None:
    stamps = {r["run_id"]: Path(r["run_dir"], "final.json").stat().st_mtime_ns for r in rows(smoke)}
    assert main(["run", "smoke", "--root", str(smoke), *SMALL]) == 0
    after = {r["run_id"]: Path(r["run_dir"], "final.json").stat().st_mtime_ns for r in rows(smoke)}
    assert after == stamps and len(rows(smoke)) == 4


def test_eval_reloads_the_checkpoint(smoke: Path, capsys: pytest.CaptureFixture) -> None:
    run = rows(smoke)[0]
    capsys.readouterr()
    assert main(["eval", run["run_dir"]]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_loss"] == pytest.approx(run["test_loss"], rel=1e-5)


def test_same_config_and_seed_give_identical_curves(tmp_path: Path) -> None:
    losses = []
    for name in ("a", "b"):
        root = tmp_path / name
        assert main(["run", "smoke", "--no-plots", "--root", str(root), *SMALL]) == 0
        losses.append([(r["run_id"], r["test_loss"], r["train_loss"]) for r in rows(root)])
    assert losses[0] == losses[1]


def test_a_diverging_run_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    code = main(["compare", "smoke", "--root", str(tmp_path), *SMALL, "--set", "models.1.train={lr=1e8}",
                 "--set", "train.optimizer=sgd"])
    assert code == 0
    statuses = {(r["family"], r["status"]) for r in rows(tmp_path)}
    assert ("mlp", "diverged") in statuses and ("kan", "finished") in statuses
    assert "diverged" in (tmp_path / "smoke" / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-preset"], "unknown preset 'no-such-preset'; presets: "),
        (["run", "smoke", "--set", "train.bogus=1"], "unknown key(s) bogus in train"),
        (["run", "smoke", "--set", "tasks.1.name=/no/such/image.png"], "/no/such/image.png"),
        (["eval", "/no/such/run"], "/no/such/run"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    assert main([*args, *(["--root", str(tmp_path)] if args[0] == "run" else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kanlab: error: ") and message in err
    assert not list(tmp_path.glob("*/*"))  # nothing written


def test_kan_paper_toy_reports_rmse_at_each_grid_size(tmp_path: Path) -> None:
    args = ["compare", "kan-paper-toy", "--root", str(tmp_path), "--set", "train.steps=3",
            "--set", "train.lbfgs_max_iter=5", "--set", "train.grid_stages=[3, 6, 12]",
            "--set", "tasks.0.n_train=200", "--set", "tasks.0.n_test=200", "--set", "seeds=[0]",
            "--set", "train.grid_update_every=0", "--set", "models.1.train.grid_stages=[3, 6, 12]"]
    assert main(args) == 0
    runs = rows(tmp_path)
    assert sorted(r["label"] for r in runs) == ["KAN [2, 1, 1]", "KAN [2, 5, 1]"]
    html = (tmp_path / "kan-paper-toy" / "report.html").read_text().replace('<td class="num">', "<td>")
    assert "Grid extension: RMSE against grid size" in html
    from kanlab.report.tables import fmt_sci

    for run in runs:
        stages = json.loads(run["final_json"])["stages"]
        assert [s["grid_size"] for s in stages] == [3, 6, 12]
        # Refining preserves the function (without grid updates, which refit it), so each stage
        # starts where the last ended and LBFGS in float64 only improves from there.
        train_rmse = [s["train_rmse"] for s in stages]
        assert all(b <= a * (1 + 1e-9) for a, b in zip(train_rmse, train_rmse[1:], strict=False))
        for s in stages:  # one seed: the medians in the grid table are the run's own numbers
            assert f"<td>{fmt_sci(s['test_rmse'])}</td>" in html


def test_ctrl_c_mid_study_keeps_finished_runs_and_a_rerun_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import kanlab.runs

    real, calls = kanlab.runs.train, []

    def interrupted_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(kanlab.runs, "train", interrupted_second)
    assert main(["run", "smoke", "--root", str(tmp_path), *SMALL]) == 130
    assert "interrupted; finished runs are saved" in capsys.readouterr().err
    first = rows(tmp_path)
    assert len(first) == 1 and first[0]["status"] == "finished"
    stamp = (Path(first[0]["run_dir"]) / "final.json").stat().st_mtime_ns
    monkeypatch.setattr(kanlab.runs, "train", real)
    assert main(["run", "smoke", "--root", str(tmp_path), *SMALL]) == 0
    again = rows(tmp_path)
    assert len(again) == 4 and {r["status"] for r in again} == {"finished"}
    assert (Path(first[0]["run_dir"]) / "final.json").stat().st_mtime_ns == stamp  # not redone
    assert not list(Path(first[0]["run_dir"]).parent.glob(".tmp-*"))
