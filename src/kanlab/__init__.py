"""kanlab: Kolmogorov-Arnold Networks and the MLPs they are measured against.

The public names are loaded on first use (PEP 562), so `import kanlab` imports nothing heavy: the
`kanlab` command starts in milliseconds and can handle a Ctrl-C while it imports torch.
"""

from __future__ import annotations

from kanlab import _moved
from kanlab._lazy import lazy_names

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
