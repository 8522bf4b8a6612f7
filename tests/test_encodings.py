"""Positional encodings against their closed forms, computed point by point with math."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from kanlab.tasks.encodings import ENCODINGS, EncodingConfig, encode, encoded_dim, fourier_matrix


def test_none_is_identity() -> None:
    c = torch.tensor([[0.3, -0.7], [1.0, 0.0]])
    assert torch.equal(encode(c, EncodingConfig()), c)


def test_pow2_closed_form_per_coordinate() -> None:
    c = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    out = encode(c, EncodingConfig(kind="pow2", channels=4))
    want = [0.3, math.sin(0.3), math.sin(0.6), math.sin(1.2)]
    want += [-0.7, math.sin(-0.7), math.sin(-1.4), math.sin(-2.8)]
    assert out[0].tolist() == pytest.approx(want, abs=1e-15)


def test_pow2_one_channel_is_the_coordinate() -> None:
    c = torch.tensor([[0.25], [-0.5]])
    assert torch.equal(encode(c, EncodingConfig(kind="pow2", channels=1)), c)


def test_nerf_closed_form() -> None:
    c = torch.tensor([[0.25, 0.1]], dtype=torch.float64)
    out = encode(c, EncodingConfig(kind="nerf", channels=3))
    want = []
    for v in (0.25, 0.1):
        want.append(v)
        for k in range(3):
            want += [math.sin(2**k * math.pi * v), math.cos(2**k * math.pi * v)]
    assert out.shape == (1, 2 * (2 * 3 + 1))
    assert out[0].tolist() == pytest.approx(want, abs=1e-14)


def test_gaussian_matches_formula_with_seeded_normal() -> None:
    cfg = EncodingConfig(kind="gaussian", features=5, sigma=3.0, seed=7)
    gen = torch.Generator().manual_seed(7)
    b = 3.0 * torch.randn(5, 2, generator=gen, dtype=torch.float64)  # the documented draw
    c = [0.2, -0.6]
    out = encode(torch.tensor([c], dtype=torch.float64), cfg)[0].tolist()
    phases = [2 * math.pi * (b[j, 0].item() * c[0] + b[j, 1].item() * c[1]) for j in range(5)]
    want = [math.cos(p) for p in phases] + [math.sin(p) for p in phases]
    assert out == pytest.approx(want, abs=1e-12)


def test_gaussian_deterministic_per_seed_and_differs_across_seeds() -> None:
    c = torch.rand(10, 2, dtype=torch.float64)
    a = encode(c, EncodingConfig(kind="gaussian", seed=1))
    torch.manual_seed(123)  # the global RNG must not matter
    b = encode(c, EncodingConfig(kind="gaussian", seed=1))
    other = encode(c, EncodingConfig(kind="gaussian", seed=2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, other)


def test_gaussian_matrix_has_std_sigma() -> None:
    b = fourier_matrix(2, EncodingConfig(kind="gaussian", sigma=10.0, features=4096))
    assert b.shape == (4096, 2)
    # std of 8192 normals: relative standard error ~ 1/sqrt(2 * 8192) ~ 0.8%
    assert b.std().item() == pytest.approx(10.0, rel=0.05)
    assert abs(b.mean().item()) < 0.5


def test_gaussian_pairs_lie_on_unit_circle() -> None:
    out = encode(torch.rand(50, 3), EncodingConfig(kind="gaussian", features=16))
    radius = out[:, :16] ** 2 + out[:, 16:] ** 2
    assert torch.allclose(radius, torch.ones_like(radius), atol=1e-5)


@pytest.mark.parametrize(
    ("kind", "d", "want"),
    [("none", 3, 3), ("pow2", 3, 24), ("nerf", 3, 51), ("gaussian", 3, 128), ("pow2", 1, 8)],
)
def test_encoded_dim_closed_form_and_matches_encode(kind: str, d: int, want: int) -> None:
    cfg = EncodingConfig(kind=kind)  # channels 8, features 64
    assert encoded_dim(d, cfg) == want
    assert encode(torch.rand(4, d), cfg).shape == (4, want)


@pytest.mark.parametrize("kind", ENCODINGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_coords(kind: str, dtype: torch.dtype) -> None:
    c = torch.rand(6, 2, dtype=dtype)
    out = encode(c, EncodingConfig(kind=kind, channels=3))
    assert out.dtype == dtype and out.device == c.device
    ref = encode(c.double(), EncodingConfig(kind=kind, channels=3))
    assert torch.allclose(out.double(), ref, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "fourier"}, "'fourier'"),
        ({"channels": 0}, "channels"),
        ({"channels": 33}, "1..32"),
        ({"channels": True}, "channels"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": math.nan}, "sigma"),
        ({"features": 0}, "features"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_config_raises_naming_field(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        EncodingConfig(**kwargs)


def test_unknown_kind_lists_allowed() -> None:
    with pytest.raises(ValueError, match="gaussian"):
        EncodingConfig(kind="sinusoid")


@pytest.mark.parametrize("bad", [torch.zeros(5), torch.zeros(5, 2, dtype=torch.int64)])
def test_encode_rejects_non_2d_or_integer(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="coords"):
        encode(bad, EncodingConfig(kind="pow2"))


def test_encoded_dim_rejects_bad_in_dim() -> None:
    with pytest.raises(ValueError, match="in_dim"):
        encoded_dim(0, EncodingConfig())
