"""kanlab: Kolmogorov-Arnold Networks and the MLPs they are measured against."""

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

__all__ = [
    "KAN", "MLP", "RBFKAN", "BlockConfig", "ChebyshevKAN", "Dense", "FourierKAN", "KANLinear",
    "ModelConfig", "Stack", "TanhQuadratic", "build", "count_params", "format_spec", "match_params",
    "param_count", "parse_spec",
]
__version__ = "0.1.0"
