"""Layer families: one nn.Module per family, all with the same (in_features, out_features) contract."""

from kanlab.layers.activations import RBFKAN, ChebyshevKAN, FourierKAN
from kanlab.layers.dense import ACTIVATIONS, Dense
from kanlab.layers.kan.layer import KANLinear
from kanlab.layers.tanh_quadratic import TanhQuadratic

__all__ = ["ACTIVATIONS", "RBFKAN", "ChebyshevKAN", "Dense", "FourierKAN", "KANLinear", "TanhQuadratic"]
