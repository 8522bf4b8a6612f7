"""The kan-paper-toy preset's protocol on its seeds, in float64 and float32: RMSE at each grid size.

Runs every (model, seed) of the preset in this process (no run folders) and prints, per model,
dtype and grid size, the median over seeds of the train and test RMSE at the end of the grid
stage, each seed's test RMSE, the least-squares log-log slope, and PyKAN 0.2.8's published-tutorial
figures (its own run of the same protocol, one seed, float32; issue 20) beside them.

    .venv/bin/python benchmarks/grid_extension.py                 # the preset: ~4 min per dtype on 2 cores
    .venv/bin/python benchmarks/grid_extension.py --dtype float64 --set train.steps=50
    .venv/bin/python benchmarks/grid_extension.py --speed    # loss+gradient, uniform vs updated grid only
    benchmarks/.peers-venv/bin/python benchmarks/grid_extension.py --both --dtype float64 --set 'seeds=[0]'

--both runs kanlab, then PyKAN, in this process and adds, per grid size, both test RMSE medians
and LBFGS steps per second with their ratio (speed at the accuracy each reached). --pykan runs
only PyKAN 0.2.8 (benchmarks/setup_peers.sh, then benchmarks/.peers-venv/bin/python) on
the same protocol, data and seeds instead: MultKAN with the preset's widths and seed, refine() to
each grid size, fit(opt="LBFGS", steps=...) with PyKAN's defaults (grid updates every 5 steps
before step 50). About 10-25 minutes per seed on one core.

--speed times what each LBFGS evaluation of the toy costs (kanlab.training.native_objective: the [2, 5, 1]
KAN's MSE and gradient on 1000 points from the native kernels) on the uniform grid and after
update_grids (quantile knots), round-robin in one process; medians and their ratio.
"""

from __future__ import annotations  # noqa: I001  (kanlab before torch, below)

# kanlab first: torch's OpenMP threads then sleep when idle, as under the kanlab command
import kanlab  # noqa: F401
import argparse
import dataclasses
import datetime
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from kanlab.models.stack import KAN
from kanlab.runs.experiment import build_model
from kanlab.study.config import ExperimentConfig, load_study
from kanlab.study.experiments import expand
from kanlab.tasks import Dataset, make_dataset
from kanlab.training.config import DTYPES
from kanlab.training.loop import kan_layers, train, update_grids
from kanlab.training.native_objective import mse_objective

# PyKAN 0.2.8 on its tutorial's toy: [2, 5, 1], grids 3 -> 50, 200 LBFGS steps each, float32, one
# seed (the figures issue 20 quotes), and the [2, 1, 1] tutorial's figure at grid 50.
PYKAN_TEST_RMSE = {"KAN [2, 5, 1]": {3: 1.4e-3, 5: 5.7e-4, 10: 1.6e-4, 20: 5.4e-5, 50: 7.1e-5},
                   "KAN [2, 1, 1]": {50: 2.5e-6}}


Results = dict[str, dict[int, list[tuple[float, float, float]]]]


def experiments(dtype: str, overrides: list[str], model: str | None) -> list:
    """The preset's experiments in dtype, only the model labelled `model` where given."""
    exps = expand(load_study("kan-paper-toy", [f"train.dtype={dtype}", *overrides]))
    return [e for e in exps if model is None or e.label == model]


def dataset(exp: ExperimentConfig, dtype: str, data: str) -> Dataset:
    """The preset task's data, or with data="pykan" the same function on the points PyKAN's
    tutorial trains on: kan.utils.create_dataset(f, n_var=2) with its default seed 0 (1000 train
    and 1000 test points, uniform on [-1, 1]^2, drawn in dtype as PyKAN draws them)."""
    ours = make_dataset(exp.task, DTYPES[dtype])
    if data == "ours":
        return ours
    from kan.utils import create_dataset  # the peers' environment only

    before = torch.get_default_dtype()
    torch.set_default_dtype(DTYPES[dtype])
    try:
        theirs = create_dataset(lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2),
                                n_var=2)
    finally:
        torch.set_default_dtype(before)
    return dataclasses.replace(ours, x_train=theirs["train_input"], y_train=theirs["train_label"],
                               x_test=theirs["test_input"], y_test=theirs["test_label"],
                               coords_train=theirs["train_input"], coords_test=theirs["test_input"])


