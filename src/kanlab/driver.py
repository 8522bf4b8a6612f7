"""Run every experiment of a study in this process, record each in the results store, resume on rerun."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from kanlab.config import ExperimentConfig
from kanlab.runs import execute
from kanlab.store import ResultsStore

DONE = ("finished", "diverged")


def pending(experiments: Sequence[ExperimentConfig], store: ResultsStore, root: Path,
            *, retry_failed: bool = False) -> list[ExperimentConfig]:
    """The experiments that still need running: not recorded as done, or their folder is gone."""
    done = {r["run_id"]: r["status"] for r in store.runs()}
    keep = DONE if retry_failed else (*DONE, "failed")
    return [
        e for e in experiments
        if done.get(e.run_id) not in keep or not (Path(root) / e.experiment / e.run_id).is_dir()
    ]


def run_experiments(experiments: Sequence[ExperimentConfig], root: Path, db_path: Path,
                    *, retry_failed: bool = False, plots: bool = True) -> list[Path]:
    """Run what is pending with one progress bar (quiet when stderr is not a terminal).

    Returns:
        The run folders of every experiment given, run now or earlier.
    """
    root = Path(root)
    with ResultsStore(db_path) as store:
        todo = pending(experiments, store, root, retry_failed=retry_failed)
        total = sum(e.train.total_steps for e in todo)
        bar = tqdm(total=total, unit="step", disable=not sys.stderr.isatty(), dynamic_ncols=True)
        with bar:
            for n, exp in enumerate(todo, 1):
                bar.set_description(f"run {n}/{len(todo)} {exp.label} s{exp.seed}")
                start = bar.n

                def advance(step: int, _total: int, start: int = start) -> None:
                    bar.update(start + step - bar.n)

                folder = execute(exp, root, progress=advance, plots=plots)
                bar.update(start + exp.train.total_steps - bar.n)
                store.record_run(folder)
    return [root / e.experiment / e.run_id for e in experiments]
