"""Study files (TOML): tasks x models x seeds, with --set overrides, resolved into one config per run.

A study file looks like this (every table but [[tasks]] and [[models]] is optional):

    name = "zigzag-vs-mlp"
    seeds = [0, 1, 2]
    budget = 300          # budget shared by every model that gives no spec, in units of match
    depth = 1             # hidden layers of budget-matched models
    match = "params"      # what the budget counts (default "params"; see below)
    match_tol = 0.02      # allowed relative deviation (default 0.02 for counts, 0.10 for time)
    [train]               # TrainConfig fields, shared
    steps = 2000
    [[tasks]]             # TaskConfig fields; [tasks.train] overrides [train] for this task, and
    name = "zigzag"       # a task's budget = ... the study's budget (not a model's own)
    [[tasks]]             # a table: kind "dataset" (digits, breast_cancer, wine, iris: classes;
    kind = "dataset"      # diabetes: values) or kind "data" (path, targets, target_kind = "class")
    name = "digits"       # split seeded by data_seed (or its own seed), stratified for classes,
    test_fraction = 0.2   # inputs standardised on the training rows (standardize = "inputs")
    [[models]]            # label, family, options, and either spec or budget/depth/match
    label = "KAN"
    family = "kan"
    options = { grid_size = 5 }
    train = { lr = 0.01 } # overrides for this model

match: "params" (trainable parameters), "flops" (forward multiply-adds per sample, see
kanlab.models.count_flops) or "time" (measured seconds per training step on this machine, see
kanlab.training.timing; the budget is then seconds, e.g. 0.002). A model entry may set its own budget,
depth, match and match_tol. A budget that a model cannot meet is an error before anything runs.

Class tasks train on the cross-entropy of the logits; the loss recorded as train_loss/test_loss
(the one to minimise, and the one reports compare) is the cross-entropy, with test_accuracy and
test_macro_f1 beside it in final.json and the store.

Overrides use dotted keys with TOML values: `--set train.steps=100 --set tasks.0.n_train=64
--set models.1.options.grid_size=10 --set seeds=[0] --set match=flops`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanlab.study.files import NAME_PATTERN as NAME_PATTERN
from kanlab.study.files import apply_overrides as apply_overrides
from kanlab.study.files import build_checked as build_checked
from kanlab.study.files import check_name as check_name
from kanlab.study.files import preset_names as preset_names
from kanlab.study.files import read_study as read_study
from kanlab.study.files import table, tables, whole_count
from kanlab.tasks import TABULAR_ONLY, TaskConfig
from kanlab.tasks.encodings import EncodingConfig
from kanlab.training.config import TrainConfig

STUDY_KEYS = ("name", "description", "seeds", "budget", "depth", "match", "match_tol", "data_seed", "train",
              "symbolic", "tasks", "models")
MODEL_KEYS = ("label", "family", "spec", "options", "budget", "depth", "match", "match_tol", "train")
MATCHES = ("params", "flops", "time")
# Default tolerance of each match: counts are exact, a measured time per step moves by ~5-10 % here.
MATCH_TOL = {"params": 0.02, "flops": 0.02, "time": 0.10}


@dataclass(frozen=True)
class ModelEntry:
    """One model of a study: a spec string, or a family matched to a budget of parameters, FLOPs or time."""

    label: str
    family: str
    options: Mapping[str, Any] = field(default_factory=dict)
    spec: str | None = None
    budget: float | None = None  # parameters, multiply-adds per sample, or seconds per step (match)
    depth: int = 1
    train: Mapping[str, Any] = field(default_factory=dict)
    match: str = "params"
    match_tol: float | None = None  # None: MATCH_TOL[match]
    own_budget: bool = False  # the entry sets its budget (else it is the study's: a task may override it)

    @property
    def tol(self) -> float:
        """The relative tolerance of the match."""
        return MATCH_TOL[self.match] if self.match_tol is None else self.match_tol


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs and everything that shapes its numbers: the resolved model spec, the
    task and the bytes of the files it reads, training, the seed, the number of torch threads and the
    version of the code."""

    experiment: str
    label: str
    family: str
    spec: str
    task: TaskConfig
    train: TrainConfig
    seed: int
    symbolic: Mapping[str, Any] | None = None  # SymbolicConfig fields: run the symbolic workflow instead
    trial: Mapping[str, Any] | None = None  # a tuning trial: its study, number and pruning (kanlab.runs.tune)
    # How the widths of spec were found: {"by", "budget", "tol", "depth", "value"} (value: the count
    # or measured seconds per step reached); None for a model given by its spec. Not part of the
    # run's identity: the spec it produced is.
    match: Mapping[str, Any] | None = field(default=None, compare=False)
    data_hash: str | None = None  # tasks.data_hash of the task's files (None: it reads none)
    # Torch threads the run computes on: sums split over threads round differently (8e-7 in float32
    # between 2 threads and 1), so the count is part of the identity. None: not recorded (older runs).
    threads: int | None = None
    # SHA-256 of the kanlab source that computes the run (kanlab.study.code_version): an upgrade or an edit
    # of the code gives new runs. None: not recorded (runs of a kanlab before it was).
    code_version: str | None = None

    @property
    def run_id(self) -> str:
        """Stable id: a readable prefix and a hash of the resolved config (without match)."""
        identity = {k: v for k, v in self.to_dict().items() if k != "match"}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        name = Path(self.task.name).stem if self.task.kind != "function" else self.task.name
        return f"{name}-{self.family}-s{self.seed}-{digest[:10]}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the run folder's config.json, without run_id)."""
        out = json.loads(json.dumps(dataclasses.asdict(self)))
        for key in ("symbolic", "trial", "match", "data_hash", "threads", "code_version"):
            if out[key] is None:  # absent, so runs keep the ids they had before the key existed
                del out[key]
        for key in TABULAR_ONLY:  # task fields only tables use: function and image runs keep their ids
            if self.task.kind not in ("data", "dataset"):
                del out["task"][key]
        if not self.task.val_fraction:  # no validation set: runs keep the ids they had before it existed
            del out["task"]["val_fraction"]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentConfig:
        """Inverse of to_dict (extra keys such as run_id are ignored)."""
        needed = ("experiment", "label", "family", "spec", "task", "train", "seed")
        missing = [key for key in needed if key not in d] if isinstance(d, Mapping) else list(needed)
        if missing:
            raise ValueError(f"not a kanlab run config: missing key(s) {', '.join(missing)} "
                             f"(a run's config.json holds {', '.join(needed)})")
        task = table(d["task"], "task")
        task["encoding"] = build_checked(EncodingConfig, task.get("encoding", {}), "task.encoding")
        return cls(
            experiment=d["experiment"], label=d["label"], family=d["family"], spec=d["spec"],
            task=build_checked(TaskConfig, task, "task"),
            train=build_checked(TrainConfig, d["train"], "train"),
            seed=int(d["seed"]), symbolic=d.get("symbolic"), trial=d.get("trial"), match=d.get("match"),
            data_hash=d.get("data_hash"), threads=d.get("threads"), code_version=d.get("code_version"),
        )


