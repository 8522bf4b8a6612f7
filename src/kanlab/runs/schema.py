"""The results database's schema: its tables and columns, the schema version, and the migrations
that bring a database written by an older kanlab up to it (rows kept)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2

RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT PRIMARY KEY"),
    ("experiment", "TEXT NOT NULL"),
    ("label", "TEXT NOT NULL"),
    ("family", "TEXT NOT NULL"),
    ("task", "TEXT NOT NULL"),
    ("task_kind", "TEXT NOT NULL"),
    ("seed", "INTEGER NOT NULL"),
    ("param_count", "INTEGER"),
    ("status", "TEXT NOT NULL"),
    ("message", "TEXT"),
    ("train_loss", "REAL"),
    ("test_loss", "REAL"),
    ("test_rmse", "REAL"),
    ("psnr", "REAL"),
    ("wall_time", "REAL"),
    ("time_per_step", "REAL"),
    ("steps", "INTEGER"),
    ("run_dir", "TEXT NOT NULL"),
    ("config_json", "TEXT NOT NULL"),
    ("final_json", "TEXT NOT NULL"),
    ("versions_json", "TEXT NOT NULL"),
    ("created", "TEXT NOT NULL"),
    ("task_key", "TEXT"),   # version 2: see task_key
    ("data_hash", "TEXT"),  # version 2: SHA-256 of the task's files (NULL: none, or not recorded)
    # added later within version 2 (nullable, so add_columns can add them to an older database)
    ("flops", "INTEGER"),  # forward multiply-adds per sample of the spec (kanlab.models.count_flops)
    ("flops_local", "INTEGER"),  # the same with B-spline KAN layers counted by their local support
    ("test_accuracy", "REAL"),  # class targets
    ("test_macro_f1", "REAL"),
    ("val_loss", "REAL"),  # runs with a validation set (a tune's trials)
    ("val_rmse", "REAL"),
    ("val_accuracy", "REAL"),
    ("val_macro_f1", "REAL"),
    ("code_version", "TEXT"),  # SHA-256 of the kanlab source that computed the run (NULL: not recorded)
)
CURVE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE"),
    ("step", "INTEGER NOT NULL"),
    ("time", "REAL"),
    ("train_loss", "REAL"),
    ("test_loss", "REAL"),
    ("test_rmse", "REAL"),
    ("psnr", "REAL"),
    ("lr", "REAL"),
    ("grid_size", "INTEGER"),
    ("test_accuracy", "REAL"),
    ("val_loss", "REAL"),
    ("val_accuracy", "REAL"),
)
RUN_NAMES = [name for name, _ in RUN_COLUMNS]
CURVE_NAMES = [name for name, _ in CURVE_COLUMNS]

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs ({", ".join(f"{n} {t}" for n, t in RUN_COLUMNS)});
CREATE TABLE IF NOT EXISTS curves ({", ".join(f"{n} {t}" for n, t in CURVE_COLUMNS)},
                                   PRIMARY KEY (run_id, step));
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment, task, label, seed);
"""


def task_key(config: Mapping[str, Any]) -> str:
    """The group a run belongs to in reports: its task's name and a hash of the whole task and its
    data, so that two tasks (two CSV files, one file before and after an edit, two noise levels)
    never share one, as two data tasks shared the name "zigzag" before.

    Args:
        config: a run's config.json.
    """
    task = config["task"]
    blob = json.dumps({"task": task, "data_hash": config.get("data_hash")}, sort_keys=True)
    name = str(task.get("name", ""))
    short = name if task.get("kind") == "function" else Path(name).stem
    return f"{short}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def _to_version_2(db: sqlite3.Connection) -> None:
    # task_key and data_hash, filled from each row's config
    db.execute("ALTER TABLE runs ADD COLUMN task_key TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN data_hash TEXT")
    for run_id, config_json in db.execute("SELECT run_id, config_json FROM runs").fetchall():
        config = json.loads(config_json)
        db.execute("UPDATE runs SET task_key = ?, data_hash = ? WHERE run_id = ?",
                   (task_key(config), config.get("data_hash"), run_id))


# Version v -> v + 1, applied in order when an older database is opened (in one transaction).
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _to_version_2}


def add_columns(db: sqlite3.Connection) -> None:
    """Add the columns a database created by an earlier kanlab lacks (nullable ones only)."""
    for table, columns in (("runs", RUN_COLUMNS), ("curves", CURVE_COLUMNS)):
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def version_of(db: sqlite3.Connection) -> int | None:
    """The schema version of an existing database (None: a new one)."""
    table = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
    if table.fetchone() is None:
        return None
    found = db.execute("SELECT version FROM schema_version").fetchone()
    return None if found is None else int(found[0])


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring an older database to SCHEMA_VERSION in one transaction (its rows are kept)."""
    db.execute("BEGIN IMMEDIATE")  # the write lock first: another process may be migrating it too
    try:
        version = version_of(db)
        assert version is not None
        if version > SCHEMA_VERSION:
            raise ValueError(f"{path} was written by a newer kanlab (database schema version "
                             f"{version}; this kanlab reads version {SCHEMA_VERSION} and older): upgrade "
                             "kanlab (pip install -U kanlab), or give another --db")
        if any(v not in MIGRATIONS for v in range(version, SCHEMA_VERSION)):
            raise ValueError(f"{path} has database schema version {version}, which this kanlab "
                             f"cannot migrate to version {SCHEMA_VERSION}: record the runs into a new "
                             "--db")
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](db)
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
