"""`kanlab tune`: every model gets the same search budget, on any executor; then a verdict on fresh seeds.

Each (task, model) pair of a tune file (kanlab.study.tune_config) is one Optuna study
(kanlab.runs.search), kept in a journal file beside the results database
(`runs/kanlab.optuna.journal` for `runs/kanlab.db`); each trial is one run, recorded in the
database like any other (experiment `<name>-search`) with status finished, pruned, diverged or
failed.

Killed at any point, a rerun tells Optuna about runs the database recorded but Optuna never heard
of, reruns trials that were in flight, asks what a round still lacks and goes on: one row per
trial, no finished trial trained again. Then the best trial of each study (among its first N, for
a budget of N trials, ranked on the validation set by default) is retrained on the study's `seeds`
(never the search seeds) as experiment `<name>`: the same model (its spec) and training settings,
with the task's validation rows given back to training, judged on the test set alone. Only those
runs enter the verdict. `<root>/<name>/tune.json` records what the report shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kanlab.runs.driver import run_experiments, running
from kanlab.runs.executors import Executor, SerialExecutor
from kanlab.runs.experiment import Draw
from kanlab.runs.outputs import inside
from kanlab.runs.search import ATTR as ATTR
from kanlab.runs.search import Search as Search
from kanlab.runs.search import journal_path as journal_path
from kanlab.runs.search import trial_seed as trial_seed
from kanlab.study.config import ExperimentConfig
from kanlab.study.tune_config import Tune


def retrained(trial_run: ExperimentConfig, seeds: Sequence[int], experiment: str) -> list[ExperimentConfig]:
    """The verdict runs of a best trial: its model (spec) and training on other seeds, no validation split.

    The validation rows go back into training (a table's standardisation is refitted on them, an
    image trains on every pixel, a function task drops its extra points): the verdict is judged on
    the test set, which no trial was ranked on. The spec is the trial's own, so a model matched by
    time keeps the widths it was tuned at.
    """
    task = replace(trial_run.task, val_fraction=0.0)
    return [replace(trial_run, experiment=experiment, task=task, seed=seed, trial=None,
                    train=replace(trial_run.train, seed=seed)) for seed in seeds]


def verdict_experiments(tune: Tune, search: Search
                        ) -> tuple[dict[str, list[ExperimentConfig]], dict[str, Any]]:
    """Each study's best configuration on the verdict seeds (by study name), and the runs' annotations."""
    exps: dict[str, list[ExperimentConfig]] = {}
    notes: dict[str, Any] = {}
    for s in search.studies:
        best = search.best(s)
        if best is None:
            continue
        values = s.spec.space.decode(best.params)
        runs = retrained(search.experiment(s, best), tune.seeds, tune.name)
        reused = {e.seed for e in runs} & set(tune.search_seeds)
        if reused:  # parse_tune refuses such files; this guards the verdict itself
            raise RuntimeError(f"verdict runs of {s.spec.label} would reuse search seeds {sorted(reused)}")
        for e in runs:  # the budget the model was matched to (a task's own, if it has one), for the report
            matched = e.match or {}
            notes[e.run_id] = {
                "tune": {"study": s.spec.name, "best_trial": best.number, "value": best.value,
                         "params": values},
                "sweep": {"budget": matched.get("budget"), "depth": matched.get("depth"), "axes": {}},
            }
        exps[s.spec.name] = runs
    return exps, notes


def write_manifest(tune: Tune, search: Search, verdict: Mapping[str, Sequence[ExperimentConfig]],
                   root: Path) -> Path:
    """`<root>/<name>/tune.json`: the tune's settings, each study, its best trial and verdict runs."""
    studies = []
    for s in search.studies:
        best = search.best(s)
        studies.append({
            "name": s.spec.name, "task": s.spec.task, "label": s.spec.label, "family": s.spec.family,
            "space": s.spec.space.to_dict(), "pruner": dict(s.spec.pruner),
            "best": None if best is None else {"number": best.number, "value": best.value,
                                               "params": s.spec.space.decode(best.params)},
            "verdict_runs": [e.run_id for e in verdict.get(s.spec.name, [])],
        })
    manifest = {"name": tune.name, "description": tune.description, "settings": dict(tune.settings),
                "search_experiment": tune.search_experiment, "direction": tune.direction,
                "seeds": list(tune.seeds), "studies": studies}
    path = inside(root, tune.name) / "tune.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".tune.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def run_tune(tune: Tune, root: Path, db_path: Path, *, executor: Executor | None = None,
             retry_failed: bool = False, draw: Draw | None = None) -> tuple[list[Path], Path]:
    """Search every study to its budget, then retrain each best configuration on the verdict seeds.

    Args:
        tune: the parsed tune file (load_tune).
        root: the results tree (trials under `<root>/<name>-search/`, the verdict under `<root>/<name>/`).
        db_path: the results database; the Optuna journal goes beside it.
        executor: where runs execute (default: this process); not closed here.
        retry_failed: rerun failed trials and verdict runs.
        draw: draws each run's plots into its folder (kanlab.report.plots.draw_run; None: none).
    Returns:
        The verdict's run folders and the manifest's path.
    """
    runner = executor or SerialExecutor()
    # Both experiments locked as run and sweep lock theirs: two tunes of one name, or a tune and a
    # sweep of its study, would delete each other's half-landed folders.
    with running(root, [tune.search_experiment, tune.name]):
        try:
            search = Search(tune, root, db_path)
            search.run(runner, retry_failed=retry_failed, draw=draw)
            verdict, notes = verdict_experiments(tune, search)
            runs = [e for exps in verdict.values() for e in exps]
            folders = run_experiments(runs, root, db_path, retry_failed=retry_failed, draw=draw,
                                      executor=runner, annotations=notes, locked=True)
        finally:
            if executor is None:
                runner.close()
        return folders, write_manifest(tune, search, verdict, root)

