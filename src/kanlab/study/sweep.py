"""Sweep files: a study plus axes, expanded into every run of the axes' cartesian product.

A sweep file is a study file (see kanlab.study.config) with an [axes] table. Each point of the axes'
cartesian product is a study, expanded into runs as `kanlab run` would: budget-matched models get
widths from match_params at that point's budget, so families meet at equal parameter counts. All
runs form one experiment named after the sweep; `seeds` stays the seed axis.

    name = "kan-vs-mlp-scaling"
    seeds = [0, 1, 2]
    depth = 1
    [train]
    steps = 500
    [[tasks]]
    name = "zigzag"
    [[models]]
    label = "KAN"
    family = "kan"
    options = { grid_size = 5 }
    [[models]]
    label = "MLP"
    family = "mlp"
    [axes]
    budget = [300, 1000, 3000]                   # study keys: budget, depth, data_seed
    "train.lr" = [0.003, 0.01]                   # any TrainConfig field
    "models.kan.options.grid_size" = [5, 10]     # entries by index (0), every entry (*), family or label
    "tasks.*.n_train" = [100, 1000]

An axis key is a dotted path into the study (kanlab.study.axes checks and sets them); under `tasks`
and `models` a segment picks entries: an index, `*` (every entry), or a name (the entries with that
family or label). An axis is a non-empty list of values of one kind (numbers, strings, booleans,
arrays or tables). Overrides:
`--set key=value` as for studies, and `--set axes.KEY=[...]` replaces one axis (KEY may hold dots).

Everything is resolved and checked before any run starts: an unknown axis or key, an empty axis,
a value of the wrong kind, a budget some family cannot meet, an axis that changes no run.
Each run's coordinates go into its config.json as "sweep": {"budget": its model's budget, "depth":
its model's depth (both None for a model given by its spec), "axes": {axis: value}}, where an axis
that does not change the run (a KAN grid size, for an MLP) has the value None.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanlab.study.axes import assign, check_axis
from kanlab.study.config import ExperimentConfig, apply_overrides, check_name, parse_study, read_study
from kanlab.study.experiments import expand


@dataclass(frozen=True)
class Sweep:
    """A resolved sweep: its axes, its distinct runs and each run's coordinates."""

    name: str
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    experiments: tuple[ExperimentConfig, ...]
    coords: Mapping[str, Mapping[str, Any]]  # run_id -> {"budget", "depth", "axes": {axis: value or None}}
    points: int
    description: str = ""

    def annotations(self) -> dict[str, dict[str, Any]]:
        """Per run id, what the driver adds to the run's config.json: {"sweep": coordinates}."""
        return {run_id: {"sweep": dict(c)} for run_id, c in self.coords.items()}


def apply_sweep_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply --set overrides to a raw sweep dict; `axes.KEY=[...]` sets one axis (KEY may hold dots)."""
    out = json.loads(json.dumps(raw))
    study_items = []
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key.startswith("axes.") and "=" in item:
            value = apply_overrides({}, [f"v={item.split('=', 1)[1]}"])["v"]
            out.setdefault("axes", {})[key[len("axes."):]] = value
        else:
            study_items.append(item)
    return apply_overrides(out, study_items)


def _expand_point(base: Mapping[str, Any], point: Mapping[str, Any],
                  threads: int | None) -> list[tuple[ExperimentConfig, dict]]:
    # Each run with its model entry's budget and depth (None for a model given by its spec).
    study_raw = _apply(base, point)
    where = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "the base study"
    try:
        study = parse_study(study_raw)
        runs = expand(study, threads=threads)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        raise ValueError(f"sweep point {where}: {err}") from None
    out = []
    per_model = len(study.seeds)
    for n, exp in enumerate(runs):
        entry = study.models[(n // per_model) % len(study.models)]
        assert entry.label == exp.label  # runs.expand orders runs by task, model, seed
        if exp.match is not None:  # the budget it was matched to on its task
            out.append((exp, {"budget": exp.match["budget"], "depth": exp.match["depth"]}))
        else:  # a model given by its spec has no budget or depth of its own
            out.append((exp, {"budget": None, "depth": None}))
    return out


def parse_sweep(raw: Mapping[str, Any], *, threads: int | None = None) -> Sweep:
    """Validate a raw sweep dict and resolve every run of every point.

    Args:
        raw: a study dict with an optional "axes" table (see the module docstring).
        threads: torch threads each run computes on (see runs.expand).
    Returns:
        The Sweep; its experiments are distinct (a run shared by several points appears once).
    """
    name = check_name(raw.get("name", "study"), "sweep name")
    axes_raw = raw.get("axes", {})
    if not isinstance(axes_raw, Mapping):
        raise ValueError(f"[axes] must be a table of key = [values], got {axes_raw!r}")
    base = {k: v for k, v in raw.items() if k != "axes"}
    axes = tuple((key, check_axis(base, key, values)) for key, values in axes_raw.items())
    seen: dict[str, ExperimentConfig] = {}
    found: dict[str, list[dict[str, Any]]] = {}
    entry: dict[str, dict[str, Any]] = {}
    points = list(itertools.product(*(values for _, values in axes)))
    for values in points:
        point = dict(zip((key for key, _ in axes), values, strict=True))
        for exp, model in _expand_point(base, point, threads):
            seen.setdefault(exp.run_id, exp)
            found.setdefault(exp.run_id, []).append(point)
            entry[exp.run_id] = model
    merged = {run_id: _merge(found[run_id]) for run_id in seen}
    for key, values in axes:
        if len(values) > 1 and all(c.get(key) is None for c in merged.values()):
            raise ValueError(f"axis {key!r} changes no run (does every model it names give a spec or "
                             "its own value?)")
    coords = {run_id: {**entry[run_id], "axes": merged[run_id]} for run_id in seen}
    return Sweep(name=name, axes=axes, experiments=tuple(seen.values()),
                 coords=coords, points=len(points), description=str(raw.get("description", "")))


def _apply(base: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for key, value in point.items():
        assign(out, key, value)
    return out


def _merge(points: list[dict[str, Any]]) -> dict[str, Any]:
    # A coordinate is kept when every point that makes this run agrees on it, else None: that axis
    # does not change this run (e.g. a KAN grid size, for an MLP).
    first = points[0]
    same = {k: v for k, v in first.items() if all(json.dumps(p.get(k)) == json.dumps(v) for p in points)}
    return {k: same.get(k) for k in first}


def load_sweep(source: str | Path, overrides: Sequence[str] = (), *, threads: int | None = None) -> Sweep:
    """Read a sweep preset or file, apply --set overrides and resolve it (nothing is written).

    Args:
        source: a preset name (e.g. scaling-quick) or a path to a .toml file.
        overrides: `key=value` items, as for studies, plus `axes.KEY=[...]`.
        threads: torch threads each run computes on (see runs.expand).
    Returns:
        The resolved Sweep.
    """
    return parse_sweep(apply_sweep_overrides(read_study(source), overrides), threads=threads)
