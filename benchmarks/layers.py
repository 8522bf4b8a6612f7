"""One-layer speed and memory: kanlab's KANLinear paths against a dense reference, an MLP layer, a
GEMM floor and (when installed) PyKAN, flashkan and inkan, in one process, as ratios.

    .venv/bin/python benchmarks/layers.py [--quick | --full] [--threads 2] [--with-peers] [--device cuda]

Default: 4->8 (a layer of the KAN paper's size, where "auto" runs the native path), 64->64 and
256->256 at batch 1024 (a few minutes without peers); --full adds batch 4096 (about an hour with
peers) and the native path at 256->256; --quick is 64->64 only, without memory.

Every case is float32, order 3, x of shape (batch, in) with requires_grad (a hidden layer: the
input gradient is part of the work). "fwd" runs under torch.no_grad(); "fwd+bwd" is forward plus
backward of y.sum()-like cotangent, gradients set to None between repeats as optimizers do.
Within a case the candidates run round-robin, one repeat (the best of 3 back-to-back calls) each
per round, and each reports the median over rounds, so a slow spell on a shared machine hits all
of them alike. Ratios are to the MLP layer. Last, kanlab's default layer at grids 5, 20 and 100
runs round-robin in one case per shape, for the ratios of its own times across grids.
Peak memory: a fresh process per (case, candidate) runs one fwd+bwd and reports the growth of its
peak RSS (VmHWM, reset just before) over its RSS then (parameters and input already allocated),
and the bytes autograd saved for backward (saved_tensors_hooks; parameters included). Candidates
that use torch.compile (kanlab compiled, flashkan, inkan) run one fwd+bwd before, to compile.
--device cuda: every candidate and x on the GPU (not kanlab native: C loops, CPU only; gather runs
its embedding bags there), each timed region between two torch.cuda.synchronize() (_common.clock);
peak MB is then the growth of torch.cuda.max_memory_allocated(); a candidate that fails on the
device is reported and left out instead of stopping the run.

Legend: b batch, i in_features, o out_features, G grid_size, k order, c = G + k.
"""

from __future__ import annotations  # noqa: I001  (kanlab before torch, below)

# kanlab first: torch's OpenMP threads then sleep when idle, as under the kanlab command
import kanlab  # noqa: F401
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import add_device_option, clock, pick_device, reexec_with_peers  # benchmarks/ is sys.path[0]
from torch import nn

K = 3


# ---- the dense reference: a basis tensor and one matmul (the formulation efficient-kan uses) ----
class DenseReference(nn.Module):
    """Cox-de Boor basis (b, i, c) on a uniform grid, concatenated with silu(x), one matmul."""

    def __init__(self, i: int, o: int, grid: int, k: int = K) -> None:
        super().__init__()
        h = 2.0 / grid
        self.k = k
        self.register_buffer("knots", torch.arange(-k, grid + k + 1, dtype=torch.float32) * h - 1.0)
        self.weight = nn.Parameter(torch.randn(o, i * (grid + k + 1)) * 0.1)  # spline + base column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, xe = self.knots, x.unsqueeze(-1)                                # (m,), (b, i, 1)
        basis = ((xe >= t[:-1]) & (xe < t[1:])).to(x.dtype)                # (b, i, m - 1)
        for d in range(1, self.k + 1):
            left = (xe - t[: -(d + 1)]) / (t[d:-1] - t[: -(d + 1)])
            right = (t[d + 1 :] - xe) / (t[d + 1 :] - t[1:-d])
            basis = left * basis[..., :-1] + right * basis[..., 1:]         # (b, i, m - d - 1)
        feats = torch.cat([basis, F.silu(x).unsqueeze(-1)], dim=-1)          # (b, i, c + 1)
        return feats.flatten(1) @ self.weight.T                             # (b, o)


