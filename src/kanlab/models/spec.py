"""Model configs and the spec-string grammar: what a Stack of layers is, as data and as text.

Spec grammar (parse_spec reads it, format_spec writes it; the two round-trip):

    spec    = block ("+" block)*                 consecutive blocks share the boundary width
    block   = family ":" widths [":" options]    family: a key of FAMILIES
    widths  = int ("-" int)+                     input width first, output width last
    options = option ("," option)*
    option  = key "=" value | compact            compact: letters+digits pairs, "g5k3" = g=5,k=3
    value   = int | float | true | false | none | word | "(" value ("," value)* ")"

Aliases: g = grid_size, k = order, act = activation. Examples:

    kan:2-5-1:g5k3                             B-spline KAN, grid 5, cubic
    kan:2-5-1:g=5,k=3,base=none,bias=false     no base branch, no bias
    kan:2-5-1:grid_range=(-2.0,2.0)
    mlp:1-64-64-1:act=tanh                     tanh hidden layers, linear output layer
    kan:2-8:g=5+mlp:8-16-1:act=silu            KAN layers, then an MLP head

In an "mlp" block the last layer is always linear (activation "identity"); with act=sine the
first layer of the whole stack gets SIREN's first-layer init (Dense(first=True)). Everywhere
(specs, dicts, TOML) the string "none" means None.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, SupportsIndex

from kanlab.models.families import FAMILIES as FAMILIES
from kanlab.models.families import Family as Family
from kanlab.models.families import LayerClass as LayerClass
from kanlab.models.families import allowed_options as allowed_options
from kanlab.models.families import layer_args as layer_args


def as_int(value: object) -> int | None:
    if type(value) is int:  # the common case, without the slow Protocol check below
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None  # 1e6 is a fine budget
    return int(value) if isinstance(value, SupportsIndex) else None


def _check_widths(widths: object) -> tuple[int, ...]:
    items = list(widths) if isinstance(widths, Iterable) and not isinstance(widths, (str, bytes)) else []
    ints = [w for w in map(as_int, items) if w is not None and w >= 1]
    if len(ints) < 2 or len(ints) != len(items):
        raise ValueError(f"widths must be >= 2 positive integers (input, ..., output), got {widths!r}")
    return tuple(ints)


def _plain(value: Any) -> Any:
    # The one in-memory form of an option value: tuples for lists, None for "none".
    if isinstance(value, str) and value.lower() == "none":
        return None
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True)
class BlockConfig:
    """Consecutive layers of one family: widths (input first) and options shared by every layer."""

    family: str
    widths: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        allowed, fam = allowed_options(self.family), self.family
        object.__setattr__(self, "widths", _check_widths(self.widths))
        for key in self.options:
            if key in FAMILIES[fam].managed:
                raise ValueError(f"option {key!r} of family {fam!r} is set per layer by the model builder")
            if key not in allowed:
                raise ValueError(f"unknown option {key!r} for family {fam!r}; allowed: {', '.join(allowed)}")
        object.__setattr__(self, "options", {k: _plain(v) for k, v in self.options.items()})
        layer_args(fam, self.widths, self.options, True)  # per-layer rules check their options


@dataclass(frozen=True)
class ModelConfig:
    """A model as blocks applied in order; each block starts at the width the previous one ends at."""

    blocks: tuple[BlockConfig, ...]

    def __post_init__(self) -> None:
        blocks = tuple(self.blocks)
        if not blocks or not all(isinstance(b, BlockConfig) for b in blocks):
            raise ValueError(f"a ModelConfig needs one or more BlockConfig blocks, got {self.blocks!r}")
        for i, (prev, nxt) in enumerate(pairwise(blocks)):
            if prev.widths[-1] != nxt.widths[0]:
                raise ValueError(
                    f"block {i + 1} ({nxt.family}) starts at width {nxt.widths[0]} but block {i} "
                    f"({prev.family}) ends at width {prev.widths[-1]}; they must be equal"
                )
        object.__setattr__(self, "blocks", blocks)

    @classmethod
    def single(cls, family: str, widths: Sequence[int], **options: Any) -> ModelConfig:
        """A one-block config, e.g. ModelConfig.single("kan", [2, 5, 1], grid_size=5)."""
        return cls((BlockConfig(family, _check_widths(widths), options),))

    @property
    def in_features(self) -> int:
        """Input width of the model."""
        return self.blocks[0].widths[0]

    @property
    def out_features(self) -> int:
        """Output width of the model."""
        return self.blocks[-1].widths[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-ready data: lists for tuples, "none" for None (TOML has no null)."""
        def out(v: Any) -> Any:
            return "none" if v is None else [out(x) for x in v] if isinstance(v, tuple) else v
        blocks = [(b.family, list(b.widths), {k: out(v) for k, v in b.options.items()}) for b in self.blocks]
        return {"blocks": [{"family": f, "widths": w, "options": o} for f, w, o in blocks]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of to_dict: {"blocks": [{"family", "widths", "options"?}, ...]}."""
        keys = {"family", "widths", "options"}
        if not isinstance(data, Mapping) or set(data) != {"blocks"}:
            raise ValueError(f"expected {{'blocks': [...]}}, got {data!r}")
        for b in data["blocks"]:
            if not isinstance(b, Mapping) or not {"family", "widths"} <= set(b) <= keys:
                raise ValueError(f"a block needs 'family', 'widths' and optionally 'options', got {b!r}")
        return cls(tuple(
            BlockConfig(b["family"], _check_widths(b["widths"]), b.get("options", {})) for b in data["blocks"]
        ))


# ---- spec strings ----------------------------------------------------------------------------
ALIASES = {"g": "grid_size", "k": "order", "act": "activation"}
_SHORT = {full: short for short, full in ALIASES.items()}
GRAMMAR = (
    "grammar: family:widths[:options], blocks joined by '+', widths by '-', options key=value "
    "joined by ',' (aliases g=grid_size, k=order, act=activation; 'g5k3' = g=5,k=3), "
    "e.g. 'kan:2-5-1:g5k3' or 'kan:2-8:g=5+mlp:8-16-1:act=silu'"
)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_KEYWORDS = {"true": True, "false": False, "none": None}


def _parse_value(text: str) -> Any:
    if text.startswith("(") and text.endswith(")"):
        inner = text[1:-1].strip()
        return tuple(_parse_value(p.strip()) for p in inner.split(",")) if inner else ()
    if text.lower() in _KEYWORDS:
        return _KEYWORDS[text.lower()]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _WORD.fullmatch(text):
        return text
    raise ValueError(f"cannot read the value {text!r}")


def _parse_options(text: str) -> dict[str, Any]:
    tokens, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):  # split at the commas outside parentheses
        depth += (ch == "(") - (ch == ")")
        if depth not in (0, 1):
            raise ValueError("unbalanced or nested parentheses")
        if ch == "," and depth == 0:
            tokens.append(text[start:i].strip())
            start = i + 1
    if depth:
        raise ValueError("unbalanced parentheses")
    options: dict[str, Any] = {}
    for token in tokens:
        if "=" in token:
            key, raw = (s.strip() for s in token.split("=", 1))
            if not key.isidentifier() or not raw:
                raise ValueError(f"bad option {token!r}")
            pairs = [(key, _parse_value(raw))]
        elif re.fullmatch(r"(?:[a-z]+\d+)+", token):
            pairs = [(key, int(num)) for key, num in re.findall(r"([a-z]+)(\d+)", token)]
        else:
            raise ValueError(f"bad option {token!r}, expected key=value or a compact form like g5k3")
        for key, value in pairs:
            if ALIASES.get(key, key) in options:
                raise ValueError(f"option {ALIASES.get(key, key)!r} given twice")
            options[ALIASES.get(key, key)] = value
    return options


def parse_spec(spec: str) -> ModelConfig:
    """Read a spec string (grammar in the module docstring), e.g. "kan:2-5-1:g5k3"."""
    blocks = []
    for text in re.split(r"\+(?=\s*[A-Za-z])", spec):  # a "+" before a family name, not 1e+3
        parts = [p.strip() for p in text.split(":", 2)]
        try:
            if len(parts) < 2 or not all(parts):
                raise ValueError(f"block {text.strip()!r} is not family:widths[:options]")
            if not all(re.fullmatch(r"[0-9]+", w.strip()) for w in parts[1].split("-")):
                raise ValueError(f"widths {parts[1]!r} are not integers joined by '-'")
            options = _parse_options(parts[2]) if len(parts) == 3 else {}
        except ValueError as err:
            raise ValueError(f"bad model spec {spec!r}: {err}; {GRAMMAR}") from None
        try:
            widths = _check_widths([int(w) for w in parts[1].split("-")])
            blocks.append(BlockConfig(parts[0], widths, options))
        except ValueError as err:
            raise ValueError(f"bad model spec {spec!r}: {err}") from None
    try:
        return ModelConfig(tuple(blocks))
    except ValueError as err:
        raise ValueError(f"bad model spec {spec!r}: {err}") from None


def _format_value(v: Any, nested: bool = False) -> str:
    if v is None or isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and math.isfinite(v):
        return repr(v).replace("e+", "e")  # "+" joins blocks
    if isinstance(v, tuple) and not nested:
        return "(" + ",".join(_format_value(x, True) for x in v) + ")"
    if isinstance(v, str) and _WORD.fullmatch(v) and v.lower() not in _KEYWORDS:
        return v
    raise ValueError(f"option value {v!r} cannot be written in a model spec")


def format_spec(cfg: ModelConfig) -> str:
    """Write cfg as a spec string that parse_spec reads back to an equal config."""
    def block(b: BlockConfig) -> str:
        opts = ",".join(f"{_SHORT.get(k, k)}={_format_value(v)}" for k, v in b.options.items())
        return f"{b.family}:{'-'.join(map(str, b.widths))}" + (f":{opts}" if opts else "")
    return "+".join(block(b) for b in cfg.blocks)


