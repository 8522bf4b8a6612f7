"""Shared test setup: one torch thread (tests run in parallel), a seeded global RNG per test, and
`--device` (cpu by default): the tests that take the `device` fixture run there (benchmarks/gpu_check.sh
runs them with `pytest --device cuda -m device`)."""

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


DEVICES = ("cpu", "cuda")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", choices=DEVICES, default="cpu",
                     help="where the tests taking the `device` fixture run (default: cpu; cuda is "
                          "skipped where torch.cuda.is_available() is false)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `-m device` selects exactly the tests that run on --device: those taking the fixture
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device of --device; skips the test when it is cuda and torch sees no CUDA device."""
    name = request.config.getoption("--device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"--device cuda: torch.cuda.is_available() is False (torch {torch.__version__}, "
                    f"CUDA build {torch.version.cuda}): no GPU here or a CPU-only torch")
    return torch.device(name)


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
