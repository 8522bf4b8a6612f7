"""Whole training runs: steps per second and final loss, kanlab against PyKAN 0.2.8 (when installed)
and a tanh MLP, on the same data, seed and number of steps, in one process.

    .venv/bin/python benchmarks/training.py [--quick | --full] [--threads 2] [--with-peers]
    .venv/bin/python benchmarks/training.py --with-peers --toy-seeds 20   # the toy's loss over seeds

(a) "image": the blog experiment's sizes: camera at 256x256, pow2 encoding with 8 channels per
    coordinate (16 features), KAN (grid 5, order 3) and tanh MLP of ~30k parameters each, batch
    16384 drawn with a seeded generator, Adam at lr 5e-3, float32.
(b) "toy": the KAN paper's toy exp(sin(pi x) + y^2), KAN [2, 5, 1] at grid 5, 1000 points, LBFGS
    (strong Wolfe, history 10, the full 20 iterations per step), float64. "LBFGS kanlab" is what
    kanlab.training runs (kanlab.training.LBFGS, on the native kernels' loss and gradient for a small
    KAN); "torch" is torch.optim.LBFGS with a closure, what PyKAN's fit runs (its LBFGS is a
    copy of torch's). The same method either way: equal iterates up to round-off. The tanh MLP
    [2, 5, 1] (three small ops per forward) shows the floor of autograd at this size.
No grid updates in either: the same method on the same model size is what is compared.
(c) "grid extension": the kan-paper-toy preset's protocol (grids 3 -> 5 -> 10 -> 20 -> 50, grid
    updates, float64) on its first seed, kanlab's `train` against PyKAN's refine + fit, the same
    number of LBFGS steps per grid (the budget's LBFGS steps; the preset has 200): per grid both
    test RMSEs, their ratio (the accuracy each reached) and both steps/s with their ratio.
    benchmarks/grid_extension.py --both runs the same on every seed. Only with PyKAN installed.
steps/s leave out the first step, which for kanlab's path="compiled" includes torch.compile (its
seconds are the "first step" column); the 10 --quick steps are too few for a steady rate.
--device cuda: models and data on the GPU (the same data, batches drawn on the CPU), every step's
clock read after torch.cuda.synchronize() (_common.clock); kanlab's LBFGS then runs its closure (the
native loss and gradient are CPU only); a model that fails on the device is reported and skipped.
"""

from __future__ import annotations  # noqa: I001  (kanlab before torch, below)

# kanlab first: torch's OpenMP threads then sleep when idle, as under the kanlab command
import kanlab  # noqa: F401
import argparse
import functools
import math
import os
import sys
import tempfile
from collections.abc import Callable

import torch
from _common import add_device_option, clock, pick_device, reexec_with_peers  # benchmarks/ is sys.path[0]
from torch import nn

CPU = torch.device("cpu")


def image_data(n_batches: int, batch: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    from kanlab.tasks.encodings import EncodingConfig, encode
    from kanlab.tasks.image import image_dataset

    ds = image_dataset("camera", 256)
    x = encode(torch.as_tensor(ds.x_train, dtype=torch.float32), EncodingConfig("pow2", channels=8))
    y = torch.as_tensor(ds.y_train, dtype=torch.float32).reshape(len(x), 1)
    gen = torch.Generator().manual_seed(0)
    return x, y, [torch.randint(0, len(x), (batch,), generator=gen) for _ in range(n_batches)]


def toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1000, 2, generator=gen, dtype=torch.float64) * 2 - 1
    return x, torch.exp(torch.sin(math.pi * x[:, :1]) + x[:, 1:] ** 2)


def pykan(width: list[int], dtype: torch.dtype, seed: int = 0) -> nn.Module | None:
    """PyKAN's MultKAN with its per-step extras off (no stored activations, no symbolic branch)."""
    try:
        from kan import MultKAN
    except ImportError:
        return None
    old, cwd = torch.get_default_dtype(), os.getcwd()
    torch.set_default_dtype(dtype)
    try:
        with tempfile.TemporaryDirectory() as tmp:  # its constructor may write ./model
            os.chdir(tmp)
            model = MultKAN(width=width, grid=5, k=3, seed=seed, save_act=False, symbolic_enabled=False,
                            auto_save=False)
    finally:
        os.chdir(cwd)
        torch.set_default_dtype(old)
    return model  # type: ignore[no-any-return]