@dataclass(frozen=True)
class StudyConfig:
    """A parsed study file: tasks x models x seeds."""

    name: str
    tasks: tuple[TaskConfig, ...]
    task_train: tuple[Mapping[str, Any], ...]
    models: tuple[ModelEntry, ...]
    seeds: tuple[int, ...] = (0,)
    train: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    symbolic: Mapping[str, Any] | None = None
    task_symbolic: tuple[Mapping[str, Any], ...] = ()
    task_budget: tuple[float | None, ...] = ()  # a task's budget, for the models without their own

    def budget_of(self, entry: ModelEntry, n: int) -> float | None:
        """The budget of a model entry on task n: its own, else the task's, else the study's."""
        task = self.task_budget[n] if n < len(self.task_budget) else None
        return entry.budget if entry.own_budget or task is None else task

    def symbolic_of(self, n: int) -> dict[str, Any] | None:
        """The SymbolicConfig fields of task n: the study's [symbolic] under the task's own."""
        own = self.task_symbolic[n] if n < len(self.task_symbolic) else {}
        if self.symbolic is None and not own:
            return None
        return {**(self.symbolic or {}), **own}


def parse_study(raw: Mapping[str, Any]) -> StudyConfig:
    """Validate a raw study dict into a StudyConfig."""
    if "axes" in raw:
        raise ValueError("this file has [axes], so it is a sweep: run it with `kanlab sweep`, "
                         "not run/compare")
    if "tune" in raw or "search" in raw:
        raise ValueError("this file has [tune] or [search], so it is a tune file: run it with `kanlab tune`")
    unknown = sorted(set(raw) - set(STUDY_KEYS))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)} in the study; allowed: {', '.join(STUDY_KEYS)}"
        )
    if not raw.get("tasks") or not raw.get("models"):
        raise ValueError("a study needs at least one [[tasks]] and one [[models]] entry")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    train = table(raw.get("train", {}), "train")
    build_checked(TrainConfig, train, "train")  # validate early
    tasks, task_train, task_symbolic, task_budget = [], [], [], []
    for n, t in enumerate(tables(raw["tasks"], "tasks")):
        task_train.append(table(t.pop("train", {}), f"tasks.{n}.train"))
        task_symbolic.append(table(t.pop("symbolic", {}), f"tasks.{n}.symbolic"))
        task_budget.append(t.pop("budget", None))
        t.setdefault("seed", raw.get("data_seed", 0))
        t["encoding"] = build_checked(EncodingConfig, t.get("encoding", {}), f"tasks.{n}.encoding")
        tasks.append(build_checked(TaskConfig, t, f"tasks.{n}"))
    models = []
    for n, m in enumerate(tables(raw["models"], "models")):
        bad = sorted(set(m) - set(MODEL_KEYS))
        if bad:
            raise ValueError(
                f"unknown key(s) {', '.join(bad)} in models.{n}; allowed: {', '.join(MODEL_KEYS)}"
            )
        if "family" not in m and "spec" not in m:
            raise ValueError(f"models.{n} needs a family (matched to the budget) or a spec")
        family = m["family"] if "family" in m else str(m["spec"]).split(":", 1)[0]
        if not isinstance(family, str) or not family:
            raise ValueError(f"models.{n}.family must be a family name such as 'kan', got {family!r}")
        budget = m.get("budget", raw.get("budget"))
        budgets = [budget] if "budget" in m else [b if b is not None else budget for b in task_budget]
        if m.get("spec") is None and any(b is None for b in budgets):
            raise ValueError(f"models.{n} ({family}) has no spec and no budget: set one for the model, "
                             "the study or every task")
        match, tol = m.get("match", raw.get("match", "params")), m.get("match_tol", raw.get("match_tol"))
        keys = [f"models.{n}.budget"] if "budget" in m else [
            f"tasks.{t}.budget" if b is not None else "budget" for t, b in enumerate(task_budget)]
        for key, b in zip(keys, budgets, strict=True) if m.get("spec") is None else ():
            _check_match(f"models.{n} ({family})", key, match, tol, b)
        depth_key = f"models.{n}.depth" if "depth" in m else "depth"  # for errors
        models.append(ModelEntry(
            label=m.get("label", family), family=family, spec=m.get("spec"),
            options=table(m.get("options", {}), f"models.{n}.options"),
            budget=budget, depth=whole_count(m.get("depth", raw.get("depth", 1)), depth_key),
            train=table(m.get("train", {}), f"models.{n}.train"),
            match=match, match_tol=None if tol is None else float(tol), own_budget="budget" in m,
        ))
    labels = [m.label for m in models]
    for n, label in enumerate(labels):
        if label in labels[:n]:  # reports tell models apart by label: two would be averaged as one
            raise ValueError(f"models.{n} has the label {label!r} of models.{labels.index(label)}: give each "
                             "model its own label (label = \"...\")")
    symbolic = None if raw.get("symbolic") is None else table(raw["symbolic"], "symbolic")
    study = StudyConfig(
        name=check_name(raw.get("name", "study")), tasks=tuple(tasks), task_train=tuple(task_train),
        models=tuple(models), seeds=tuple(seeds), train=train, description=str(raw.get("description", "")),
        symbolic=symbolic, task_symbolic=tuple(task_symbolic), task_budget=tuple(task_budget),
    )
    _check_symbolic(study)
    return study


