"""Tune files: a study plus [tune] and [search], resolved and checked before any trial starts.

    name = "tune-quick"
    seeds = [100, 101, 102]       # the verdict: each family's best configuration, retrained on these
    budget = 1000                 # parameters (widths from match_params at each trial's depth)
    depth = 2
    [train]
    steps = 400
    [[tasks]] ...
    [[models]] ...                # label, family, options, train as in a study
    [tune]
    per_family = "trials:8"       # or "seconds:600": the same for every model on every task
    metric = "val_loss"           # what trials are ranked by (METRICS gives its direction)
    validation = 0.2              # share of each task's training data held out to rank the trials
    seed = 0                      # the TPE sampler's seed: the same file proposes the same trials
    startup_trials = 4            # random trials before TPE models the results
    trials_per_round = 2          # trials of a model asked together (they run in parallel)
    search_seeds = [0]            # trial n trains on search_seeds[n % len]; disjoint from seeds
    [tune.pruner]
    kind = "median"               # "median", "halving" (successive halving) or "none"; other keys are
    n_startup_trials = 2          # the Optuna pruner's own arguments
    [search.kan]                  # by family or by label; see kanlab.study.search_space
    grid_size = { low = 3, high = 12 }

Trials are ranked on a validation set, never the test set: each task of the search holds
`validation` of its training data out (TaskConfig.val_fraction, unless the task sets its own:
functions draw points of their own, images hold out pixels, tables training rows), and the trials
are ranked and pruned on it. The verdict retrains each best trial's model on all the training data
(validation rows included) and is judged on the test set alone.

The key is `per_family`, not `budget`: a study's `budget` is the parameter budget. Every (task,
model) pair is one Optuna study; editing anything that shapes its trials (its task, model,
training, search space, sampler or pruner settings, the kanlab code, the thread count its trials
run on) gives it a new fingerprint, so a new study: an edited file never reuses trials. per_family
and seeds can change without one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from kanlab.study.code_version import code_version
from kanlab.study.config import (
    ExperimentConfig,
    StudyConfig,
    apply_overrides,
    build_checked,
    parse_study,
    read_study,
)
from kanlab.study.experiments import expand, matched_widths, task_label
from kanlab.study.search_space import Space, build_space, key_kind
from kanlab.study.tune_settings import CLASS_METRICS as CLASS_METRICS
from kanlab.study.tune_settings import METRICS as METRICS
from kanlab.study.tune_settings import TUNE_KEYS as TUNE_KEYS
from kanlab.study.tune_settings import VALIDATION as VALIDATION
from kanlab.study.tune_settings import VALUE_METRICS as VALUE_METRICS
from kanlab.study.tune_settings import Budget as Budget
from kanlab.study.tune_settings import (
    check_metric,
    int_setting,
    parse_budget,
    pruner_spec,
    seed_list,
    validation_share,
)
from kanlab.tasks import Dataset, TaskConfig, make_dataset
from kanlab.training.config import TrainConfig
from kanlab.training.threads import torch_threads

# Training keys that leave the cost of a step (nearly) alone: a time-matched model's corners are
# measured at the study's own values of these.
TIME_NEUTRAL = frozenset({"lr", "schedule", "step_every", "gamma", "weight_decay", "momentum"})


@dataclass(frozen=True)
class TuneStudy:
    """One (task, model) pair of a tune file: an Optuna study of its own."""

    name: str  # the Optuna study name: tune/task/label/fingerprint
    task_index: int
    model_index: int
    task: str
    label: str
    family: str
    space: Space
    pruner: Mapping[str, Any]


@dataclass(frozen=True)
class Tune:
    """A parsed tune file: the study, the per-model budget, sampler and pruner settings, the spaces."""

    name: str
    raw: Mapping[str, Any]  # the study part (no [tune], [search])
    budget: Budget
    metric: str
    seed: int
    startup_trials: int
    trials_per_round: int
    search_seeds: tuple[int, ...]
    seeds: tuple[int, ...]
    studies: tuple[TuneStudy, ...]
    description: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)  # [tune], defaults filled in, for the report
    validation: float = 0.0  # each trial's task holds this share out to rank on (unless it sets its own)
    threads: int | None = None  # torch threads each run computes on (runs.expand; None: this process's)

    @property
    def direction(self) -> str:
        """"minimize" or "maximize", from the metric."""
        return METRICS[self.metric]

    @property
    def search_experiment(self) -> str:
        """The experiment (and folder) of the search's trial runs; the verdict runs use `name`."""
        return f"{self.name}-search"

    def resolve(self, study: TuneStudy, values: Mapping[str, Any], seeds: Sequence[int], *,
                experiment: str, trial: Mapping[str, Any] | None = None) -> list[ExperimentConfig]:
        """The runs of one configuration of a study's model: one per seed.

        Args:
            study: the (task, model) pair.
            values: the trial's values by search key (Space.decode).
            seeds: training seeds.
            experiment: the experiment name of the runs.
            trial: the runs' `trial` field (search trials: their task gets the tune's validation
                split unless it sets its own val_fraction), None for runs of the task as written.
        Returns:
            The ExperimentConfigs, widths matched to the budget at the values' depth and options.
        """
        raw = json.loads(json.dumps(self.raw))
        model = raw["models"][study.model_index]
        for key, value in values.items():
            where = key_kind(study.family, key)[0]
            if where == "depth":
                model["depth"] = value
            else:
                model.setdefault(where, {})[key] = value
        task = raw["tasks"][study.task_index]
        if trial is not None and self.validation > 0:
            task.setdefault("val_fraction", self.validation)
        raw.update(name=experiment, seeds=list(seeds), tasks=[task], models=[model])
        runs = expand(parse_study(raw), threads=self.threads)
        return runs if trial is None else [replace(r, trial=trial) for r in runs]