def run_adam(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batches: list[torch.Tensor],
             lr: float, device: torch.device = CPU) -> tuple[float, float, float]:
    """steps/s over steps 2.. (the first, which compiles where torch.compile is used, apart), the
    first step's seconds, and the final MSE over all pixels."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    marks = [clock(device)]
    for idx in batches:
        opt.zero_grad(set_to_none=True)
        loss = torch.mean((model(x[idx]) - y[idx]) ** 2)
        loss.backward()
        opt.step()
        marks.append(clock(device))
    with torch.no_grad():
        full = torch.cat([torch.mean((model(xc) - yc) ** 2, 0, keepdim=True) * len(xc)
                          for xc, yc in zip(x.split(16384), y.split(16384), strict=True)]).sum() / len(x)
    return _rate(marks), marks[1] - marks[0], full.item()


def _rate(marks: list[float]) -> float:
    return (len(marks) - 2) / (marks[-1] - marks[1])


def run_lbfgs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
              optimizer: str = "torch", device: torch.device = CPU) -> tuple[float, float, float]:
    """As run_adam, one LBFGS step (up to 20 iterations) at a time. optimizer "torch" is
    torch.optim.LBFGS with a closure; "kanlab" is what kanlab.training.loop runs: kanlab.training.lbfgs.LBFGS,
    with kanlab.training.native_objective's loss and gradient where the model allows, else a closure."""
    from kanlab.training.lbfgs import LBFGS
    from kanlab.training.native_objective import lbfgs_step

    tolerances = {"tolerance_grad": 1e-32, "tolerance_change": 1e-32}  # always the full 20 iterations
    if optimizer == "torch":
        opt: torch.optim.Optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, history_size=10,
                                                       line_search_fn="strong_wolfe", **tolerances)
    else:
        opt = LBFGS(model.parameters(), lr=1.0, history_size=10, **tolerances)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        return loss

    marks = [clock(device)]
    for _ in range(steps):
        if isinstance(opt, LBFGS):
            lbfgs_step(opt, model, x, y, closure)
        else:
            opt.step(closure)  # type: ignore[no-untyped-call]
        marks.append(clock(device))
    with torch.no_grad():
        return _rate(marks), marks[1] - marks[0], torch.mean((model(x) - y) ** 2).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="10 Adam steps, 10 LBFGS steps (default 30, 30)")
    size.add_argument("--full", action="store_true", help="500 Adam steps, 200 LBFGS steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--with-peers", action="store_true", help="rerun under benchmarks/.peers-venv")
    ap.add_argument("--no-grid-extension", dest="grid_extension", action="store_false",
                    help="skip (c), the toy's grid extension against PyKAN")
    ap.add_argument("--toy-seeds", type=int, metavar="N",
                    help="only the toy: kanlab and PyKAN at seeds 0..N-1, per seed and summarized (CPU)")
    add_device_option(ap)
    args = ap.parse_args()
    if args.with_peers:
        reexec_with_peers(__file__)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    adam_steps, lbfgs_steps = (10, 10) if args.quick else (500, 200) if args.full else (30, 30)
    if args.toy_seeds:
        if device.type != "cpu":
            sys.exit("--toy-seeds runs on the CPU only: leave out --device")
        toy_seeds(args.toy_seeds, lbfgs_steps)
        return
    from kanlab.models.budget import match_params
    from kanlab.models.stack import MLP, param_count

    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    x, y, batches = image_data(adam_steps, 16384)
    x, y, batches = x.to(device), y.to(device), [idx.to(device) for idx in batches]
    kan_widths = list(match_params("kan", 30_000, depth=2, in_features=16, out_features=1, grid_size=5,
                                   widths_only=True))
    models: dict[str, Callable[[], nn.Module | None]] = {
        f"kanlab KAN {kan_widths}": lambda: match_params("kan", 30_000, depth=2, in_features=16,
                                                         out_features=1, grid_size=5),
        f"kanlab KAN {kan_widths} compiled": lambda: match_params(
            "kan", 30_000, depth=2, in_features=16, out_features=1, grid_size=5, path="compiled"),
        "kanlab MLP tanh": lambda: match_params("mlp", 30_000, depth=2, in_features=16, out_features=1,
                                                activation="tanh"),
        f"pykan 0.2.8 {kan_widths}": lambda: pykan(kan_widths, torch.float32),
    }
    print(f"\n(a) image, camera 256x256, batch 16384, Adam lr 5e-3, {adam_steps} steps, float32")
    print("| model | params | steps/s | first step s | final MSE (all pixels) |")
    print("|---|---:|---:|---:|---:|")
    for name, make in models.items():
        torch.manual_seed(0)
        model = make()
        if model is None:
            continue
        result = on_device(name, model, device, lambda m: run_adam(m, x, y, batches, 5e-3, device))
        if result is None:
            continue
        steps_s, first_s, mse = result
        print(f"| {name} | {param_count(model)} | {steps_s:.2f} | {first_s:.2f} | {mse:.5f} |", flush=True)

    tx, ty = toy_data()
    tx, ty = tx.to(device), ty.to(device)
    print(f"\n(b) toy exp(sin(pi x) + y^2), 1000 points, KAN [2, 5, 1] grid 5, LBFGS, {lbfgs_steps} steps, "
          "float64")
    print("| model | LBFGS | params | steps/s | first step s | final MSE |")
    print("|---|---|---:|---:|---:|---:|")
    toy: list[tuple[str, str, Callable[[], nn.Module | None]]] = [
        ("kanlab KAN [2, 5, 1]", "kanlab", lambda: _kanlab_toy("auto")),
        ("kanlab KAN [2, 5, 1]", "torch", lambda: _kanlab_toy("auto")),
        ("kanlab KAN [2, 5, 1] dense", "torch", lambda: _kanlab_toy("dense")),
        ("kanlab KAN [2, 5, 1] compiled", "torch", lambda: _kanlab_toy("compiled")),
        ("kanlab MLP tanh [2, 5, 1]", "kanlab", lambda: MLP([2, 5, 1], activation="tanh").double()),
        ("kanlab MLP tanh [2, 5, 1]", "torch", lambda: MLP([2, 5, 1], activation="tanh").double()),
        ("pykan 0.2.8 [2, 5, 1]", "torch", lambda: pykan([2, 5, 1], torch.float64)),
    ]
    for name, optimizer, make in toy:
        torch.manual_seed(0)
        model = make()
        if model is None:
            continue
        result = on_device(name, model, device, functools.partial(
            run_lbfgs, x=tx, y=ty, steps=lbfgs_steps, optimizer=optimizer, device=device))
        if result is None:
            continue
        steps_s, first_s, mse = result
        print(f"| {name} | {optimizer} | {param_count(model)} | {steps_s:.2f} | {first_s:.2f} | {mse:.3e} |",
              flush=True)
    if args.grid_extension and device.type == "cpu":
        grid_extension(lbfgs_steps)
    elif args.grid_extension:
        print("\n(c) grid extension: skipped on the GPU (the preset's runs are CPU runs here)")
    print(f"# load average {os.getloadavg()[0]:.1f} at end")


