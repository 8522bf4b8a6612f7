"""The closed-form dense basis eagerly: uniform_bspline_basis's scatter against uniform_dense_basis's
where() chain (the form the compiled path traces), forward and backward, in one process.

    .venv/bin/python benchmarks/basis.py [--threads 1]

Both place the same k + 1 cardinal pieces (splines.cardinal_coefficients) in the cells of the same
contract (splines.uniform_cells); the table is the median time of basis(x).sum().backward() over
rounds that alternate the two, and the where/scatter ratio.
"""

from __future__ import annotations  # noqa: I001  (kanlab before torch, below)

# kanlab first: torch's OpenMP threads then sleep when idle, as under the kanlab command
import kanlab  # noqa: F401
import argparse
import datetime
import os
import time
from collections.abc import Callable

import torch

from kanlab import splines

CASES = ((64, 5, 1024), (64, 10, 1024), (64, 20, 1024), (64, 100, 1024), (2, 5, 1000))  # inputs, grid, batch


def time_once(fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, times: list[float]) -> None:
    x = x0.clone().requires_grad_(True)
    t0 = time.perf_counter()
    fn(x).sum().backward()
    times.append((time.perf_counter() - t0) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--order", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    k = args.order
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load average "
          f"{os.getloadavg()[0]:.2f}, {args.threads} thread(s), order {k}, forward + backward")
    print("| dtype | inputs | grid | batch | scatter ms | where() ms | where / scatter |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for i, g, b in CASES:
            knots = splines.uniform_grid(g, k, (-1.0, 1.0)).expand(i, -1).contiguous()
            x0 = (torch.rand(b, i, generator=gen, dtype=torch.float64) * 2.2 - 1.1).to(dtype)
            scatter: list[float] = []
            where: list[float] = []
            for _ in range(args.rounds):
                time_once(lambda x, t=knots: splines.uniform_bspline_basis(x, t, k), x0, scatter)
                time_once(lambda x, t=knots: splines.uniform_dense_basis(x, t, k)[0], x0, where)
            s, w = sorted(scatter)[len(scatter) // 2], sorted(where)[len(where) // 2]
            name = str(dtype).removeprefix("torch.")
            print(f"| {name} | {i} | {g} | {b} | {s:.2f} | {w:.2f} | {w / s:.2f} |")


if __name__ == "__main__":
    main()
