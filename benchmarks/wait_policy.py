"""What OpenMP's waiting costs a tiny model: LBFGS steps/s of the toy's [2, 5, 1] models with torch's
idle threads spinning (torch imported before kanlab, GNU OpenMP's default) against sleeping
(kanlab imported first: OMP_WAIT_POLICY=PASSIVE), each in a fresh process, alternated.

Meant for a quiet machine (benchmarks/contention.py measures a busy one): it prints the load
average before and after. Models: the KAN [2, 5, 1] at grid 5 (native path, kanlab's LBFGS) and
the tanh MLP [2, 5, 1] (kanlab's LBFGS and torch's), 30 LBFGS steps each on benchmarks/training.py's
toy data; steps/s as training.py measures them.

    .venv/bin/python benchmarks/wait_policy.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("KAN [2, 5, 1], kanlab's LBFGS", "MLP tanh [2, 5, 1], kanlab's LBFGS",
          "MLP tanh [2, 5, 1], torch's LBFGS")


def child(kanlab_first: bool, threads: int) -> None:
    """One process: import in the order asked, then print the three models' steps/s."""
    if kanlab_first:
        import kanlab  # noqa: F401
    import torch

    sys.path.insert(0, str(HERE))
    import training  # benchmarks/training.py: its toy data and LBFGS loop

    from kanlab.models.stack import KAN, MLP

    torch.set_num_threads(threads)
    x, y = training.toy_data()
    makers = ((lambda: KAN([2, 5, 1], grid_size=5).double(), "kanlab"),
              (lambda: MLP([2, 5, 1], activation="tanh").double(), "kanlab"),
              (lambda: MLP([2, 5, 1], activation="tanh").double(), "torch"))
    rates = []
    for make, optimizer in makers:
        torch.manual_seed(0)
        rates.append(training.run_lbfgs(make(), x, y, 30, optimizer)[0])
    print(" ".join(f"{r:.3f}" for r in rates))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=("spin", "sleep"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child == "sleep", args.threads)
        return
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    print(f"wait_policy, {datetime.datetime.now():%Y-%m-%d %H:%M}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f} before")
    rates: dict[str, list[list[float]]] = {"spin": [], "sleep": []}
    for _ in range(args.rounds):
        for mode in rates:  # alternated: both see the same machine
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--threads", str(args.threads)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            rates[mode].append([float(v) for v in out.split()])
    print(f"load average {os.getloadavg()[0]:.2f} after; medians over {args.rounds} processes each")
    print("| model | steps/s, spinning | steps/s, sleeping (kanlab's) | spinning / sleeping |")
    print("|---|---:|---:|---:|")
    for i, model in enumerate(MODELS):
        spin, sleep = (statistics.median(r[i] for r in rates[m]) for m in ("spin", "sleep"))
        print(f"| {model} | {spin:.1f} | {sleep:.1f} | {spin / sleep:.2f}x |")


if __name__ == "__main__":
    main()
