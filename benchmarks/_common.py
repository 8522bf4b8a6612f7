"""What the benchmark scripts share: rerunning under the peers' environment, timing a command under load,
the device to run on and a clock that waits for it."""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / "benchmarks" / ".peers-venv" / "bin" / "python"


def reexec_with_peers(script: str) -> None:
    """Replace this process by `script` under benchmarks/.peers-venv, same arguments less --with-peers.

    Returns (does nothing) when already running there; exits when that environment is missing.
    """
    if Path(sys.prefix).resolve() == PEERS_PYTHON.parent.parent.resolve():
        return
    if not PEERS_PYTHON.exists():
        sys.exit("no peers environment: run `bash benchmarks/setup_peers.sh` first")
    argv = [a for a in sys.argv[1:] if a != "--with-peers"]
    # this checkout's kanlab, whichever checkout's the environment was installed from (a worktree may
    # link another's .peers-venv)
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *([before] if before else [])])
    os.execv(str(PEERS_PYTHON), [str(PEERS_PYTHON), script, *argv])


def load() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def run(command: list[str]) -> dict[str, float]:
    """Run the command, returning its wall seconds, CPU seconds (with its children) and load samples."""
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(10.0):
            samples.append(load())

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    watcher = threading.Thread(target=sample, daemon=True)
    start, load_before = time.perf_counter(), load()
    watcher.start()
    try:
        subprocess.run(command, check=True)
    finally:
        done.set()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load_before": load_before, "load_after": load(),
            "load_median": statistics.median(samples) if samples else load_before}


def add_device_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where models and data live (default cpu; benchmarks/gpu_check.sh runs cuda)")


def pick_device(name: str) -> torch.device:
    """torch.device(name); exits with the fix when CUDA is asked for and torch cannot see it."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device cuda: torch.cuda.is_available() is False (torch {torch.__version__}, CUDA "
                 f"build {torch.version.cuda}): run on a machine with an NVIDIA GPU and a CUDA build of "
                 "torch (benchmarks/gpu_check.sh installs one)")
    return torch.device(name)


def clock(device: torch.device) -> float:
    """time.perf_counter() once the device's queued work is done: CUDA kernels run asynchronously,
    so a timer that does not wait reads the launch, not the work. Every timed region starts and
    ends with this. On the CPU it is time.perf_counter() alone."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
    return time.perf_counter()