def run(dtype: str, overrides: list[str], model: str | None = None, data: str = "ours") -> Results:
    """{label: {grid: [(train_rmse, test_rmse, steps per second) per seed]}} of the preset in dtype."""
    out: Results = {}
    for exp in experiments(dtype, overrides, model):
        exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, dtype=dtype))
        t0 = time.perf_counter()
        history = train(build_model(exp), dataset(exp, dtype, data), exp.train)
        print(f"  {exp.label} seed {exp.seed} {dtype}: {history.status} in {time.perf_counter() - t0:.0f} s",
              flush=True)
        ends = {r["grid_size"]: r["time"] for r in history.records}  # each stage's last record
        begin = 0.0
        for st in history.stages:  # a diverged run keeps the stages it completed
            seconds, begin = ends[st["grid_size"]] - begin, ends[st["grid_size"]]
            out.setdefault(exp.label, {}).setdefault(st["grid_size"], []).append(
                (st["train_rmse"], st["test_rmse"], exp.train.steps / seconds))
    return out


def run_pykan(dtype: str, overrides: list[str], model: str | None = None, data: str = "ours") -> Results:
    """run()'s results for PyKAN 0.2.8 on the preset's protocol, data and seeds."""
    from kan import MultKAN  # the peers' environment only

    out: Results = {}
    torch_dtype = DTYPES[dtype]
    before, cwd = torch.get_default_dtype(), os.getcwd()
    torch.set_default_dtype(torch_dtype)  # PyKAN builds its parameters in the default dtype
    os.chdir(tempfile.mkdtemp())  # PyKAN writes checkpoints into the working directory
    try:
        for exp in experiments(dtype, overrides, model):
            d = dataset(exp, dtype, data)
            ds = {"train_input": d.x_train, "train_label": d.y_train,
                  "test_input": d.x_test, "test_label": d.y_test}
            width = [int(w) for w in exp.spec.split(":")[1].split("-")]
            t0 = time.perf_counter()
            kan = None
            for grid in exp.train.grid_stages:
                kan = MultKAN(width=width, grid=grid, k=3, seed=exp.seed) if kan is None else kan.refine(grid)
                t1 = time.perf_counter()
                kan.fit(ds, opt="LBFGS", steps=exp.train.steps, log=10**9)
                seconds = time.perf_counter() - t1
                with torch.no_grad():
                    rmse = [float(torch.sqrt(torch.mean((kan(x) - y) ** 2)))
                            for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test))]
                rate = exp.train.steps / seconds
                out.setdefault(exp.label, {}).setdefault(grid, []).append((rmse[0], rmse[1], rate))
            print(f"  PyKAN {exp.label} seed {exp.seed} {dtype}: {time.perf_counter() - t0:.0f} s",
                  flush=True)
    finally:
        torch.set_default_dtype(before)
        os.chdir(cwd)
    return out


def versus(ours: Results, theirs: Results, dtype: str) -> None:
    """Per model and grid: both test RMSE medians and their ratio (below 1: kanlab's lower, so its
    speed is at equal or better accuracy), LBFGS steps per second and their ratio."""
    for label in ours:
        print(f"\n{label}, {dtype}: kanlab against PyKAN 0.2.8, same protocol, seeds and process")
        print("| grid | kanlab test RMSE | PyKAN test RMSE | RMSE ratio | kanlab steps/s | PyKAN steps/s "
              "| speed ratio |")
        print("|---|---|---|---|---|---|---|")
        for g in sorted(ours[label]):
            a, b = ours[label][g], theirs.get(label, {}).get(g, [])
            if not b:
                continue
            (rmse_a, rate_a), (rmse_b, rate_b) = (
                (statistics.median(r[1] for r in rs), statistics.median(r[2] for r in rs)) for rs in (a, b))
            print(f"| {g} | {rmse_a:.2g} | {rmse_b:.2g} | {rmse_a / rmse_b:.2f} | {rate_a:.3g} "
                  f"| {rate_b:.3g} | {rate_a / rate_b:.1f}x |")


