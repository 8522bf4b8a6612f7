"""Sweep axes: dotted keys into a study, checked before anything runs, and set per point.

An axis key is a path into a raw study dict (see kanlab.study.sweep): `budget`, `depth`, `match`,
`match_tol`, `data_seed`, `train.<field>`, or `tasks.<pick>.<key>[.<key>]` /
`models.<pick>.<key>[.<key>]`, where a pick is
an index, `*` (every entry) or a family or label name. check_axis validates a path and its values'
kinds; assign writes one value at a path.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from kanlab.models.spec import allowed_options
from kanlab.study.config import MODEL_KEYS
from kanlab.tasks import TaskConfig
from kanlab.tasks.encodings import EncodingConfig
from kanlab.training.config import TrainConfig

SCALARS = ("budget", "depth", "match", "match_tol", "data_seed")  # top-level study keys that hold one value
ROOTS = (*SCALARS, "train", "tasks", "models")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    return "table" if isinstance(value, Mapping) else type(value).__name__


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

    if root in SCALARS or (root == "train" and len(rest) == 1):
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
        need([*_names(TaskConfig), "train", "budget"], field, "a task")
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


def _timed(raw: Mapping[str, Any]) -> bool:
    # Whether some model may be matched by time, so that its budget is seconds, not a count.
    models = [m for m in raw.get("models", []) if isinstance(m, Mapping)]
    return raw.get("match") == "time" or any(m.get("match") == "time" for m in models)


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
    whole = leaf in ("budget", "depth", "data_seed") and root in (leaf, "models", "tasks")
    if leaf == "budget" and _timed(raw):  # seconds per step: numbers > 0, checked per point
        whole = False
    least = 0 if leaf == "data_seed" else 1
    for v in values:
        if whole and not (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v == int(v)
                and v >= least):
            raise ValueError(f"axis {key!r}: values must be whole numbers >= {least}, got {v!r}")
    if len(set(json.dumps(v, sort_keys=True) for v in values)) != len(values):
        raise ValueError(f"axis {key!r} repeats a value: {values!r}")
    return tuple(values)
