"""The SQLite results store: one row per run, one row per evaluation of its curve.

Only the driver process writes it (WAL mode lets reports read while a sweep is recording).
A row is rebuilt from the run folder's config.json, final.json and metrics.jsonl, so the
folder stays the source of truth and re-recording a run replaces its rows instead of adding.
Reports group runs by task_key, which two different tasks never share (see task_key).
A database of an older schema is migrated when it is opened (see MIGRATIONS); nullable columns
added within a schema version are added to it then too, and an older kanlab of that version
still reads and writes it, leaving them empty.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

SCHEMA_VERSION = 2
DEFAULT_DB = Path("runs/kanlab.db")

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
    # added later within version 2 (nullable, so _add_columns can add them to an older database)
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
_RUN_NAMES = [name for name, _ in RUN_COLUMNS]
_CURVE_NAMES = [name for name, _ in CURVE_COLUMNS]

_SCHEMA = f"""
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


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"cannot record run: {path} is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"cannot record run: {path} is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"cannot record run: {path} does not hold a JSON object")
    return data


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    # A run that failed before training started has no metrics file: an empty curve, not an error.
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"cannot record run: {path} line {number} is not valid JSON ({err})") from err
    return records


def _add_columns(db: sqlite3.Connection) -> None:
    """Add the columns a database created by an earlier kanlab lacks (nullable ones only)."""
    for table, columns in (("runs", RUN_COLUMNS), ("curves", CURVE_COLUMNS)):
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


class ResultsStore:
    """SQLite database of runs and their curves; opened lazily on first use, closed by close().

    Args:
        path: database file (parent folders are created when it is first opened).
    """

    def __init__(self, path: Path | str = DEFAULT_DB) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> ResultsStore:
        self._connection()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            if self._version(db) is not None and self._version(db) != SCHEMA_VERSION:
                self._migrate(db)
            with db:
                db.executescript(_SCHEMA)
                found = db.execute("SELECT version FROM schema_version").fetchall()
                if not found:
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                _add_columns(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    @staticmethod
    def _version(db: sqlite3.Connection) -> int | None:
        """The schema version of an existing database (None: a new one)."""
        table = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        if table.fetchone() is None:
            return None
        found = db.execute("SELECT version FROM schema_version").fetchone()
        return None if found is None else int(found[0])

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring an older database to SCHEMA_VERSION in one transaction (its rows are kept)."""
        db.execute("BEGIN IMMEDIATE")  # the write lock first: another process may be migrating it too
        try:
            version = self._version(db)
            assert version is not None
            if version > SCHEMA_VERSION:
                raise ValueError(f"{self.path} was written by a newer kanlab (database schema version "
                                 f"{version}; this kanlab reads version {SCHEMA_VERSION} and older): upgrade "
                                 "kanlab (pip install -U kanlab), or give another --db")
            if any(v not in MIGRATIONS for v in range(version, SCHEMA_VERSION)):
                raise ValueError(f"{self.path} has database schema version {version}, which this kanlab "
                                 f"cannot migrate to version {SCHEMA_VERSION}: record the runs into a new "
                                 "--db")
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](db)
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def record_run(self, run_dir: Path) -> str:
        """Insert or replace one run folder's row and curve in a single transaction.

        Args:
            run_dir: a finished run folder holding config.json, final.json and metrics.jsonl.
        Returns:
            The run_id recorded.
        """
        run_dir = Path(run_dir).resolve()
        config = _read_json(run_dir / "config.json")
        final = _read_json(run_dir / "final.json")
        metrics = _read_metrics(run_dir / "metrics.jsonl")
        try:
            task = config["task"]
            row = {
                "run_id": config["run_id"], "experiment": config["experiment"], "label": config["label"],
                "family": config["family"], "task": task["name"], "task_kind": task["kind"],
                "seed": int(config["seed"]), "status": final["status"], "task_key": task_key(config),
                "data_hash": config.get("data_hash"), "code_version": config.get("code_version"),
            }
        except (KeyError, TypeError) as err:
            raise ValueError(f"cannot record run: {run_dir} lacks config/final field {err}") from err
        for key in ("param_count", "message", "train_loss", "test_loss", "test_rmse", "psnr",
                    "wall_time", "time_per_step", "steps", "flops", "flops_local", "test_accuracy",
                    "test_macro_f1", "val_loss", "val_rmse", "val_accuracy", "val_macro_f1"):
            row[key] = final.get(key)
        row.update(
            run_dir=str(run_dir), config_json=json.dumps(config, sort_keys=True),
            final_json=json.dumps(final, sort_keys=True), versions_json=json.dumps(self.versions()),
            created=datetime.now(timezone.utc).isoformat(timespec="microseconds"),  # orders reruns
        )
        curve = [tuple([row["run_id"]] + [rec.get(name) for name in _CURVE_NAMES[1:]]) for rec in metrics]
        db = self._connection()
        with db:  # one transaction: a reader never sees a run without its curve
            db.execute(f"INSERT OR REPLACE INTO runs ({', '.join(_RUN_NAMES)}) "
                       f"VALUES ({', '.join('?' * len(_RUN_NAMES))})", [row[n] for n in _RUN_NAMES])
            db.execute("DELETE FROM curves WHERE run_id = ?", (row["run_id"],))
            db.executemany(f"INSERT OR REPLACE INTO curves ({', '.join(_CURVE_NAMES)}) "
                           f"VALUES ({', '.join('?' * len(_CURVE_NAMES))})", curve)
        return str(row["run_id"])

    def has_run(self, run_id: str) -> bool:
        """Whether a run is recorded.

        Args:
            run_id: the run's id.
        Returns:
            True when the runs table holds it.
        """
        found = self._connection().execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return found is not None

    def runs(self, experiment: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Recorded runs, optionally filtered, ordered by experiment, task, label and seed.

        Args:
            experiment: only this experiment (None: all).
            status: only this status, e.g. "finished" (None: all).
        Returns:
            One dict per run, keyed by the runs table's columns.
        """
        where, args = [], []
        for column, value in (("experiment", experiment), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY experiment, task, label, seed, run_id"
        return [dict(r) for r in self._connection().execute(sql, args)]

    def curves(self, run_id: str) -> list[dict[str, Any]]:
        """One run's evaluations ordered by step.

        Args:
            run_id: the run's id.
        Returns:
            One dict per evaluation, keyed by the curves table's columns.
        """
        rows = self._connection().execute("SELECT * FROM curves WHERE run_id = ? ORDER BY step", (run_id,))
        return [dict(r) for r in rows]

    def experiments(self) -> list[str]:
        """Names of the recorded experiments, sorted."""
        rows = self._connection().execute("SELECT DISTINCT experiment FROM runs ORDER BY experiment")
        return [r[0] for r in rows]

    @staticmethod
    def versions() -> dict[str, str]:
        """Versions of python, torch, numpy and kanlab in this process (without importing torch).

        Returns:
            A dict name -> version string ("unknown" when a package is not installed).
        """
        out = {"python": platform.python_version()}
        for name in ("torch", "numpy", "kanlab"):
            try:
                out[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                out[name] = "unknown"
        return out
