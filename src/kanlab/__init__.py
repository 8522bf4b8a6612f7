"""kanlab: Kolmogorov-Arnold Networks and the MLPs they are measured against.

The public names are loaded on first use (PEP 562), so `import kanlab` imports nothing heavy: the
`kanlab` command starts in milliseconds and can handle a Ctrl-C while it imports torch.
"""

from __future__ import annotations

import os

# torch's OpenMP threads spin after each parallel region by default, waiting for the next one. On
# a machine whose cores are busy with other work that spinning takes the CPU from the thread the
# region waits for, many times over (README, "On a busy machine"). Passive waiting sleeps instead.
# OpenMP reads the setting once, when torch loads it: this works when kanlab is imported before
# torch (the `kanlab` command, its workers) and is inherited by every process started from here. A user's own
# OMP_WAIT_POLICY is kept. Set before anything below can load torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from kanlab import _moved  # noqa: E402
from kanlab._lazy import lazy_names  # noqa: E402

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (tens of ms); type checkers know it
if TYPE_CHECKING:
    from kanlab import plot
    from kanlab.layers import RBFKAN, ChebyshevKAN, Dense, FourierKAN, KANLinear, TanhQuadratic
    from kanlab.models.budget import match_params
    from kanlab.models.spec import BlockConfig, ModelConfig, format_spec, parse_spec
    from kanlab.models.stack import KAN, MLP, Stack, build, count_params, param_count
    from kanlab.runs.experiment import load_run
    from kanlab.training.quickfit import fit

__all__ = [
    "KAN", "MLP", "RBFKAN", "BlockConfig", "ChebyshevKAN", "Dense", "FourierKAN", "KANLinear",
    "ModelConfig", "Stack", "TanhQuadratic", "build", "count_params", "fit", "format_spec", "load_run",
    "match_params", "param_count", "parse_spec", "plot",
]
_moved.install()  # kanlab 0.1's flat module paths, for one release
__version__ = "0.1.0"

__getattr__, __dir__ = lazy_names(__name__)
