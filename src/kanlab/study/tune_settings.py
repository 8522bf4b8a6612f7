"""The [tune] table's settings, each checked with an error naming the key: the per-model budget,
the metric trials are ranked by, the validation share, seeds, counts and the pruner."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kanlab.study.experiments import task_label
from kanlab.tasks import TaskConfig
from kanlab.training.trial_pruning import make_pruner

TUNE_KEYS = ("per_family", "metric", "validation", "seed", "startup_trials", "trials_per_round",
             "search_seeds", "pruner")
# What may rank trials, and its direction. The val_ ones rank on the validation set (the default);
# the test_ ones, psnr and train_loss remain for comparison with older tunes, but select on the test
# set (or the training set) that the verdict then judges.
METRICS = {"val_loss": "minimize", "val_rmse": "minimize", "val_accuracy": "maximize",
           "val_macro_f1": "maximize", "test_loss": "minimize", "test_rmse": "minimize",
           "train_loss": "minimize", "psnr": "maximize"}
VALIDATION = 0.2  # the default share of a task's training data held out to rank trials
# Metrics that exist for one target kind only.
VALUE_METRICS, CLASS_METRICS = ("val_rmse", "test_rmse"), ("val_accuracy", "val_macro_f1")


@dataclass(frozen=True)
class Budget:
    """Each model's share of the search: a number of trials, or of training seconds."""

    kind: str  # "trials" or "seconds"
    amount: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.amount:g}"


def parse_budget(text: Any) -> Budget:
    """`trials:N` (N >= 1) or `seconds:S` (S > 0) into a Budget."""
    kind, _, amount = str(text).partition(":")
    hint = ("give 'trials:N' (N >= 1 trials per model and task) or 'seconds:S' (S > 0 seconds of "
            "training per model and task)")
    try:
        value = float(amount)
    except ValueError:
        value = math.nan
    if kind not in ("trials", "seconds") or math.isnan(value):
        raise ValueError(f"tune.per_family = {text!r}: {hint}")
    if kind == "trials" and value.is_integer() and value >= 1:
        return Budget("trials", int(value))
    if kind == "seconds" and 0 < value < float("inf"):
        return Budget("seconds", value)
    raise ValueError(f"tune.per_family = {text!r} is a budget no model can meet: {hint}")


def check_metric(metric: Any, tasks: Sequence[TaskConfig]) -> None:
    """tune.metric, checked against METRICS and the tasks' kinds of targets."""
    if metric not in METRICS:
        raise ValueError(f"tune.metric = {metric!r}; allowed: {', '.join(METRICS)}")
    if metric == "psnr" and any(t.kind != "image" for t in tasks):
        raise ValueError("tune.metric = 'psnr' needs image tasks only; use val_loss")
    for kind, names in (("value", VALUE_METRICS), ("class", CLASS_METRICS)):
        other = next((t for t in tasks if t.targets_are != kind), None)
        if metric in names and other is not None:
            raise ValueError(f"tune.metric = {metric!r} is for {kind} targets, and task "
                             f"{task_label(other)!r} has {other.targets_are} targets; use val_loss")


def seed_list(value: Any, where: str) -> tuple[int, ...]:
    """A non-empty list of distinct seeds >= 0 as a tuple, or a ValueError naming `where`."""
    if (not isinstance(value, list) or not value
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        raise ValueError(f"{where} must be a non-empty list of integers >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{where} = {value!r} repeats a seed")
    return tuple(value)


def int_setting(tune: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    """tune[key] (default if absent), an integer >= minimum."""
    value = tune.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"tune.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def pruner_spec(tune: Mapping[str, Any], total_steps: int) -> dict[str, Any]:
    """[tune.pruner] with its defaults filled in, checked by building the pruner once."""
    spec = dict(tune.get("pruner", {"kind": "median"}))
    spec.setdefault("kind", "median")
    if spec["kind"] == "median":  # judging trials at step 0 compares initialisations: wait a quarter
        spec.setdefault("n_warmup_steps", total_steps // 4)
    make_pruner(spec)  # validates
    return spec


def validation_share(tune: Mapping[str, Any], metric: str, tasks: Sequence[TaskConfig]) -> float:
    """[tune] validation, checked: the share of each task's training data the trials hold out to rank on."""
    ranked_on_val = metric.startswith("val_")
    value = tune.get("validation", VALIDATION if ranked_on_val else 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"tune.validation must be a number in [0, 1), e.g. {VALIDATION} (the share of each "
                         f"task's training data held out to rank trials on), got {value!r}")
    lacking = next((t for t in tasks if not (t.val_fraction or value)), None)
    if ranked_on_val and lacking is not None:
        raise ValueError(f"tune.metric = {metric!r} ranks trials on a validation set, and task "
                         f"{task_label(lacking)!r} has none with tune.validation = {value}: set "
                         f"tune.validation = {VALIDATION} (or the task's val_fraction)")
    return float(value)
