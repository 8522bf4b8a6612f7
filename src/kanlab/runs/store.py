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

import json
import platform
import sqlite3
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

from kanlab.runs.schema import CURVE_COLUMNS as CURVE_COLUMNS
from kanlab.runs.schema import CURVE_NAMES, RUN_NAMES, SCHEMA, add_columns, migrate, version_of
from kanlab.runs.schema import MIGRATIONS as MIGRATIONS
from kanlab.runs.schema import RUN_COLUMNS as RUN_COLUMNS
from kanlab.runs.schema import SCHEMA_VERSION as SCHEMA_VERSION
from kanlab.runs.schema import task_key as task_key

DEFAULT_DB = Path("runs/kanlab.db")

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
            if version_of(db) is not None and version_of(db) != SCHEMA_VERSION:
                migrate(db, self.path)
            with db:
                db.executescript(SCHEMA)
                found = db.execute("SELECT version FROM schema_version").fetchall()
                if not found:
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                add_columns(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

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
        curve = [tuple([row["run_id"]] + [rec.get(name) for name in CURVE_NAMES[1:]]) for rec in metrics]
        db = self._connection()
        with db:  # one transaction: a reader never sees a run without its curve
            db.execute(f"INSERT OR REPLACE INTO runs ({', '.join(RUN_NAMES)}) "
                       f"VALUES ({', '.join('?' * len(RUN_NAMES))})", [row[n] for n in RUN_NAMES])
            db.execute("DELETE FROM curves WHERE run_id = ?", (row["run_id"],))
            db.executemany(f"INSERT OR REPLACE INTO curves ({', '.join(CURVE_NAMES)}) "
                           f"VALUES ({', '.join('?' * len(CURVE_NAMES))})", curve)
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
