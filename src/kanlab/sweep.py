"""Sweep files: a study plus axes, expanded into every run of the axes' cartesian product.

A sweep file is a study file (see kanlab.config) with an [axes] table. Each point of the axes'
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

An axis key is a dotted path into the study; under `tasks` and `models` a segment picks entries:
an index, `*` (every entry), or a name (the entries with that family or label). An axis is a
non-empty list of values of one kind (numbers, strings, booleans, arrays or tables). Overrides:
`--set key=value` as for studies, and `--set axes.KEY=[...]` replaces one axis (KEY may hold dots).

Everything is resolved and checked before any run starts: an unknown axis or key, an empty axis,
a value of the wrong kind, a budget some family cannot meet, an axis that changes no run.
Each run's coordinates go into its config.json as "sweep": {"budget": its model's budget, "depth":
its model's depth (both None for a model given by its spec), "axes": {axis: value}}, where an axis
that does not change the run (a KAN grid size, for an MLP) has the value None.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanlab.config import MODEL_KEYS, ExperimentConfig, apply_overrides, parse_study, read_study
from kanlab.encodings import EncodingConfig
from kanlab.modelspec import allowed_options
from kanlab.runs import expand
from kanlab.tasks import TaskConfig
from kanlab.train import TrainConfig

ROOTS = ("budget", "depth", "data_seed", "train", "tasks", "models")


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


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    return "table" if isinstance(value, Mapping) else type(value).__name__


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


def _select(entries: list[Any], part: str, key: str, where: str) -> list[Any]:
    if part == "*":
        return entries
    if part.isdigit():
        if int(part) >= len(entries):
            raise ValueError(f"axis {key!r}: {where} has entries 0..{len(entries) - 1}, not {part}")
        return [entries[int(part)]]

    def names(e: Any) -> set[str]:
        family = e.get("family") or str(e.get("spec", "")).split(":", 1)[0]
        return {family, e.get("label", family)}

    found = [e for e in entries if isinstance(e, Mapping) and part in names(e)]
    if not found:
        known = sorted(set().union(*(names(e) for e in entries if isinstance(e, Mapping))))
        raise ValueError(f"axis {key!r}: no {where} entry has family or label {part!r}; "
                         f"use an index, * or one of: {', '.join(known)}")
    return found


def assign(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set an axis value at its dotted path in a raw study dict (in place)."""
    parts = key.split(".")
    nodes: list[Any] = [raw]
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[:depth]) or "the study"
        picked: list[Any] = []
        for node in nodes:
            if isinstance(node, list):
                picked.extend(_select(node, part, key, where))
            elif isinstance(node, dict):
                picked.append(node.setdefault(part, [] if part in ("tasks", "models") else {}))
            else:
                raise ValueError(f"axis {key!r}: {where} is a value, not a table")
        nodes = picked
    for node in nodes:
        if not isinstance(node, dict):
            raise ValueError(f"axis {key!r} ends at a list: pick entries, e.g. {key}.0.<key> or {key}.*.<k>")
        node[parts[-1]] = json.loads(json.dumps(value))


def _lookup(raw: Mapping[str, Any], key: str) -> Any:
    """The base study's value at an axis path (the first selected entry's), or None."""
    node: Any = raw
    for part in key.split("."):
        if isinstance(node, list):
            try:
                node = (_select(node, part, key, "") or [None])[0]
            except ValueError:
                return None
        elif isinstance(node, Mapping):
            node = node.get(part)
        else:
            return None
    return node


def _field_default(key: str) -> Any:
    # TrainConfig and TaskConfig defaults tell a field's kind when the study does not set it.
    parts = key.split(".")
    cls: Any = None
    if parts[0] == "train" or (len(parts) >= 3 and parts[-2] == "train"):
        cls = TrainConfig
    elif parts[0] == "tasks" and len(parts) == 3:
        cls = TaskConfig
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    f = fields.get(parts[-1])
    return None if f is None or f.default is dataclasses.MISSING else f.default


