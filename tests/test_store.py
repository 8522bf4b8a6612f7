"""The SQLite results store: rows equal the run folder's JSON, upserts, filters, clear errors."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path

import pytest

from kanlab.runs.store import CURVE_COLUMNS, RUN_COLUMNS, SCHEMA_VERSION, ResultsStore, task_key
from report_helpers import write_run


def test_recorded_row_equals_the_json(tmp_path: Path) -> None:
    run = write_run(tmp_path / "runs", "exp", label="KAN (PyKAN tricks)", family="kan", seed=3,
                    test_loss=2.5e-4, param_count=1234, wall_time=7.5, time_per_step=0.031, n_evals=4)
    with ResultsStore(tmp_path / "db" / "k.db") as store:
        run_id = store.record_run(run)
        [row] = store.runs()
        curve = store.curves(run_id)
    config = json.loads((run / "config.json").read_text())
    final = json.loads((run / "final.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert run_id == config["run_id"] == row["run_id"]
    for key in ("experiment", "label", "family", "seed"):
        assert row[key] == config[key]
    assert (row["task"], row["task_kind"]) == ("zigzag", "function")
    for key in ("status", "message", "param_count", "train_loss", "test_loss", "test_rmse", "psnr",
                "wall_time", "time_per_step", "steps"):
        assert row[key] == final[key], key
    assert json.loads(row["config_json"]) == config
    assert json.loads(row["final_json"]) == final
    assert row["run_dir"] == str(run.resolve())
    assert set(json.loads(row["versions_json"])) == {"python", "torch", "numpy", "kanlab"}
    assert len(curve) == len(metrics) == 4
    for got, want in zip(curve, metrics, strict=True):
        assert got == {"run_id": run_id, "test_accuracy": None, "val_loss": None, "val_accuracy": None,
                       **want}  # a value task without a validation set: no accuracy, no validation


def test_recording_twice_keeps_one_row_and_replaces_the_curve(tmp_path: Path) -> None:
    run = write_run(tmp_path, "exp", label="MLP", family="mlp", n_evals=6)
    db = tmp_path / "k.db"
    with ResultsStore(db) as store:
        store.record_run(run)
        store.record_run(run)
        lines = (run / "metrics.jsonl").read_text().splitlines()
        assert len(store.runs()) == 1
        assert len(store.curves(store.runs()[0]["run_id"])) == len(lines) == 6
        (run / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n")  # a rerun with fewer evaluations
        store.record_run(run)
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    assert raw.execute("SELECT COUNT(*) FROM curves").fetchone()[0] == 2
    raw.close()


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    with ResultsStore(db) as store:
        store.experiments()
        raw = sqlite3.connect(db)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        raw.close()
    raw = sqlite3.connect(db)
    with raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(ValueError, match="schema version"):
        ResultsStore(db).runs()


def test_a_database_of_a_newer_kanlab_is_refused_in_one_line_naming_the_file_and_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It raised a RuntimeError, which `kanlab report` printed as a traceback.
    from kanlab.cli import main

    db = tmp_path / "newer.db"
    ResultsStore(db).close()
    with ResultsStore(db) as store:
        store.record_run(write_run(tmp_path / "runs", "s", label="MLP", family="mlp"))
    raw = sqlite3.connect(db)
    with raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 7,))
    raw.close()
    assert main(["report", "s", "--root", str(tmp_path / "runs"), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err == (f"kanlab: error: {db} was written by a newer kanlab (database schema version "
                   f"{SCHEMA_VERSION + 7}; this kanlab reads version {SCHEMA_VERSION} and older): upgrade "
                   "kanlab (pip install -U kanlab), or give another --db\n")
    raw = sqlite3.connect(db)  # left as it was
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION + 7,)]
    assert raw.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    raw.close()


def test_filters_and_lookups(tmp_path: Path) -> None:
    runs = [
        write_run(tmp_path, "a", label="KAN", family="kan", seed=0),
        write_run(tmp_path, "a", label="KAN", family="kan", seed=1, status="diverged", message="nan loss",
                  test_loss=math.nan),
        write_run(tmp_path, "b", label="MLP", family="mlp", seed=0),
    ]
    with ResultsStore(tmp_path / "k.db") as store:
        ids = [store.record_run(r) for r in runs]
        assert store.experiments() == ["a", "b"]
        assert [r["run_id"] for r in store.runs("a")] == ids[:2]
        assert [r["run_id"] for r in store.runs(status="diverged")] == [ids[1]]
        assert [r["run_id"] for r in store.runs("b", "finished")] == [ids[2]]
        assert store.runs("b", "diverged") == []
        assert store.has_run(ids[0]) and not store.has_run("nope")
        # json writes nan as NaN; SQLite stores it as NULL, which reads back as None
        assert store.runs(status="diverged")[0]["test_loss"] is None


def test_missing_final_json_names_the_path(tmp_path: Path) -> None:
    run = write_run(tmp_path, "exp", label="KAN", family="kan")
    (run / "final.json").unlink()
    with ResultsStore(tmp_path / "k.db") as store, \
            pytest.raises(FileNotFoundError, match=re.escape(str((run / "final.json").resolve()))):
        store.record_run(run)


def test_missing_metrics_is_an_empty_curve(tmp_path: Path) -> None:
    run = write_run(tmp_path, "exp", label="KAN", family="kan", status="failed", message="boom")
    (run / "metrics.jsonl").unlink()
    with ResultsStore(tmp_path / "k.db") as store:
        assert store.curves(store.record_run(run)) == []


def test_close_and_reopen(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "nested" / "dir" / "k.db")
    assert not (tmp_path / "nested").exists()  # no I/O before first use
    store.record_run(write_run(tmp_path, "exp", label="KAN", family="kan"))
    store.close()
    assert len(store.runs()) == 1  # reopens lazily
    store.close()
    assert ResultsStore.versions()["python"].count(".") == 2


def test_a_task_key_is_shared_only_by_identical_tasks_on_identical_data() -> None:
    def config(data_hash: str | None = None, **task: object) -> dict[str, object]:
        return {"task": {"kind": "data", "name": "data", "path": "a/data.csv", "targets": ["y"], **task},
                **({} if data_hash is None else {"data_hash": data_hash})}

    base = task_key(config("0" * 64))
    assert base == task_key(config("0" * 64)) and base.startswith("data-")
    others = [task_key(config("1" * 64)), task_key(config("0" * 64, path="b/data.csv")),
              task_key(config("0" * 64, noise=0.1)), task_key(config()),
              task_key(config("0" * 64, kind="function", name="zigzag"))]
    assert len({base, *others}) == 1 + len(others)


def test_a_version_1_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    # Written by kanlab before task_key and data_hash existed: the same schema less those columns.
    run = write_run(tmp_path / "runs", "old", label="MLP", family="mlp", n_evals=3)
    config = json.loads((run / "config.json").read_text())
    db = tmp_path / "old.db"
    raw = sqlite3.connect(db)
    columns = [(n, t) for n, t in RUN_COLUMNS if n not in ("task_key", "data_hash", "code_version")]
    curves = ", ".join(f"{n} {t}" for n, t in CURVE_COLUMNS)
    with raw:
        raw.executescript(
            "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);"
            f"CREATE TABLE runs ({', '.join(f'{n} {t}' for n, t in columns)});"
            f"CREATE TABLE curves ({curves}, PRIMARY KEY (run_id, step));")
        values = {n: None for n, _ in columns} | {
            "run_id": config["run_id"], "experiment": "old", "label": "MLP", "family": "mlp",
            "task": "zigzag", "task_kind": "function", "seed": 0, "status": "finished", "test_loss": 0.25,
            "run_dir": str(run), "config_json": json.dumps(config), "final_json": "{}", "versions_json": "{}",
            "created": "then"}
        raw.execute(f"INSERT INTO runs VALUES ({', '.join('?' * len(columns))})",
                    [values[n] for n, _ in columns])
        raw.execute("INSERT INTO curves (run_id, step, test_loss) VALUES (?, 0, 0.5)", (config["run_id"],))
    raw.close()
    with ResultsStore(db) as store:
        (row,) = store.runs()
        assert (row["run_id"], row["test_loss"], row["created"]) == (config["run_id"], 0.25, "then")
        assert row["task_key"] == task_key(config) and row["data_hash"] is None
        assert row["code_version"] is None
        point = {**dict.fromkeys(n for n, _ in CURVE_COLUMNS), "run_id": row["run_id"], "step": 0,
                 "test_loss": 0.5}
        assert store.curves(row["run_id"]) == [point]
        store.record_run(write_run(tmp_path / "runs", "new", label="KAN", family="kan"))
        assert len(store.runs()) == 2
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(2,)]
    raw.close()
