"""Wall time of the presets as a user runs them: `kanlab compare PRESET` (or sweep, tune) in a fresh process.

Each preset runs in its own temporary run folder (nothing cached: every run trains, every report
draws), with this machine's default threads, and prints its wall time, the CPU time of the
process tree, and the load average before and after (on a shared machine other work counts). The
README's time claims quote this script's latest output.

    .venv/bin/python benchmarks/presets.py            # smoke, default, symbolic-demo, scaling-quick
    .venv/bin/python benchmarks/presets.py smoke fair-quick
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import subprocess
import sys
import tempfile
import time

from kanlab.study.config import read_study

DEFAULT = ["smoke", "default", "symbolic-demo", "scaling-quick"]


def command(preset: str) -> str:
    """The kanlab command that runs preset, by the tables its file has (as parse_study tells them)."""
    raw = read_study(preset)
    return "sweep" if "axes" in raw else "tune" if "tune" in raw or "search" in raw else "compare"


def run(preset: str) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child processes, status) of `kanlab compare preset` (or the
    sweep or tune command that runs it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "kanlab", command(preset), preset,
                               "--root", root],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
    return wall, cpu, status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="*", default=DEFAULT)
    args = ap.parse_args()
    print(f"presets, {datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (kanlab: PASSIVE)')}")
    print("| preset | wall | CPU time | load before -> after | status |")
    print("|---|---|---|---|---|")
    for preset in args.presets:
        load = os.getloadavg()[0]
        wall, cpu, status = run(preset)
        load_after = os.getloadavg()[0]
        print(f"| {preset} | {wall / 60:.1f} min | {cpu / 60:.1f} min | {load:.1f} -> {load_after:.1f} "
              f"| {status} |", flush=True)


if __name__ == "__main__":
    main()