@cache
def _data(task: TaskConfig) -> Dataset:
    return make_dataset(task)


def _check_corners(study: TuneStudy, parsed: StudyConfig, validation: float, threads: int | None) -> None:
    """Every corner of the space must give a valid TrainConfig and a model that meets its budget.

    The budget is matched as the trials will match it (the model's match: parameters, FLOPs, or
    time per step measured on the trial's data and thread count, through the time-match cache), at the
    model's budget on this task. Matching by time measures each corner: only the ends of integer ranges,
    and training keys that leave a step's cost alone (TIME_NEUTRAL) at the study's own values.
    """
    n = study.task_index
    entry, task = parsed.models[study.model_index], parsed.tasks[n]
    keys = {k: key_kind(study.family, k)[0] for k in (*study.space.fixed, *(d.key for d in study.space.dims))}
    train = {k for k, where in keys.items() if where == "train"}
    base_train = {**parsed.train, **parsed.task_train[n], **entry.train, "seed": 0}
    checks = [(point, lambda p: build_checked(TrainConfig, {**base_train, **p}, "train"))
              for point in study.space.corner_points(train)]
    if entry.spec is None:
        timed = entry.match == "time"
        trial_task = replace(task, val_fraction=task.val_fraction or validation)  # the data trials train on
        shaping = set(keys) - train | ({k for k in train if k not in TIME_NEUTRAL} if timed else set())

        def meets(p: dict[str, Any]) -> None:
            options = {**entry.options, **{k: v for k, v in p.items() if keys[k] == "options"}}
            sized = replace(entry, budget=parsed.budget_of(entry, n), depth=p.get("depth", entry.depth),
                            options=options)
            trained = {k: v for k, v in p.items() if keys[k] == "train"}
            cfg = build_checked(TrainConfig, {**base_train, **trained}, "train")
            with torch_threads(threads):  # as runs.expand times the trials' own
                matched_widths(sized, _data(trial_task), cfg, trial_task)

        checks += [(point, meets) for point in study.space.corner_points(shaping, ends=timed)]
    for point, check in checks:
        try:
            check(point)
        except (ValueError, TypeError) as err:
            at = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "its own settings"
            raise ValueError(f"model {study.label!r} on task {study.task!r} at {at}: {err}. Narrow that "
                             "search range (or fix the key), or change the study's budget") from None


def _fingerprint(raw: Mapping[str, Any], n_task: int, n_model: int, space: Space,
                 shared: Mapping[str, Any]) -> str:
    model = raw["models"][n_model]
    what = {"task": raw["tasks"][n_task], "model": model, "train": raw.get("train", {}),
            "budget": model.get("budget", raw.get("budget")), "depth": model.get("depth", raw.get("depth")),
            "data_seed": raw.get("data_seed", 0), "space": space.to_dict(), **shared}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]


