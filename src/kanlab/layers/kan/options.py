"""KANLinear's option set: one dataclass that the constructor, options(), num_params, num_flops
and subset's rebuild all read, so a new option is added in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KANOptions:
    """KANLinear's options besides the widths, device and dtype, with the constructor's defaults."""

    grid_size: int = 5
    order: int = 3
    grid_range: tuple[float, float] = (-1.0, 1.0)
    bias: bool = True
    spline_weight: bool = True
    base: str | None = "silu"
    base_weight: bool = True
    init: str = "pykan"
    check_finite: bool = True
    path: str = "auto"


NAMES = tuple(f.name for f in dataclasses.fields(KANOptions))
DEFAULTS = {f.name: f.default for f in dataclasses.fields(KANOptions)}
POSITIONAL = ("in_features", "out_features", "grid_size", "order", "grid_range")  # the rest keyword-only
FLAGS = ("bias", "spline_weight", "base_weight")  # options that say whether a parameter exists
_ALL = {"in_features": None, "out_features": None, **DEFAULTS, "device": None, "dtype": None}


def options_of(layer: Any) -> dict[str, Any]:
    """A built layer's options as it is now (flags from its parameters, grid_size as refine left it)."""
    return {name: (getattr(layer, name) is not None) if name in FLAGS else getattr(layer, name)
            for name in NAMES}


def constructor_options(*args: Any, **options: Any) -> dict[str, Any]:
    """Every argument of KANLinear(*args, **options), defaults filled in; keys it does not take dropped.

    (Not Signature.bind: budget matching counts many candidate stacks, and bind costs ~20 us.)
    """
    if len(args) > len(POSITIONAL):
        raise TypeError(f"KANLinear takes at most {len(POSITIONAL)} positional arguments, got {len(args)}")
    out = dict(_ALL)
    out.update(zip(POSITIONAL, args, strict=False))  # the first len(args) names
    out.update((k, v) for k, v in options.items() if k in out)
    return out


def num_params(in_features: int, out_features: int, *args: Any, **options: Any) -> int:
    """Parameter count of KANLinear(in_features, out_features, *args, **options), without building it."""
    opt = constructor_options(in_features, out_features, *args, **options)
    weighted_base = opt["base"] is not None and opt["base_weight"]
    per_edge = opt["grid_size"] + opt["order"] + int(opt["spline_weight"]) + int(weighted_base)
    return in_features * out_features * per_edge + (out_features if opt["bias"] else 0)


def num_flops(in_features: int, out_features: int, *args: Any, local: bool = False, **options: Any) -> int:
    """Forward multiply-adds per sample (see KANLinear.num_flops)."""
    opt = constructor_options(in_features, out_features, *args, **options)
    spline = opt["order"] + 1 if local else opt["grid_size"] + opt["order"]
    return in_features * out_features * (spline + int(opt["base"] is not None and opt["base_weight"]))