def grid_extension(steps: int) -> None:
    """(c): kan-paper-toy's [2, 5, 1] on seed 0, kanlab then PyKAN, per grid (grid_extension.py)."""
    import importlib.util

    if importlib.util.find_spec("kan") is None:
        print("\n(c) grid extension: skipped, PyKAN is not installed (--with-peers)")
        return
    import grid_extension as ge  # benchmarks/ is sys.path[0]

    overrides, model = [f"train.steps={steps}", "seeds=[0]"], "KAN [2, 5, 1]"
    print(f"\n(c) grid extension, kan-paper-toy's protocol, {model}, seed 0, {steps} LBFGS steps per grid, "
          "float64")
    ge.versus(ge.run("float64", overrides, model), ge.run_pykan("float64", overrides, model), "float64")


def on_device(name: str, model: nn.Module, device: torch.device,
              run: Callable[[nn.Module], tuple[float, float, float]]) -> tuple[float, float, float] | None:
    """run(model) with the model moved to device; on a GPU, a model that fails there is reported and
    left out (on the CPU every model must run)."""
    if device.type == "cpu":
        return run(model)
    try:
        model.to(device)  # in place (PyKAN's MultKAN.to also moves what it keeps outside parameters)
        return run(model)
    except Exception as err:
        print(f"# {name} left out: fails on {device}: {type(err).__name__}: {str(err)[:200]}", flush=True)
        return None