class Gemm(nn.Module):
    """The floor: one (b, i * (c + 1)) x (i * (c + 1), o) product, its input precomputed."""

    def __init__(self, i: int, o: int, grid: int, b: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.rand(b, i * (grid + K + 1)))            # stands in for the basis
        self.weight = nn.Parameter(torch.randn(o, i * (grid + K + 1)) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a @ self.weight.T


class MLPLayer(nn.Module):
    """silu(Linear(i, h)) with h chosen so the parameter count matches the KAN layer's."""

    def __init__(self, i: int, o: int, grid: int) -> None:
        super().__init__()
        from kanlab import KANLinear

        self.linear = nn.Linear(i, max(1, round(KANLinear.num_params(i, o, grid, K) / (i + 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.linear(x))


Makers = dict[str, Callable[[], nn.Module]]


def candidates(i: int, o: int, grid: int, b: int, args: argparse.Namespace) -> Makers:
    """Name -> constructor of every layer measured for one case (peers only when importable)."""
    from kanlab import KANLinear
    from kanlab.layers import RBFKAN, ChebyshevKAN, FourierKAN, TanhQuadratic

    big = b * i * (grid + K) > 2**24  # the dense-basis formulations need GBs and seconds here
    out: dict[str, Callable[[], nn.Module]] = {
        "mlp (same params)": lambda: MLPLayer(i, o, grid),
        "gemm floor": lambda: Gemm(i, o, grid, b),
    }
    for path in ("auto", "dense", "gather", "compiled", "native", "uniform", "reference"):
        if path in ("uniform", "reference") and big and not args.full:
            continue
        if path == "native" and i * o > 64 * 64 and not args.full:  # per-edge scalar loops: ~1 s a call here
            continue
        if path == "native" and args.device.type != "cpu":  # CPU only: it would run auto's choice
            continue
        out[f"kanlab {path}"] = lambda p=path: KANLinear(i, o, grid, K, path=p, check_finite=False)
    if not big or args.full:
        out["dense reference"] = lambda: DenseReference(i, o, grid)
    if args.families:
        out["tanh-quadratic"] = lambda: TanhQuadratic(i, o, check_finite=False)
        out["rbf (G)"] = lambda: RBFKAN(i, o, grid_size=max(2, grid), check_finite=False)
        out["chebyshev (deg 4)"] = lambda: ChebyshevKAN(i, o, degree=4, check_finite=False)
        out["fourier (4)"] = lambda: FourierKAN(i, o, frequencies=4, check_finite=False)
    for name, make in peer_layers(i, o, grid, big and not args.full).items():
        out[name] = make
    return out


def peer_layers(i: int, o: int, grid: int, skip_slow: bool) -> dict[str, Callable[[], nn.Module]]:
    out: dict[str, Callable[[], nn.Module]] = {}
    try:
        import flashkan

        out["flashkan 0.2.0"] = lambda: flashkan.KANLayer(i, o, grid_size=grid, spline_order=K)
    except ImportError:
        pass
    try:
        import inkan

        out["inkan 0.5.2"] = lambda: inkan.KANLayer(i, o, grid_size=grid, spline_order=K)
    except ImportError:
        pass
    try:
        from kan.KANLayer import KANLayer as PyKANLayer

        class PyKAN(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.layer = PyKANLayer(in_dim=i, out_dim=o, num=grid, k=K, save_plot_data=False)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.layer(x)[0]

        if not skip_slow:  # PyKAN builds (b, i, o) tensors: GBs at the large cases
            out["pykan 0.2.8"] = PyKAN
    except ImportError:
        pass
    return out


# ---- timing -------------------------------------------------------------------------------------
def step_fns(layer: nn.Module, x: torch.Tensor) -> tuple[Callable[[], None], Callable[[], None]]:
    params = [p for p in layer.parameters() if p.requires_grad]

    def fwd() -> None:
        with torch.no_grad():
            layer(x)

    def fwd_bwd() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        y = layer(x)
        y.backward(torch.ones_like(y))

    return fwd, fwd_bwd


def time_case(makers: Makers, b: int, i: int, per_candidate_s: float, min_reps: int,
              max_reps: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Median ms of fwd and fwd+bwd per candidate, measured round-robin on device."""
    torch.manual_seed(0)
    x = (torch.rand(b, i) * 2 - 1).to(device).requires_grad_(True)  # the same values on every device
    fns, first = {}, {}
    for name, make in makers.items():
        try:
            layer = make().to(device)
            fwd, fb = step_fns(layer, x)
            t = clock(device)
            fb()  # warm-up; for peers using torch.compile this is the compile
            first[name] = clock(device) - t
            fwd()
        except Exception as err:  # on the CPU every candidate must run; on a GPU report and go on
            if device.type == "cpu":
                raise
            print(f"# {name} left out: fails on {device}: {type(err).__name__}: {str(err)[:200]}")
            continue
        fns[name] = (fwd, fb)
    times: dict[str, dict[str, list[float]]] = {n: {"fwd": [], "fwd+bwd": []} for n in fns}
    start, reps = time.perf_counter(), 0
    budget = per_candidate_s * len(fns)
    while reps < min_reps or (reps < max_reps and time.perf_counter() - start < budget):
        for name, (fwd, fb) in fns.items():
            for kind, fn in (("fwd", fwd), ("fwd+bwd", fb)):
                # Best of 3 back-to-back calls: the first after another candidate pays for its
                # caches and freed pages (very costly on some VMs); the median is over rounds.
                block = []
                for _ in range(3):
                    t = clock(device)
                    fn()
                    block.append(clock(device) - t)
                times[name][kind].append(min(block))
        reps += 1
    return {n: {k: statistics.median(v) * 1e3 for k, v in kinds.items()} | {"first_s": first[n], "reps": reps}
            for n, kinds in times.items()}


# ---- memory, one fresh process per measurement --------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def measure_memory(spec: str) -> None:
    """Child process: build one layer, run fwd+bwd once, print the peak RSS growth in MB."""
    cfg = json.loads(spec)
    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    ns = argparse.Namespace(full=True, families=cfg["name"] in ("tanh-quadratic", "rbf (G)",
                                                                "chebyshev (deg 4)", "fourier (4)"),
                            device=device)
    make = candidates(cfg["i"], cfg["o"], cfg["grid"], cfg["b"], ns)[cfg["name"]]
    layer = make().to(device)
    x = (torch.rand(cfg["b"], cfg["i"]) * 2 - 1).to(device).requires_grad_(True)
    if is_compiled(cfg["name"]):  # compile first: its memory is not the layer's
        layer(x).sum().backward()
        x.grad = None
        for p in layer.parameters():
            p.grad = None
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    if device.type == "cuda":  # the device allocator's peak, in kB as below
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) // 1024
    else:
        with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM (the peak RSS) to the current RSS
            f.write("5")
        before = _status_kb("VmRSS")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x)
    y.backward(torch.ones_like(y))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) // 1024
    else:
        peak = _status_kb("VmHWM")
    print(json.dumps({"peak_mb": max(0, peak - before) / 1024, "saved_mb": saved[0] / 2**20}))


def memory(name: str, i: int, o: int, grid: int, b: int, threads: int,
           device: torch.device) -> dict[str, float] | None:
    spec = json.dumps({"name": name, "i": i, "o": o, "grid": grid, "b": b, "threads": threads,
                       "device": device.type})
    run = subprocess.run([sys.executable, __file__, "--measure-memory", spec],
                         capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        return None
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


MEMORY_OF = ("kanlab auto", "kanlab compiled", "mlp (same params)", "dense reference", "flashkan 0.2.0",
             "inkan 0.5.2")


def is_compiled(name: str) -> bool:
    """Candidates whose first call runs torch.compile."""
    return name == "kanlab compiled" or name.startswith(("flashkan", "inkan"))


# ---- the run ------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="64->64, batch 1024 only; no memory")
    size.add_argument("--full", action="store_true",
                      help="batch 4096 too; longer medians; slow candidates at every size; memory of all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--with-peers", action="store_true",
                    help="rerun under benchmarks/.peers-venv (see setup_peers.sh)")
    ap.add_argument("--no-families", dest="families", action="store_false", help="skip RBF/Chebyshev/...")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    add_device_option(ap)
    ap.add_argument("--measure-memory", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_memory:
        measure_memory(args.measure_memory)
        return
    if args.with_peers:
        reexec_with_peers(__file__)
    torch.set_num_threads(args.threads)
    args.device = pick_device(args.device)
    shapes = [(64, 64, 1024)] if args.quick else [(4, 8, 1024), (64, 64, 1024), (256, 256, 1024)]
    if args.full:
        shapes = [(4, 8, 1024), (64, 64, 1024), (64, 64, 4096), (256, 256, 1024), (256, 256, 4096)]
    # seconds per candidate per case, and bounds on the repeats
    budget, min_reps, max_reps = (0.3, 5, 50) if args.quick else (1.0, 7, 400) if args.full else (0.4, 5, 99)
    gpu = f", {torch.cuda.get_device_name(args.device)}" if args.device.type == "cuda" else ""
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}{gpu}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    results = []
    for i, o, b in shapes:
        for grid in (5, 20, 100):
            makers = candidates(i, o, grid, b, args)
            t = time_case(makers, b, i, budget, min_reps, max_reps, args.device)
            mem = {}
            if not args.quick:
                keep = [n for n in t if args.full or n in MEMORY_OF]
                mem = {n: memory(n, i, o, grid, b, args.threads, args.device) for n in keep}
            results.append({"i": i, "o": o, "b": b, "grid": grid, "times": t, "memory": mem})
            print_case(results[-1])
    scaling = []
    for i, o, b in shapes:  # the grid target compares kanlab with itself: measured round-robin too
        t = time_case(grid_makers(i, o), b, i, budget, min_reps, max_reps, args.device)
        scaling.append({"i": i, "o": o, "b": b, "times": t})
        print_grids(scaling[-1])
    print(f"# load average {os.getloadavg()[0]:.1f} at end")
    if args.json:
        args.json.write_text(json.dumps({"cases": results, "grids": scaling}, indent=1))


GRIDS = (5, 20, 100)


def grid_makers(i: int, o: int) -> Makers:
    """kanlab's default layer at each grid of GRIDS, for one round-robin comparison: separate cases
    run minutes apart, and a busy machine's slow spells would land in the ratios."""
    from kanlab import KANLinear

    return {f"kanlab auto, grid {g}": lambda g=g: KANLinear(i, o, g, K, check_finite=False) for g in GRIDS}


def print_grids(r: dict) -> None:  # type: ignore[type-arg]
    t = r["times"]
    base = t[f"kanlab auto, grid {GRIDS[0]}"]["fwd+bwd"]
    print(f"\n{r['i']}->{r['o']}, batch {r['b']}: kanlab auto fwd+bwd by grid, round-robin in one process: "
          + ", ".join(f"grid {g} {t[f'kanlab auto, grid {g}']['fwd+bwd']:.2f} ms "
                      f"({t[f'kanlab auto, grid {g}']['fwd+bwd'] / base:.2f}x)" for g in GRIDS))
    sys.stdout.flush()


def print_case(r: dict) -> None:  # type: ignore[type-arg]
    t, mem = r["times"], r["memory"]
    base = t["mlp (same params)"]
    print(f"\n{r['i']}->{r['o']}, batch {r['b']}, grid {r['grid']}  (ratios to the MLP layer: "
          f"{base['fwd']:.2f} ms fwd, {base['fwd+bwd']:.2f} ms fwd+bwd; {base['reps']} repeats)")
    print("| layer | fwd ms | fwd+bwd ms | fwd / MLP | fwd+bwd / MLP | peak MB | saved MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, v in sorted(t.items(), key=lambda kv: kv[1]["fwd+bwd"]):
        m = mem.get(name) or {}
        peak = f"{m['peak_mb']:.0f}" if m else ""
        saved = f"{m['saved_mb']:.1f}" if m else ""
        print(f"| {name} | {v['fwd']:.2f} | {v['fwd+bwd']:.2f} | {v['fwd'] / base['fwd']:.2f} | "
              f"{v['fwd+bwd'] / base['fwd+bwd']:.2f} | {peak} | {saved} |")
    compiled = [n for n in t if is_compiled(n)]
    if compiled:  # their first fwd+bwd includes torch.compile, excluded from the times above
        print("first fwd+bwd (torch.compile, not in the times): "
              + ", ".join(f"{n} {t[n]['first_s']:.1f} s" for n in compiled))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
