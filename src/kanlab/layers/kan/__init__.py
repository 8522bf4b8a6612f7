"""KANLinear (layer.py), the B-spline KAN layer, and the kernels of its paths: reference and
dense/gather local values (_fast*.py), torch.compile (_compiled.py) and C (_native*.py, .c, .h)."""
