"""Run experiments on an executor, land and record each result as it arrives, resume on rerun.

Workers only compute (see kanlab.runs.executors): this process alone writes the results tree and the
SQLite database, so any number of workers never race on either. Each folder is unpacked under
`.tmp-<run_id>` and renamed, so a folder with its final name is always whole. After this process
is killed, a rerun deletes `.tmp-*` leftovers, records whole folders the database missed (killed
between rename and record) and runs only what is left: one row per run, nothing redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

try:
    import fcntl
except ImportError:  # Windows: no study locks
    fcntl = None  # type: ignore[assignment]

from kanlab.runs.executors import Executor, Job, Outcome, SerialExecutor, unpack
from kanlab.runs.experiment import Draw
from kanlab.runs.outputs import inside, run_folder
from kanlab.runs.store import ResultsStore
from kanlab.study.config import ExperimentConfig

# Rerunning would give the same result (pruned: a tuning trial its pruner stopped early).
DONE = ("finished", "diverged", "pruned", "no_formula")
Annotations = Mapping[str, Mapping[str, Any]]  # run_id -> keys added to the run's config.json


def pending(experiments: Sequence[ExperimentConfig], store: ResultsStore, root: Path,
            *, retry_failed: bool = False) -> list[ExperimentConfig]:
    """The experiments that still need running: not recorded as done, or their folder is gone."""
    done = {r["run_id"]: r["status"] for r in store.runs()}
    keep = DONE if retry_failed else (*DONE, "failed")
    return [
        e for e in experiments
        if done.get(e.run_id) not in keep or not run_folder(root, e).is_dir()
    ]


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    os.replace(tmp, path)  # atomic: readers see the old file or the new one


def annotate(folder: Path, extra: Mapping[str, Any]) -> bool:
    """Merge keys into a run folder's config.json (atomically); True when the file changed."""
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text())
    if all(config.get(k) == v for k, v in extra.items()):
        return False
    _write_json(path, {**config, **extra})
    return True


def recover(experiments: Sequence[ExperimentConfig], store: ResultsStore, root: Path,
            annotations: Annotations | None = None) -> int:
    """Delete `.tmp-*` leftovers of these runs; record whole folders the store lacks or annotates differently.

    Returns:
        The number of folders recorded.
    """
    recorded = {r["run_id"] for r in store.runs()}
    count = 0
    for exp in experiments:
        folder = run_folder(root, exp)
        shutil.rmtree(folder.with_name(f".tmp-{exp.run_id}"), ignore_errors=True)
        if not (folder / "final.json").is_file():
            continue
        changed = annotate(folder, (annotations or {}).get(exp.run_id, {}))
        if changed or exp.run_id not in recorded:
            store.record_run(folder)
            count += 1
    return count


