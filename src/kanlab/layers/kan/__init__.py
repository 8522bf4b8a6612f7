"""KANLinear (layer.py), the B-spline KAN layer; which path its forward runs (paths.py, one table of
rules); its base functions (bases.py); the kernels of its paths: reference and dense/gather local
values (_fast*.py), torch.compile (_compiled.py) and C (_native*.py, .c, .h, built and loaded by
native_build.py). The uniform-grid closed form's contract: kanlab.splines.uniform_cells."""
