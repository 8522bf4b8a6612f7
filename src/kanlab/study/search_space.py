"""Search spaces of `kanlab tune`: which keys a trial may change for a model, and over what.

A tune file's [search.<family or label>] table maps keys to one of

    [a, b, c]                               a choice (numbers, strings, booleans or arrays)
    { low = 1e-3, high = 0.1, log = true }  a range: of integers when the key takes integers
                                            (`step = 2` for a stepped one), else of floats
    5                                       a fixed value: set, not searched

A key is `depth` (hidden layers: the widths then come from match_params at the model's parameter
budget, so every trial of a family has the same size), a TrainConfig field (lr, optimizer,
batch_size, schedule, weight_decay, grid_update_every, ...) or an option of the model's family
(grid_size, order, degree, frequencies, activation, ...). Keys that set what a trial costs or
which seed it uses are not searchable (NOT_SEARCHABLE).

Each family starts from DEFAULTS; a key that a model fixes itself (in its options or train) is
left out of the defaults, and a [search] table replaces the defaults key by key.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from kanlab.models.spec import FAMILIES, allowed_options
from kanlab.training.config import TrainConfig

NOT_SEARCHABLE = {
    "seed": "trials train on tune.search_seeds and the verdict on the study's seeds",
    "steps": "every trial of a family trains for the same number of steps",
    "grid_stages": "it changes the number of steps a trial trains for",
    "eval_every": "the pruner compares trials at the same evaluation steps",
    "dtype": "every trial of a family runs in the same precision",
    "check_finite": "it changes no result",
    "path": "it changes no result, only which kernels compute it",
}
_LR = {"low": 1e-3, "high": 0.1, "log": True}
_COMMON = {"lr": _LR, "depth": {"low": 1, "high": 3}, "schedule": ["constant", "cosine"]}
# Sensible starting points per family, checked against each model's budget before any trial runs.
DEFAULTS: dict[str, dict[str, Any]] = {
    "kan": {**_COMMON, "grid_size": {"low": 3, "high": 12}, "order": [2, 3]},
    "rbf": {**_COMMON, "grid_size": {"low": 3, "high": 12}},
    "chebyshev": {**_COMMON, "degree": {"low": 2, "high": 8}},
    "fourier": {**_COMMON, "frequencies": {"low": 2, "high": 10}},
    "tanhquad": dict(_COMMON),
    "mlp": {**_COMMON, "lr": {"low": 1e-4, "high": 3e-2, "log": True}},  # SIREN wants lr ~1e-3
}
CORNERS = 4096  # at most this many corner points of a space are checked against the budget


@dataclass(frozen=True)
class Dimension:
    """One searched key: a choice of values, or a range (low, high, log, step)."""

    key: str
    kind: str  # "choice", "int" or "float"
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None

    def corners(self, *, ends: bool = False) -> list[Any]:
        """The values checked before any trial runs: every choice, every value of a short int range
        (unless ends), else both ends."""
        if self.kind == "choice":
            return list(self.choices)
        short = not self.log and (self.high - self.low) / (self.step or 1) < 64
        if self.kind == "int" and short and not ends:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        return [int(self.low), int(self.high)] if self.kind == "int" else [self.low, self.high]

    def describe(self) -> str:
        """Short text for reports: `3 to 12`, `1e-3 to 0.1 (log)`, `constant | cosine`."""
        if self.kind == "choice":
            return " | ".join(json.dumps(c) if not isinstance(c, str) else c for c in self.choices)
        extra = " (log)" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"{self.low:g} to {self.high:g}{extra}"

    def to_optuna(self) -> Any:
        """The Optuna distribution (choices that are not scalars travel as JSON text)."""
        from optuna import distributions as d

        if self.kind == "choice":
            return d.CategoricalDistribution([_scalar(c) for c in self.choices])
        if self.kind == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return d.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def decode(self, value: Any) -> Any:
        """A value Optuna suggested, back in the form the key takes."""
        if self.kind == "choice" and isinstance(value, str) and value not in self.choices:
            return json.loads(value)  # a non-scalar choice, sent as JSON text by to_optuna
        return value


def _scalar(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _train_kind(name: str) -> str:
    hint = str({f.name: f.type for f in dataclasses.fields(TrainConfig)}[name])
    return "int" if hint.startswith("int") else "float" if hint.startswith("float") else "choice"


def _option_kind(family: str, name: str) -> str:
    hint = inspect.signature(FAMILIES[family].layer).parameters[name].annotation
    hint = hint if isinstance(hint, str) else getattr(hint, "__name__", "")
    return "int" if hint.startswith("int") else "float" if hint.startswith("float") else "choice"


@cache
def key_kind(family: str, key: str) -> tuple[str, str]:
    """(where, kind) of a search key: where is "depth", "train" or "options"; kind as Dimension.kind."""
    if key == "depth":
        return "depth", "int"
    train = [f.name for f in dataclasses.fields(TrainConfig)]
    options = allowed_options(family)
    if key in NOT_SEARCHABLE:
        raise ValueError(f"{key!r} is not searchable: {NOT_SEARCHABLE[key]}")
    if key in train:
        return "train", _train_kind(key)
    if key in options:
        return "options", _option_kind(family, key)
    allowed = ["depth", *(k for k in (*train, *options) if k not in NOT_SEARCHABLE)]
    raise ValueError(f"unknown search key {key!r} for family {family!r}; allowed: {', '.join(allowed)}")


def dimension(family: str, key: str, value: Any, where: str) -> Dimension | None:
    """Parse one search entry (None for a fixed value); `where` names it in errors (search.kan.lr)."""
    try:
        _, kind = key_kind(family, key)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{where} is an empty choice: give at least one value, e.g. {key} = [a, b]")
        if len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            raise ValueError(f"{where} = {value!r} repeats a value")
        return Dimension(key, "choice", tuple(value))
    if not isinstance(value, Mapping):
        return None
    bad = sorted(set(value) - {"low", "high", "log", "step"})
    if bad or "low" not in value or "high" not in value:
        raise ValueError(f"{where}: a range is {{ low = ..., high = ... }} with optional log and step; "
                         f"got {dict(value)!r}")
    if kind == "choice":
        raise ValueError(f"{where}: {key} takes one of a set of values, not a range: give a list, "
                         f"e.g. {key} = [a, b]")
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    numbers = [v for v in (low, high, step) if v is not None]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise ValueError(f"{where}: low, high and step must be numbers, got {dict(value)!r}")
    if kind == "int" and not all(float(v).is_integer() for v in numbers):
        raise ValueError(f"{where}: {key} takes integers; got {dict(value)!r}")
    if low > high:
        raise ValueError(f"{where} is inverted: low {low} > high {high}; swap them")
    if low == high:
        raise ValueError(f"{where} is empty: low = high = {low}; widen it, or write {key} = {low} to fix it")
    if not isinstance(log, bool) or (log and low <= 0):
        raise ValueError(f"{where}: a log range needs log = true and low > 0, got {dict(value)!r}")
    if step is not None and (step <= 0 or log):
        raise ValueError(f"{where}: step must be > 0 and cannot go with log, got {dict(value)!r}")
    return Dimension(key, kind, low=float(low), high=float(high), log=log,
                     step=None if step is None else float(step))


@dataclass(frozen=True)
class Space:
    """A model's search space: searched dimensions and fixed values, each by key."""

    dims: tuple[Dimension, ...]
    fixed: Mapping[str, Any]

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions by key (sorted, so trials suggest in one order)."""
        return {d.key: d.to_optuna() for d in sorted(self.dims, key=lambda d: d.key)}

    def decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's values by key: Optuna's suggestions decoded, and the fixed values."""
        by_key = {d.key: d for d in self.dims}
        return {**self.fixed, **{k: by_key[k].decode(v) for k, v in params.items()}}

    def corner_points(self, keys: Collection[str], *, ends: bool = False) -> list[dict[str, Any]]:
        """Every combination of the corners of these keys' dimensions, with their fixed values (past
        CORNERS combinations, one dimension at a time); ends: only the two ends of integer ranges."""
        fixed = {k: v for k, v in self.fixed.items() if k in keys}
        corners = [(d.key, d.corners(ends=ends)) for d in self.dims if d.key in keys]
        if math.prod(len(values) for _, values in corners) <= CORNERS:
            names = [k for k, _ in corners]
            return [{**fixed, **dict(zip(names, combo, strict=True))}
                    for combo in itertools.product(*(v for _, v in corners))]
        first = {k: v[0] for k, v in corners}
        return [{**fixed, **first, k: value} for k, values in corners for value in values]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (part of a study's fingerprint and of the report)."""
        return {"search": {d.key: d.describe() for d in self.dims}, "fixed": dict(self.fixed),
                "dims": [dataclasses.asdict(d) for d in self.dims]}


def build_space(family: str, label: str, tables: Mapping[str, Any], fixed_by_model: set[str],
                *, spec_given: bool) -> Space:
    """The search space of one model entry.

    Args:
        family: the model's family; label: its label (a [search.<label>] table applies to it alone).
        tables: the tune file's [search] table.
        fixed_by_model: keys the model sets itself (options, train): left out of the defaults.
        spec_given: the model is given by a spec, so its widths and options are fixed.
    Returns:
        The Space: DEFAULTS[family], then [search.<family>], then [search.<label>], key by key.
    """
    defaults = {k: v for k, v in DEFAULTS.get(family, {}).items() if k not in fixed_by_model}
    if spec_given:
        defaults = {k: v for k, v in defaults.items() if key_kind(family, k)[0] == "train"}
    merged: dict[str, tuple[Any, str]] = {k: (v, f"the default search of {family}: {k}")
                                          for k, v in defaults.items()}
    for name in (family, label):
        table = tables.get(name, {})
        if not isinstance(table, Mapping):
            raise ValueError(f"search.{name} must be a table of key = values, got {table!r}")
        merged.update({k: (v, f"search.{name}.{k}") for k, v in table.items()})
    dims, fixed = [], {}
    for key, (value, where) in merged.items():
        dim = dimension(family, key, value, where)
        if spec_given and key_kind(family, key)[0] != "train":
            raise ValueError(f"{where}: model {label!r} is given by a spec, so its widths and options are "
                             "fixed; give it a family and the study a budget to search them")
        if dim is None:
            fixed[key] = value
        else:
            dims.append(dim)
    return Space(tuple(sorted(dims, key=lambda d: d.key)), fixed)
