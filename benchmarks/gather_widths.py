"""The gather kernels' time per output at widths off and on whole vectors, in one process.

    .venv/bin/python benchmarks/gather_widths.py [--threads 1] [--inputs 47] [--batch 16384]

For a KANLinear(inputs, o) at grid 5, order 3, float32, it times the C gather kernels directly
(_native_gather: the forward that builds the table, the backward's table gradient with the
unpacking into coef's and scale's, and x's gradient alone) for o = 32, 47, 48, 64, in rounds
that alternate the widths, and prints each median and its time per output. blog-image's hidden
layers are 47 wide; 32 and 64 are whole 64-wide forward spans / 32-wide table-gradient spans.
Before 2026-12-04 a row's last outputs after its whole spans were summed with a length known
only at run time, through memory; this shows what that cost and what remains.
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

from kanlab.layers.kan import _native_gather, native_build
from kanlab.layers.kan.layer import KANLinear

WIDTHS = (32, 47, 48, 64)
grads = _native_gather.backward


def cases(inputs: int, batch: int) -> list[tuple[str, int, Callable[[], object]]]:
    lib = native_build.library(torch.float32)
    if lib is None:
        raise SystemExit("no C compiler builds the native kernels here: nothing to time")
    out: list[tuple[str, int, Callable[[], object]]] = []
    for o in WIDTHS:
        torch.manual_seed(0)
        layer = KANLinear(inputs, o, grid_size=5)
        x = torch.rand(batch, inputs) * 2 - 1
        coef, scale = layer.coef.detach(), layer.spline_weight.detach()  # type: ignore[union-attr]
        first, values, dvalues = _native_gather.basis(lib, x, layer.grid, 3, True, True)
        _, table = _native_gather.forward_build(lib, first, values, coef, scale)
        gy = torch.randn(batch, o)
        out += [
            ("forward (builds the table)", o,
             lambda a=(first, values, coef, scale): _native_gather.forward_build(lib, *a)),
            ("backward: coef and scale", o,
             lambda a=(first, values, None, table, gy, coef, scale): grads(lib, *a, True, True)),
            ("backward: x", o,
             lambda a=(first, values, dvalues, table, gy, coef, scale): grads(lib, *a, False, False)),
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--inputs", type=int, default=47)
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = cases(args.inputs, args.batch)
    times: dict[tuple[str, int], list[float]] = {(name, o): [] for name, o, _ in runs}
    for r in range(args.rounds + 3):
        for name, o, fn in runs:
            t0 = time.perf_counter()
            fn()
            if r >= 3:
                times[name, o].append((time.perf_counter() - t0) * 1e3)
    print(f"gather_widths, {datetime.datetime.now():%Y-%m-%d %H:%M}, {args.threads} threads, "
          f"{args.inputs} inputs, batch {args.batch}, float32, load average {os.getloadavg()[0]:.1f}")
    print("| kernel | " + " | ".join(f"{o} outputs: ms (ms per output)" for o in WIDTHS) + " |")
    print("|---|" + "---:|" * len(WIDTHS))
    for name in dict.fromkeys(name for name, _, _ in runs):
        cells = []
        for o in WIDTHS:
            t = sorted(times[name, o])[len(times[name, o]) // 2]
            cells.append(f"{t:.2f} ({t / o:.3f})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
