"""Shared test setup: one torch thread (tests run in parallel), a seeded global RNG per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def many_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two torch threads, and the native kernels split even the smallest call between them."""
    from kanlab.layers import _native

    monkeypatch.setattr(_native, "MIN_PARALLEL_WORK", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