def table(results: Results, dtype: str) -> None:
    """Print one markdown table per model: grid, median train/test RMSE, seeds' test RMSE, LBFGS
    steps per second, PyKAN's tutorial figure."""
    for label, per_grid in results.items():
        grids = sorted(per_grid)
        print(f"\n{label}, {dtype}")
        print("| grid | train RMSE (median) | test RMSE (median) | test RMSE per seed | steps/s (median) "
              "| PyKAN's tutorial |")
        print("|---|---|---|---|---|---|")
        medians = []
        for g in grids:
            train_rmse = statistics.median(r[0] for r in per_grid[g])
            test_rmse = statistics.median(r[1] for r in per_grid[g])
            medians.append(test_rmse)
            seeds = ", ".join(f"{r[1]:.2g}" for r in per_grid[g])
            pykan = PYKAN_TEST_RMSE.get(label, {}).get(g)
            theirs = "-" if pykan is None else f"{pykan:.2g}"
            rate = statistics.median(r[2] for r in per_grid[g])
            print(f"| {g} | {train_rmse:.2g} | {test_rmse:.2g} | {seeds} | {rate:.3g} | {theirs} |")
        if len(grids) > 1:
            slope = np.polyfit(np.log(grids), np.log(medians), 1)[0]
            print(f"test RMSE ~ G^{slope:.2f} (least squares over the medians)")


def speed(rounds: int = 400) -> None:
    """Median time of one loss+gradient of the [2, 5, 1] toy, uniform grid vs after update_grids."""
    for dtype in (torch.float64, torch.float32):
        x = torch.rand(1000, 2, generator=torch.Generator().manual_seed(0), dtype=dtype) * 2 - 1
        y = torch.exp(torch.sin(torch.pi * x[:, :1]) + x[:, 1:] ** 2)
        models = {}
        for name in ("uniform", "updated"):
            torch.manual_seed(0)
            models[name] = KAN([2, 5, 1], grid_size=10).to(dtype)
            if name == "updated":
                update_grids(models[name], x)
        objectives, flats = {}, {}
        for name, model in models.items():
            params = list(model.parameters())
            objective = mse_objective(model, params, x, y)
            if objective is None:
                paths = [m.resolved_path() for m in kan_layers(model)]
                print(f"{name} {dtype}: not on the native path ({paths})")
                return
            objectives[name], flats[name] = objective, torch.cat([p.detach().reshape(-1) for p in params])
        times: dict[str, list[float]] = {name: [] for name in models}
        for r in range(rounds + 20):
            for name in models:  # round-robin: both see the same load
                t0 = time.perf_counter()
                objectives[name](flats[name])
                if r >= 20:
                    times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(v) for name, v in times.items()}
        print(f"loss+gradient [2, 5, 1], grid 10, 1000 points, {dtype}: "
              f"uniform {med['uniform'] * 1e3:.3f} ms, after update_grids {med['updated'] * 1e3:.3f} ms, "
              f"ratio {med['updated'] / med['uniform']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=("float64", "float32", "both"), default="both")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a study override, as kanlab's --set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed", action="store_true", help="only time a loss+gradient, uniform vs updated grid")
    ap.add_argument("--pykan", action="store_true", help="run PyKAN 0.2.8 on the same protocol instead")
    ap.add_argument("--both", action="store_true",
                    help="run kanlab, then PyKAN 0.2.8, and print both with their speed ratio per grid")
    ap.add_argument("--model", help="only the preset's model with this label, e.g. 'KAN [2, 5, 1]'")
    ap.add_argument("--data", choices=("ours", "pykan"), default="ours",
                    help="pykan: train and test on PyKAN's tutorial points (create_dataset, seed 0; "
                         "the peers' environment)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.speed:
        speed()
        return
    who = "kanlab and PyKAN 0.2.8" if args.both else "PyKAN 0.2.8" if args.pykan else "kanlab"
    print(f"kan-paper-toy grid extension, {who}, {datetime.date.today()}, torch {torch.__version__}, "
          f"{args.threads} threads, data: {args.data}")
    for dtype in ("float64", "float32") if args.dtype == "both" else (args.dtype,):
        ours = None if args.pykan else run(dtype, args.overrides, args.model, args.data)
        theirs = run_pykan(dtype, args.overrides, args.model, args.data) if args.pykan or args.both else None
        for results in (ours, theirs):
            if results is not None:
                table(results, dtype)
        if ours is not None and theirs is not None:
            versus(ours, theirs, dtype)


if __name__ == "__main__":
    main()
