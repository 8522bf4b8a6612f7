"""kanlab: Kolmogorov-Arnold Networks and the MLPs they are measured against.

The public names are loaded on first use (PEP 562), so `import kanlab` imports nothing heavy: the
`kanlab` command starts in milliseconds and can handle a Ctrl-C while it imports torch.
"""

from __future__ import annotations

import importlib
import os

# torch's OpenMP threads spin after each parallel region by default, waiting for the next one. On
# a machine whose cores are busy with other work that spinning takes the CPU from the thread the
# region waits for: a small model's step on 2 threads took 65 ms beside other jobs instead of
# 1.4 ms (benchmarks/README.md, "Busy machines"). Passive waiting sleeps instead. OpenMP reads
# the setting once, when torch loads it: this works when kanlab is imported before torch (the
# `kanlab` command, its workers) and is inherited by every process started from here. A user's
# own OMP_WAIT_POLICY is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (tens of ms); type checkers know it
if TYPE_CHECKING:
    from typing import Any

    from kanlab import plot
    from kanlab.budget import match_params
    from kanlab.layers import RBFKAN, ChebyshevKAN, Dense, FourierKAN, KANLinear, TanhQuadratic
    from kanlab.models import (
        KAN,
        MLP,
        BlockConfig,
        ModelConfig,
        Stack,
        build,
        count_params,
        format_spec,
        param_count,
        parse_spec,
    )
    from kanlab.quickfit import fit
    from kanlab.runs import load_run

__all__ = [
    "KAN", "MLP", "RBFKAN", "BlockConfig", "ChebyshevKAN", "Dense", "FourierKAN", "KANLinear",
    "ModelConfig", "Stack", "TanhQuadratic", "build", "count_params", "fit", "format_spec", "load_run",
    "match_params", "param_count", "parse_spec", "plot",
]
__version__ = "0.1.0"

_HOMES = {"match_params": "kanlab.budget", "fit": "kanlab.quickfit", "load_run": "kanlab.runs",
          **dict.fromkeys(("RBFKAN", "ChebyshevKAN", "Dense", "FourierKAN", "KANLinear", "TanhQuadratic"),
                          "kanlab.layers")}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'kanlab' has no attribute {name!r}")
    if name == "plot":  # a module: kanlab.plot.edges(...)
        value: Any = importlib.import_module("kanlab.plot")
    else:
        value = getattr(importlib.import_module(_HOMES.get(name, "kanlab.models")), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
