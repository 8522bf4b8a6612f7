"""The base functions b of the residual branch y += w * b(x) (KANLinear, RBFKAN): one list that
every layer and every kernel reads (the Python paths b and b', the C kernels their number)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Base:
    """One base function."""

    value: Fn  # b(x)
    slope: Fn  # b'(x), for the hand-written backwards
    code: int  # its number in the C kernels: _native.c's base_value and base_slope (0: no base)
    aux: Fn | None  # what the C kernels read to get b and b' without an exp per element, or None


def _silu_slope(x: torch.Tensor) -> torch.Tensor:
    sig = torch.sigmoid(x)
    return sig * (1 + x * (1 - sig))


BASES: dict[str, Base] = {
    "silu": Base(F.silu, _silu_slope, 1, torch.sigmoid),
    "identity": Base(lambda x: x, torch.ones_like, 2, None),
    "tanh": Base(torch.tanh, lambda x: 1 - torch.tanh(x) ** 2, 3, torch.tanh),
}
