"""Positional encodings that lift low-dimensional coordinates before a network sees them.

Kinds (d = input dimension, L = channels, F = features):
- "none":     the coordinates unchanged; d outputs.
- "pow2":     per coordinate c: c, sin(2^k c) for k = 0..L-2; L outputs per coordinate, d*L in all.
              The encoding of the founding blog experiment (KAN vs MLP on an image).
- "nerf":     per coordinate c: c, then sin(2^k pi c), cos(2^k pi c) for k = 0..L-1;
              2L+1 outputs per coordinate, d*(2L+1) in all (Mildenhall et al. 2020, NeRF, eq. 4,
              plus the identity that NeRF's code keeps).
- "gaussian": random Fourier features (Tancik et al. 2020, "Fourier Features Let Networks Learn
              High Frequency Functions..."): B ~ N(0, sigma^2) of shape (F, d) drawn from a
              torch.Generator seeded with `seed`; outputs [cos(2 pi B c), sin(2 pi B c)], 2F in all.

Legend: n points, d coordinates, e encoded features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ENCODINGS = ("none", "pow2", "nerf", "gaussian")
MAX_CHANNELS = 32  # 2^31 c already aliases completely in float32; more channels only add noise


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class EncodingConfig:
    """How coordinates are encoded; see the module docstring for each kind's formula and size."""

    kind: str = "none"
    channels: int = 8
    sigma: float = 10.0
    features: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ENCODINGS:
            raise ValueError(f"encoding kind must be one of {ENCODINGS}, got {self.kind!r}")
        if not _is_int(self.channels) or not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(
                f"encoding channels must be an integer in 1..{MAX_CHANNELS}, got {self.channels!r}"
            )
        sigma_ok = isinstance(self.sigma, (int, float)) and not isinstance(self.sigma, bool)
        if not sigma_ok or not (0.0 < self.sigma < math.inf):
            raise ValueError(f"encoding sigma must be a finite number > 0, got {self.sigma!r}")
        if not _is_int(self.features) or self.features < 1:
            raise ValueError(f"encoding features must be an integer >= 1, got {self.features!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"encoding seed must be an integer >= 0, got {self.seed!r}")


def encoded_dim(in_dim: int, cfg: EncodingConfig) -> int:
    """Number of features `encode` produces for in_dim coordinates.

    Args:
        in_dim: coordinate dimension d (>= 1).
        cfg: the encoding.
    Returns:
        d for "none", d*channels for "pow2", d*(2*channels+1) for "nerf", 2*features for "gaussian".
    """
    if not _is_int(in_dim) or in_dim < 1:
        raise ValueError(f"in_dim must be an integer >= 1, got {in_dim!r}")
    if cfg.kind == "none":
        return in_dim
    if cfg.kind == "pow2":
        return in_dim * cfg.channels
    if cfg.kind == "nerf":
        return in_dim * (2 * cfg.channels + 1)
    return 2 * cfg.features


def fourier_matrix(in_dim: int, cfg: EncodingConfig) -> torch.Tensor:
    """The Gaussian encoding's frequency matrix B ~ N(0, sigma^2), the same for a given seed.

    Drawn in float64 on the CPU so that B does not depend on the dtype or device of the data.

    Args:
        in_dim: coordinate dimension d.
        cfg: the encoding (its sigma, features and seed are used whatever its kind).
    Returns:
        (features, d) float64 tensor.
    """
    if not _is_int(in_dim) or in_dim < 1:
        raise ValueError(f"in_dim must be an integer >= 1, got {in_dim!r}")
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    b = torch.randn(cfg.features, in_dim, generator=gen, dtype=torch.float64)
    return b * cfg.sigma


def encode(coords: torch.Tensor, cfg: EncodingConfig) -> torch.Tensor:
    """Encode coordinates; the result has the dtype and device of coords.

    Args:
        coords: (n, d) floating-point coordinates.
        cfg: the encoding.
    Returns:
        (n, encoded_dim(d, cfg)) tensor; features of one coordinate are contiguous for
        "pow2" and "nerf" (all of x1's, then all of x2's, ...).
    """
    if coords.ndim != 2 or not coords.is_floating_point():
        raise ValueError(
            f"coords must be a floating-point (n, d) tensor, got shape {tuple(coords.shape)} "
            f"and dtype {coords.dtype}"
        )
    n, d = coords.shape
    if cfg.kind == "none":
        return coords
    if cfg.kind == "gaussian":
        b = fourier_matrix(d, cfg).to(dtype=coords.dtype, device=coords.device)      # (F, d)
        phase = 2.0 * math.pi * coords @ b.T                                          # (n, F)
        return torch.cat([torch.cos(phase), torch.sin(phase)], dim=1)                 # (n, 2F)
    if cfg.kind == "pow2":
        k = torch.arange(cfg.channels - 1, dtype=coords.dtype, device=coords.device)
        scaled = coords.unsqueeze(-1) * 2.0**k                                        # (n, d, L-1)
        parts = [coords.unsqueeze(-1), torch.sin(scaled)]
    else:  # "nerf"
        k = torch.arange(cfg.channels, dtype=coords.dtype, device=coords.device)
        scaled = coords.unsqueeze(-1) * (math.pi * 2.0**k)                            # (n, d, L)
        # interleave sin/cos per frequency: sin(pi c), cos(pi c), sin(2 pi c), cos(2 pi c), ...
        sincos = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-1)          # (n, d, L, 2)
        parts = [coords.unsqueeze(-1), sincos.reshape(n, d, -1)]
    return torch.cat(parts, dim=-1).reshape(n, -1)                                    # (n, e)
