"""Input checks and small helpers shared by every layer family."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def check_input(x: torch.Tensor, in_features: int, *, check_finite: bool, name: str,
                dtype: torch.dtype | None = None) -> None:
    """Raise a ValueError naming the problem when x is not a finite (batch, in_features) tensor.

    Args:
        x: the layer input.
        in_features: the width the layer was built for.
        check_finite: also scan for NaN/inf (one reduction over x; pass False to skip it).
        name: the layer's class name, used in the message.
        dtype: the dtype of the layer's parameters, which x must have outside autocast (a TypeError
            otherwise: each path fails its own way, or silently computes in another precision).
    """
    if dtype is not None and x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"{name} got a {x.dtype} input but its parameters are {dtype}: convert the input (x.to({dtype})) "
            "or the model (model.float() or model.double(); layers run in float32 or float64)"
        )
    if x.dim() != 2 or x.shape[1] != in_features:
        raise ValueError(
            f"{name} expects input of shape (batch, {in_features}), got {tuple(x.shape)}; "
            f"reshape to (-1, {in_features}) or build the layer with in_features={x.shape[-1]}"
        )
    # A finite sum means every element is finite (a NaN or an infinity makes it NaN or infinite),
    # in one reduction: isfinite(x).all() is composite and costs several times more
    # (benchmarks/README.md). A sum that overflowed is checked element by element. On x.detach(),
    # so that autograd records nothing and keeps no reference to x.
    if check_finite and not _all_finite(x.detach()):
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(
            f"{name} got a non-finite input (first at index {bad}); clean the data, "
            "or pass check_finite=False to skip this check"
        )


def _all_finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def check_choice(value: object, allowed: tuple[str, ...] | list[str], what: str) -> None:
    """Raise a ValueError listing the allowed names when value is not one of them."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(map(str, allowed))}")


def check_positive_int(value: object, what: str, minimum: int = 1) -> int:
    """Return value as int, or raise a ValueError naming it when it is not an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def check_flags(**flags: object) -> None:
    """Raise a ValueError naming the first flag that is not a bool."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")


def check_widths(in_features: int, out_features: int) -> tuple[int, int]:
    """(in_features, out_features), each checked to be a positive int."""
    return check_positive_int(in_features, "in_features"), check_positive_int(out_features, "out_features")


class SizedLayer(nn.Module):
    """What the Chebyshev and Fourier layers set up alike: checked widths, size option and flags.

    Errors come in this order: the widths, each size (name=(value, minimum), set as an attribute
    of that name), the flags. Creates no parameters: a subclass creates them after this.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, check_finite: bool,
                 **sizes: tuple[object, int]) -> None:
        super().__init__()
        self.in_features, self.out_features = check_widths(in_features, out_features)
        for name, (value, minimum) in sizes.items():
            setattr(self, name, check_positive_int(value, name, minimum))
        check_flags(bias=bias, check_finite=check_finite)
        self.check_finite = check_finite


def layer_repr(layer: Any, **options: object) -> str:
    """extra_repr of the RBF, Chebyshev, Fourier and tanh-quadratic layers: widths, options, flags."""
    opts = [f"{k}={v}" for k, v in options.items()]
    flags = [f"bias={layer.bias is not None}", f"check_finite={layer.check_finite}"]
    return ", ".join([str(layer.in_features), str(layer.out_features), *opts, *flags])