def _names(cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_path(raw: Mapping[str, Any], key: str) -> None:
    """Check that an axis path names a key the study format has (values are checked per point)."""
    root, *rest = key.split(".")

    def need(allowed: Sequence[str], name: str, where: str) -> None:
        if name not in allowed:
            raise ValueError(f"axis {key!r}: unknown key {name!r} in {where}; allowed: {', '.join(allowed)}")

    if root in ("budget", "depth", "data_seed") or (root == "train" and len(rest) == 1):
        if root == "train":
            need(_names(TrainConfig), rest[0], "train")
        elif rest:
            raise ValueError(f"axis {key!r}: {root} is a number, not a table")
        return
    if root == "train" or len(rest) < 2:
        raise ValueError(f"axis {key!r} is incomplete: e.g. train.lr, {root}.0.<key> or {root}.*.<key>")
    entries = _select(list(raw.get(root, [])), rest[0], key, root)
    field, tail = rest[1], rest[2:]
    tables: dict[str, list[str]] = {"train": _names(TrainConfig)}
    if root == "tasks":
        need([*_names(TaskConfig), "train"], field, "a task")
        tables["encoding"] = _names(EncodingConfig)
    else:
        need(MODEL_KEYS, field, "a model")
        for e in entries if field == "options" and tail else []:
            family = e.get("family") or str(e.get("spec", "")).split(":", 1)[0]
            need(allowed_options(family), tail[0], f"the options of {e.get('label', family)} ({family})")
        tables["options"] = [tail[0]] if tail else []
    if tail and (field not in tables or len(tail) > 1):
        raise ValueError(f"axis {key!r} goes too deep: {root}.{rest[0]}.{field} has no key {tail[0]!r}")
    if tail:
        need(tables[field], tail[0], f"{root}.{rest[0]}.{field}")


def check_axis(raw: Mapping[str, Any], key: str, values: Any) -> tuple[Any, ...]:
    """Validate one axis's path and values (kinds only: each point is validated by expansion)."""
    root = key.split(".")[0]
    if root == "seeds":
        raise ValueError("axis 'seeds': seeds already is the seed axis; set seeds = [...] at the top level")
    if root not in ROOTS:
        raise ValueError(f"unknown axis {key!r}: an axis is a dotted study key starting with one of "
                         f"{', '.join(ROOTS)} (e.g. budget, train.lr, models.kan.options.grid_size)")
    check_path(raw, key)
    if not isinstance(values, list):
        raise ValueError(f"axis {key!r} must be a list of values, got {values!r}")
    if not values:
        raise ValueError(f"axis {key!r} is empty: give at least one value")
    kinds = {_kind(v) for v in values}
    if len(kinds) > 1:
        raise ValueError(f"axis {key!r} mixes kinds of values ({', '.join(sorted(kinds))}): {values!r}")
    base = _lookup(raw, key)
    expected = _kind(base if base is not None else _field_default(key))
    if (base is not None or _field_default(key) is not None) and kinds != {expected}:
        raise ValueError(f"axis {key!r}: values must be {expected}s like the study's {key}, got {values!r}")
    leaf = key.split(".")[-1]
    whole = leaf in ("budget", "depth", "data_seed") and root in (leaf, "models")
    least = 0 if leaf == "data_seed" else 1
    for v in values:
        if whole and not (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v == int(v)
                and v >= least):
            raise ValueError(f"axis {key!r}: values must be whole numbers >= {least}, got {v!r}")
    if len(set(json.dumps(v, sort_keys=True) for v in values)) != len(values):
        raise ValueError(f"axis {key!r} repeats a value: {values!r}")
    return tuple(values)


def _expand_point(base: Mapping[str, Any], point: Mapping[str, Any]) -> list[tuple[ExperimentConfig, dict]]:
    # Each run with its model entry's budget and depth (None for a model given by its spec).
    study_raw = _apply(base, point)
    where = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "the base study"
    try:
        study = parse_study(study_raw)
        runs = expand(study)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        raise ValueError(f"sweep point {where}: {err}") from None
    out = []
    per_model = len(study.seeds)
    for n, exp in enumerate(runs):
        entry = study.models[(n // per_model) % len(study.models)]
        assert entry.label == exp.label  # runs.expand orders runs by task, model, seed
        if entry.spec is None:
            out.append((exp, {"budget": entry.budget, "depth": entry.depth}))
        else:  # a model given by its spec has no budget or depth of its own
            out.append((exp, {"budget": None, "depth": None}))
    return out


def parse_sweep(raw: Mapping[str, Any]) -> Sweep:
    """Validate a raw sweep dict and resolve every run of every point.

    Args:
        raw: a study dict with an optional "axes" table (see the module docstring).
    Returns:
        The Sweep; its experiments are distinct (a run shared by several points appears once).
    """
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
        for exp, model in _expand_point(base, point):
            seen.setdefault(exp.run_id, exp)
            found.setdefault(exp.run_id, []).append(point)
            entry[exp.run_id] = model
    merged = {run_id: _merge(found[run_id]) for run_id in seen}
    for key, values in axes:
        if len(values) > 1 and all(c.get(key) is None for c in merged.values()):
            raise ValueError(f"axis {key!r} changes no run (does every model it names give a spec or "
                             "its own value?)")
    coords = {run_id: {**entry[run_id], "axes": merged[run_id]} for run_id in seen}
    return Sweep(name=str(raw.get("name", "study")), axes=axes, experiments=tuple(seen.values()),
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


def load_sweep(source: str | Path, overrides: Sequence[str] = ()) -> Sweep:
    """Read a sweep preset or file, apply --set overrides and resolve it (nothing is written).

    Args:
        source: a preset name (e.g. scaling-quick) or a path to a .toml file.
        overrides: `key=value` items, as for studies, plus `axes.KEY=[...]`.
    Returns:
        The resolved Sweep.
    """
    return parse_sweep(apply_sweep_overrides(read_study(source), overrides))
