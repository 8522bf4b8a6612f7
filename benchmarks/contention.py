"""kanlab on a busy machine: a fixed slice of `kanlab compare default` alone and beside busy processes.

Runs the slice (the default preset, one seed, --steps steps per run, report included) as a fresh
`kanlab compare` process with its own run folder, first alone and then beside one and two
CPU-bound processes (`while True: pass`), each with OpenMP's idle threads waiting as kanlab has them
wait (PASSIVE: OMP_WAIT_POLICY=PASSIVE, set when kanlab is imported before torch unless the user
set it: idle threads sleep), as OpenMP's default has them (SPIN: GNU OpenMP spins 300,000 times
before it sleeps, GOMP_SPINCOUNT=300000, what torch did before), and ACTIVE (they only spin).
A spinning thread holds a core that the thread a parallel region waits for needs.
Prints the wall time per case (median over --rounds, the policies round-robin within a round),
its slowdown against the same policy alone, and the slowdown that the CPU share alone explains:
a run of T threads beside k busy processes on n cores gets n / (T + k) of the cores it had.

    .venv/bin/python benchmarks/contention.py                 # ~10 minutes on 2 cores
    .venv/bin/python benchmarks/contention.py --policies PASSIVE SPIN ACTIVE --rounds 3
    .venv/bin/python benchmarks/contention.py --steps 100 --busy 0 1 --policies PASSIVE
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

KANLAB = [sys.executable, "-m", "kanlab"]


@contextlib.contextmanager
def busy(k: int) -> Iterator[None]:
    """k CPU-bound processes running for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]
    try:
        time.sleep(0.5 if k else 0)  # let the scheduler see them
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


POLICIES = {"PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
            "SPIN": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "300000"},  # GOMP's spin count wins
            "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"}}


def slice_time(policy: str, steps: int) -> float:
    """Wall seconds of one `kanlab compare default` slice in a fresh process and run folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(POLICIES[policy])
    with tempfile.TemporaryDirectory() as root:
        cmd = [*KANLAB, "compare", "default", "--root", root, "--set", f"train.steps={steps}",
               "--set", "train.eval_every=100", "--set", "seeds=[0]"]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps per run of the slice")
    ap.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="busy processes beside it")
    ap.add_argument("--policies", nargs="+", default=["PASSIVE", "SPIN"], choices=list(POLICIES))
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    if 0 not in args.busy:
        args.busy = [0, *args.busy]
    cores = os.cpu_count() or 1
    threads = cores  # kanlab compare computes on torch's default thread count: one per core
    load = os.getloadavg()[0]
    print(f"contention: `kanlab compare default` slice ({args.steps} steps, 1 seed), {cores} cores, "
          f"{datetime.datetime.now():%Y-%m-%d %H:%M}, load average before {load:.1f}")
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for k in args.busy:
            with busy(k):
                for policy in args.policies:
                    seconds = slice_time(policy, args.steps)
                    times.setdefault((policy, k), []).append(seconds)
                    print(f"  {policy:7s} beside {k} busy: {seconds:.1f} s", flush=True)
    print("\n| wait policy | busy processes | wall s (median) | slowdown | CPU share explains |")
    print("|---|---|---|---|---|")
    for policy in args.policies:
        alone = statistics.median(times[(policy, 0)])
        for k in args.busy:
            wall = statistics.median(times[(policy, k)])
            share = max(1.0, (threads + k) / cores) / max(1.0, threads / cores)
            print(f"| {policy} | {k} | {wall:.1f} | {wall / alone:.2f}x | {share:.2f}x |")
    print(f"load average after {os.getloadavg()[0]:.1f} (the machine's other work counts as load too)")


if __name__ == "__main__":
    main()