def toy_seeds(n: int, steps: int) -> None:
    """The toy at seeds 0..n-1 (torch's seed for kanlab's init, MultKAN's seed argument for
    PyKAN's), kanlab's LBFGS against PyKAN's torch LBFGS: final MSE and steps/s per seed, then
    median, mean and worst MSE and the median speed ratio."""
    import statistics

    tx, ty = toy_data()
    print(f"# toy exp(sin(pi x) + y^2), KAN [2, 5, 1] grid 5, LBFGS {steps} steps, float64, seeds 0..{n - 1}")
    print("| seed | kanlab MSE | kanlab steps/s | PyKAN MSE | PyKAN steps/s |")
    print("|---:|---:|---:|---:|---:|")
    runs: dict[str, list[tuple[float, float]]] = {"kanlab": [], "pykan": []}
    for seed in range(n):
        torch.manual_seed(seed)
        rate, _, mse = run_lbfgs(_kanlab_toy("auto"), tx, ty, steps, "kanlab")
        runs["kanlab"].append((rate, mse))
        peer = pykan([2, 5, 1], torch.float64, seed=seed)
        if peer is not None:
            rate, _, mse = run_lbfgs(peer, tx, ty, steps, "torch")
            runs["pykan"].append((rate, mse))
        cells = [f"{mse:.3e} | {rate:.1f}" for rate, mse in (r[seed] for r in runs.values() if r)]
        print(f"| {seed} | {' | '.join(cells)} |", flush=True)
    for name, rows in runs.items():
        if rows:
            mses = [mse for _, mse in rows]
            print(f"# {name}: MSE median {statistics.median(mses):.3e}, mean {statistics.fmean(mses):.3e}, "
                  f"worst {max(mses):.3e}; steps/s median {statistics.median(r for r, _ in rows):.1f}")
    if runs["pykan"]:
        ratios = [a / b for (a, _), (b, _) in zip(runs["kanlab"], runs["pykan"], strict=True)]
        wins = sum(a <= b for (_, a), (_, b) in zip(runs["kanlab"], runs["pykan"], strict=True))
        ours, theirs = [m for _, m in runs["kanlab"]], [m for _, m in runs["pykan"]]
        share, p = rank_test(ours, theirs)
        print(f"# kanlab / PyKAN steps/s: median {statistics.median(ratios):.1f}x; kanlab's MSE lower or "
              f"equal at {wins} of {n} seeds; P(kanlab's MSE < PyKAN's) = {share:.2f} over all pairs "
              f"(Mann-Whitney, two-sided p = {p:.2f}: 0.5 and a large p mean no difference)")


def rank_test(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mann-Whitney U as the share of pairs with a < b (ties count half) and its two-sided p-value
    by the normal approximation (no tie correction; fine for continuous losses, n >= 10)."""
    u = sum((x < y) + 0.5 * (x == y) for x in a for y in b)
    n1, n2 = len(a), len(b)
    z = (u - n1 * n2 / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return u / (n1 * n2), math.erfc(abs(z) / math.sqrt(2))


def _kanlab_toy(path: str) -> nn.Module:
    from kanlab.models.stack import KAN

    return KAN([2, 5, 1], grid_size=5, path=path).double()


if __name__ == "__main__":
    main()
