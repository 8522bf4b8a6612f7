"""Layer families: one nn.Module per family, all with the same (in_features, out_features) contract."""

from kanlab.layers.bspline import KANLinear

__all__ = ["KANLinear"]
