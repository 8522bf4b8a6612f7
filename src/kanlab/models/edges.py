"""Per-edge responses of a model's learnable-activation layers, sampled over the inputs they saw
(what edges.npz holds and the edge plots draw).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kanlab.layers import KANLinear
from kanlab.layers.dense import Dense
from kanlab.models.stack import edge_samples, layer_inputs

EDGE_POINTS = 200


@torch.no_grad()
def edge_arrays(model: nn.Module, x_train: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-edge responses of every learnable-activation layer over the input range it saw."""
    arrays: dict[str, np.ndarray] = {}
    layers = list(getattr(model, "layers", [model]))
    present = []
    for index, (layer, h) in enumerate(zip(layers, layer_inputs(model, x_train), strict=True)):
        if isinstance(layer, Dense) or not hasattr(layer, "edge_responses"):
            continue
        xs, ys = edge_samples(layer, h, EDGE_POINTS)                # (P, in), (P, out, in)
        arrays[f"layer{index}_x"] = xs.cpu().numpy()
        arrays[f"layer{index}_y"] = ys.cpu().numpy()
        if isinstance(layer, KANLinear):
            arrays[f"layer{index}_knots"] = layer.grid.cpu().numpy()
        present.append(index)
    arrays["layers"] = np.array(present, dtype=np.int64)
    return arrays
