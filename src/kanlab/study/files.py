"""Study files as raw dicts: reading a preset or TOML file, `--set` overrides, and the checks
that turn a raw table into a config (build_checked, table, whole_count) with errors naming the key."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _tuples(value: Any) -> Any:
    # TOML arrays arrive as lists; frozen dataclasses want tuples for hashing and equality.
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def build_checked(cls: Any, values: Mapping[str, Any], where: str) -> Any:
    """cls(**values) with a clear error for unknown keys and bad values."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{where} must be a table of keys, got {values!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} in {where}; allowed: {', '.join(known)}")
    try:
        return cls(**{k: _tuples(v) for k, v in values.items()})
    except TypeError as err:
        raise ValueError(f"bad value in {where}: {err}") from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


# A study's name is a folder under --root and part of every report's path: one plain path component.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: object, what: str = "study name") -> str:
    """name itself, or a ValueError saying what a study name may hold (it names a folder under --root)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not allowed: use 1-100 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit (it names a folder under --root)")
    return name


def table(value: Any, where: str) -> dict[str, Any]:
    """A copy of a TOML table, or a ValueError naming where a table was expected."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a table of key = value pairs, got {value!r}")
    return dict(value)


def tables(value: Any, where: str) -> list[dict[str, Any]]:
    """Copies of the tables of a TOML array of tables ([[tasks]], [[models]])."""
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list of tables ([[{where}]] entries), got {value!r}")
    return [table(v, f"{where}.{n}") for n, v in enumerate(value)]


def whole_count(value: Any, where: str) -> int:
    """A positive whole number (1e4 is one), or a ValueError naming the key."""
    whole = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
    if not whole or value < 1:
        raise ValueError(f"{where} must be a whole number >= 1 (e.g. 2, 300 or 1e4), got {value!r}")
    return int(value)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: take it as a string


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides to a raw study dict (a new dict; raw is untouched)."""
    out = json.loads(json.dumps(raw))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r} (e.g. --set train.steps=100)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = out
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    where = ".".join(parts[:depth]) or "the study"
                    raise ValueError(f"--set {key}: {where} has entries 0..{len(node) - 1}, not {part!r}")
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            raise ValueError(f"--set {key}: give an index into the list, e.g. {key}.0.<field>")
        node[last] = _parse_value(text)
    return out


def preset_names() -> list[str]:
    """Names of the presets shipped in the package."""
    files = resources.files("kanlab.presets").iterdir()
    return sorted(p.name[: -len(".toml")] for p in files if p.name.endswith(".toml"))


def read_study(source: str | Path) -> dict[str, Any]:
    """Raw dict of a preset name or a path to a TOML file."""
    path = Path(source)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"no study file at {path}; presets: {', '.join(preset_names())}")
        text = path.read_text()
    elif str(source) in preset_names():
        text = resources.files("kanlab.presets").joinpath(f"{source}.toml").read_text()
    else:
        raise ValueError(f"unknown preset {str(source)!r}; presets: {', '.join(preset_names())} "
                         "(or give a path to a .toml file)")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: invalid TOML: {err}") from None