def _check_match(where: str, key: str, match: Any, tol: Any, budget: Any) -> None:
    """A clear error for a bad match, match_tol or budget (key: where the budget was set)."""
    if match not in MATCHES:
        raise ValueError(f"{where}: match must be one of {', '.join(MATCHES)}, got {match!r}")
    number = isinstance(tol, (int, float)) and not isinstance(tol, bool)
    if tol is not None and not (number and 0 < tol < 1):
        raise ValueError(f"{where}: match_tol must be a number in (0, 1), e.g. 0.05, got {tol!r}")
    positive = isinstance(budget, (int, float)) and not isinstance(budget, bool) and 0 < budget < float("inf")
    if match == "time" and not positive:
        raise ValueError(f"{where}: with match = \"time\" {key} is seconds per training step, "
                         f"a number > 0 (e.g. 0.002), got {budget!r}")
    if match != "time" and not (positive and float(budget).is_integer()):
        unit = "parameters" if match == "params" else "multiply-adds per sample"
        raise ValueError(f"{where}: {key} must be a whole number >= 1 (e.g. 2, 300 or 1e4), got {budget!r} "
                         f"(with match = {match!r} the budget counts {unit})")


def _check_symbolic(study: StudyConfig) -> None:
    """A study with [symbolic] (or tasks.N.symbolic) runs the symbolic workflow: check it can."""
    per_task = [study.symbolic_of(n) for n in range(len(study.tasks))]
    if all(s is None for s in per_task):
        return
    from kanlab.symbolic.config import SymbolicConfig  # sympy: only imported when needed

    for n, fields in enumerate(per_task):
        if fields is not None:
            if "seed" in fields:
                raise ValueError(f"symbolic of tasks.{n}: the seed comes from the study's seeds, "
                                 "not from [symbolic]")
            build_checked(SymbolicConfig, fields, f"symbolic of tasks.{n}")
    not_kan = [m.label for m in study.models if m.family != "kan"]
    if not_kan:
        raise ValueError(f"the symbolic workflow needs B-spline KAN models (family 'kan'); "
                         f"not: {', '.join(not_kan)}. Drop [symbolic] to compare other families")


def load_study(source: str | Path, overrides: Sequence[str] = ()) -> StudyConfig:
    """Read a preset or file, apply --set overrides and validate."""
    return parse_study(apply_overrides(read_study(source), overrides))
