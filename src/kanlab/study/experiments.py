"""A study expanded into experiments: every (task, model, seed) resolved, widths matched to the
budget (by parameters, FLOPs or measured time per step).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from kanlab import models
from kanlab.models.budget import match_widths
from kanlab.study.code_version import code_version
from kanlab.study.config import ExperimentConfig, ModelEntry, StudyConfig, build_checked
from kanlab.tasks import Dataset, TaskConfig, data_hash, make_dataset
from kanlab.training.config import TrainConfig
from kanlab.training.threads import torch_threads
from kanlab.training.timing import cached_match_time


def expand(study: StudyConfig, *, threads: int | None = None) -> list[ExperimentConfig]:
    """Every (task, model, seed) of a study as a resolved ExperimentConfig (widths matched).

    Args:
        study: the study.
        threads: torch threads each run computes on (default: this process's torch.get_num_threads(),
            which `kanlab run` uses; pool and cluster workers run one each).
    Returns:
        The runs, each with the hash of its task's files, its thread count and this code's version.
    """
    threads = torch.get_num_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    out, version = [], code_version()
    for n, (task, task_train) in enumerate(zip(study.tasks, study.task_train, strict=True)):
        data = make_dataset(task)
        files = data_hash(task)  # after make_dataset, whose errors say best what is wrong with a file
        for entry in study.models:
            merged = {**study.train, **task_train, **entry.train}
            train = build_checked(TrainConfig, merged, f"train of {entry.label}")
            spec, match = entry.spec, None
            if spec is None:
                resolved = dataclasses.replace(entry, budget=study.budget_of(entry, n))
                with torch_threads(threads):  # a time per step is measured on the run's own thread count
                    widths, match = match_entry(resolved, data, train, task)
                cfg = models.ModelConfig.single(entry.family, widths, **dict(entry.options))
                spec = models.format_spec(cfg)
            for seed in study.seeds:
                out.append(ExperimentConfig(
                    experiment=study.name, label=entry.label, family=entry.family, spec=spec,
                    task=task, train=dataclasses.replace(train, seed=seed), seed=seed,
                    symbolic=study.symbolic_of(n), match=match, data_hash=files, threads=threads,
                    code_version=version,
                ))
    return out


def match_entry(entry: ModelEntry, data: Dataset, train: TrainConfig,
                task: TaskConfig) -> tuple[tuple[int, ...], dict[str, Any]]:
    """Widths of a budget-matched model entry and how they were matched (ExperimentConfig.match).

    Args:
        entry: a study's model entry without a spec (family, options, budget, depth, match).
        data: its task's dataset (input and output widths; the data timed for match = "time").
        train: its training config (timed for match = "time").
        task: its task (part of the time-match cache key).
    Returns:
        (widths, {"by", "budget", "tol", "depth", "value"}): value is the count reached, or the
        measured seconds per step.
    """
    try:
        return matched_widths(entry, data, train, task)
    except ValueError as err:
        raise ValueError(f"model {entry.label!r} on task {task_label(task)!r}: {err}") from None


def matched_widths(entry: ModelEntry, data: Dataset, train: TrainConfig,
                   task: TaskConfig) -> tuple[tuple[int, ...], dict[str, Any]]:
    """match_entry without naming the model and task in its errors (a tune's checks name more)."""
    assert entry.budget is not None
    options = dict(entry.options)
    if entry.match == "time":
        widths, value = cached_match_time(
            entry.family, float(entry.budget), data=data, train=train, depth=entry.depth, options=options,
            task=json.loads(json.dumps(dataclasses.asdict(task))), tol=entry.tol)
    else:
        widths = match_widths(
            entry.family, entry.budget, by=entry.match, depth=entry.depth, tol=entry.tol,
            in_features=data.in_dim, out_features=data.out_dim, **options)
        cfg = models.ModelConfig.single(entry.family, widths, **options)
        value = models.count_flops(cfg) if entry.match == "flops" else models.count_params(cfg)
    return widths, {"by": entry.match, "budget": entry.budget, "tol": entry.tol, "depth": entry.depth,
                    "value": value}


def task_label(task: TaskConfig) -> str:
    """Short human name of a task (image paths shortened to their file name)."""
    return Path(task.name).stem if task.kind != "function" else task.name