def parse_tune(raw: Mapping[str, Any], *, threads: int | None = None) -> Tune:
    """Validate a raw tune dict: the study, [tune], [search], and every corner of every space.

    Args:
        raw: the tune file's dict.
        threads: torch threads each trial and verdict run computes on: WORKER_THREADS on a pool or
            cluster, None (this process's count) in this process, as `kanlab sweep` plans them.
    """
    if "tune" not in raw:
        raise ValueError("a tune file needs a [tune] table with per_family = 'trials:N' or 'seconds:S' "
                         "(see `kanlab tune --help`); to run a plain study use `kanlab compare`")
    tune = raw["tune"]
    if not isinstance(tune, Mapping):
        raise ValueError(f"[tune] must be a table, got {tune!r}")
    unknown = sorted(set(tune) - set(TUNE_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} in [tune]; allowed: {', '.join(TUNE_KEYS)}")
    if "per_family" not in tune:
        raise ValueError("[tune] needs per_family = 'trials:N' or 'seconds:S' (each model's equal share)")
    if "symbolic" in raw:
        raise ValueError("tuning trains each model plainly: drop [symbolic] from a tune file")
    base = {k: v for k, v in raw.items() if k not in ("tune", "search")}
    study = parse_study(base)
    metric = tune.get("metric", "val_loss")
    check_metric(metric, study.tasks)
    validation = validation_share(tune, metric, study.tasks)
    search_seeds = seed_list(tune.get("search_seeds", [0]), "tune.search_seeds")
    shared_seeds = sorted(set(search_seeds) & set(study.seeds))
    if shared_seeds:
        raise ValueError(f"seeds and tune.search_seeds share {shared_seeds}: the verdict must train on "
                         "seeds the search never used; change one of them")
    labels = [m.label for m in study.models]
    if len(set(labels)) != len(labels):
        raise ValueError(f"every model of a tune file needs its own label (one study each), got {labels}")
    tables = raw.get("search", {})
    if not isinstance(tables, Mapping):
        raise ValueError(f"[search] must hold tables [search.<family or label>], got {tables!r}")
    stray = sorted(set(tables) - {m.family for m in study.models} - set(labels))
    if stray:
        families = ", ".join(sorted({m.family for m in study.models}))
        raise ValueError(f"[search.{stray[0]}] names no family or label of the models; families: {families}; "
                         f"labels: {', '.join(labels)}")
    settings = {"metric": metric, "validation": validation, "seed": int_setting(tune, "seed", 0, 0),
                "startup_trials": int_setting(tune, "startup_trials", 5, 0),
                "trials_per_round": int_setting(tune, "trials_per_round", 2, 1),
                "search_seeds": list(search_seeds)}
    studies = []
    for n_task, task in enumerate(study.tasks):
        for n_model, (entry, model_raw) in enumerate(zip(study.models, base["models"], strict=True)):
            fixed = set(model_raw.get("options", {})) | set(model_raw.get("train", {}))
            space = build_space(entry.family, entry.label, tables, fixed, spec_given=entry.spec is not None)
            train = {**study.train, **study.task_train[n_task], **entry.train}
            pruner = pruner_spec(tune, build_checked(TrainConfig, train, "train").total_steps)
            # The trials' run ids hold the code version and thread count: either changed, the old
            # trials' runs are not the new ones, so a new study searches afresh.
            shared = {**settings, "pruner": pruner, "code": code_version(), "threads": threads}
            fp = _fingerprint(base, n_task, n_model, space, shared)
            name = task_label(task)
            studies.append(TuneStudy(f"{study.name}/{name}/{entry.label}/{fp}", n_task, n_model, name,
                                     entry.label, entry.family, space, pruner))
    for s in studies:
        _check_corners(s, study, validation, threads)
    return Tune(name=study.name, raw=base, budget=parse_budget(tune["per_family"]), metric=metric,
                seed=settings["seed"], startup_trials=settings["startup_trials"],
                trials_per_round=settings["trials_per_round"], search_seeds=search_seeds, seeds=study.seeds,
                studies=tuple(studies), description=study.description, validation=validation, threads=threads,
                settings={**settings, "per_family": str(tune["per_family"]),
                          "pruner": {"kind": "median", **tune.get("pruner", {})}})


def load_tune(source: str | Path, overrides: Sequence[str] = (), *, threads: int | None = None) -> Tune:
    """Read a tune preset or file, apply --set overrides (tune.per_family=trials:4) and check it all
    (threads: see parse_tune)."""
    return parse_tune(apply_overrides(read_study(source), overrides), threads=threads)
