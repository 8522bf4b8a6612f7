"""kanlab: Kolmogorov-Arnold Networks and the MLPs they are measured against."""

from kanlab.layers import KANLinear

__all__ = ["KANLinear"]
__version__ = "0.1.0"
