"""Shared test setup: one torch thread (tests run in parallel), a seeded global RNG per test."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)
# A shell starts a background job (`cmd &`) with SIGINT ignored, and children inherit that: the
# Ctrl-C tests' commands would then ignore their Ctrl-C. They test a terminal's Ctrl-C: restore it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def many_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two torch threads, and the native kernels split even the smallest call between them."""
    from kanlab.layers.kan import _native

    monkeypatch.setattr(_native, "MIN_PARALLEL_WORK", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