def land(exp: ExperimentConfig, outcome: Outcome, root: Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a worker's run folder (or a failed one for an error) under `.tmp-<run_id>`, then rename.

    Args:
        exp: the experiment the outcome belongs to.
        outcome: what the executor returned.
        root: the results tree.
        extra: keys added to the folder's config.json.
    Returns:
        The run folder `<root>/<experiment>/<run_id>`.
    """
    final = run_folder(root, exp)
    tmp = final.with_name(f".tmp-{exp.run_id}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    error = outcome.error
    if outcome.packed is not None:
        try:
            unpack(outcome.packed, tmp)
            found = json.loads((tmp / "config.json").read_text()).get("run_id")
        except (ValueError, tarfile.TarError, FileNotFoundError) as err:
            found, error = None, f"the worker sent back an unreadable run folder: {err}"
        if error is None and found != exp.run_id:
            error = (f"the worker named this run {found!r}, not {exp.run_id!r}: do the driver and the "
                     "workers run the same kanlab version?")
        if error is not None:
            shutil.rmtree(tmp)
            tmp.mkdir()
    if outcome.packed is None or error is not None:
        _write_json(tmp / "config.json", {**exp.to_dict(), "run_id": exp.run_id})
        _write_json(tmp / "final.json", {
            "status": "failed", "message": error or "no result came back", "param_count": None,
            "train_loss": None, "test_loss": None, "test_rmse": None, "psnr": None, "wall_time": None,
            "time_per_step": None, "steps": 0, "stages": [],
        })
    if extra:
        annotate(tmp, extra)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


@contextlib.contextmanager
def running(root: Path, studies: Iterable[str]) -> Iterator[None]:
    """Hold each study's lock (`<root>/<study>/.kanlab.lock`) while this process runs it.

    Two drivers landing one study's runs would delete each other's half-landed folders (recover
    removes `.tmp-*`, land replaces a folder): the second is refused at once, having written
    nothing. Different studies run side by side, into one database too. An flock is released by
    the OS when its process ends, however it ends, so a killed driver never leaves a study locked.
    """
    with contextlib.ExitStack() as stack:
        for name in sorted(set(studies)):
            path = inside(root, name) / ".kanlab.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(path.open("a"))
            try:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"study {name!r} is being run into {str(root)!r} by another kanlab process; "
                                 "rerun this command when it has finished (it then resumes), or give this "
                                 "one another --root") from None
        yield


class Progress:
    """One bar over runs: done (finished, diverged or pruned) / failed / remaining, with tqdm's ETA.

    Args:
        total: runs expected (None: not known in advance, as in a tune with a budget in seconds).
        where: the executor's description.
    """

    def __init__(self, total: int | None, where: str) -> None:
        self.counts = {"done": 0, "failed": 0}
        self.total = total
        self.bar = tqdm(total=total, unit="run", desc=f"runs on {where}", dynamic_ncols=True,
                        disable=not sys.stderr.isatty())
        self._postfix()

    def _postfix(self, refresh: bool = True) -> None:
        done, failed = self.counts["done"], self.counts["failed"]
        left = "" if self.total is None else f", remaining {self.total - done - failed}"
        self.bar.set_postfix_str(f"done {done}, failed {failed}{left}", refresh=refresh)

    def update(self, status: str) -> None:
        """Count one landed run by its status."""
        self.counts["done" if status in DONE else "failed"] += 1
        self._postfix(refresh=False)  # drawn by update(), with the new count
        self.bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def run_experiments(experiments: Sequence[ExperimentConfig], root: Path, db_path: Path,
                    *, retry_failed: bool = False, draw: Draw | None = None,
                    executor: Executor | None = None,
                    annotations: Annotations | None = None, locked: bool = False) -> list[Path]:
    """Run what is pending on an executor, recording each run as it lands, with one progress bar.

    Args:
        experiments: the runs (the same run id twice runs once).
        root: the results tree; runs go to `<root>/<experiment>/<run_id>/`.
        db_path: the results database (written by this process only).
        retry_failed: rerun runs recorded as failed.
        draw: draws each run's plots into its folder (kanlab.report.plots.draw_run; None: none).
        executor: where runs execute (default: one after another in this process); not closed here.
        annotations: per run id, keys added to its config.json (a sweep's axis values).
        locked: the caller holds the experiments' locks (see running), as `kanlab tune` does.
    Returns:
        The run folders of every experiment given, run now or earlier.
    """
    root = Path(root)
    unique = list({e.run_id: e for e in experiments}.values())
    notes = annotations or {}
    studies = [] if locked else [e.experiment for e in unique]
    with running(root, studies), ResultsStore(db_path) as store:
        recover(unique, store, root, notes)
        todo = {e.run_id: e for e in pending(unique, store, root, retry_failed=retry_failed)}
        if todo:
            runner = executor or SerialExecutor()
            progress = Progress(len(todo), runner.description)
            try:
                for outcome in runner.run([Job.of(e, draw=draw) for e in todo.values()]):
                    exp = todo[outcome.job.run_id]
                    folder = land(exp, outcome, root, notes.get(exp.run_id))
                    store.record_run(folder)
                    progress.update(json.loads((folder / "final.json").read_text())["status"])
            finally:
                progress.close()
                if executor is None:
                    runner.close()
    return [run_folder(root, e) for e in experiments]
