"""LBFGS steps per second in each training stage of kanlab's symbolic workflow, beside PyKAN's fit.

kanlab: symbolic_workflow (SymbolicConfig's defaults but the symbolic-demo preset's sparsity, 0.01) on
the KAN paper's toy exp(sin(pi x) + y^2)
(kanlab's exp_sin task, seed 0: 1000 train / 1000 test points), KAN [2, 5, 1] at grid 5, float64;
every stage's train() call is timed (sparsify, retrain, refine, one per auto-fixed layer, final;
the time includes each stage's evaluation at its start and end). PyKAN 0.2.8 (when installed,
--with-peers): MultKAN [2, 5, 1] at grid 5 on the same points, fit(opt="LBFGS", steps=50) with
lamb = kanlab's sparsity (its regularised stage), then with lamb = 0 with and without grid
updates (its plain stages); then the stage that matches kanlab's auto-fix: PyKAN's prune, layer
0's edges fixed (fix_symbolic) to what its suggest_symbolic ranks first among kanlab's library,
and fit(opt="LBFGS", steps=50, lamb=0, update_grid=False) on that partly symbolic model. One
thread: the ratio of the two is what matters.

    .venv/bin/python benchmarks/symbolic_stages.py --with-peers
"""

from __future__ import annotations  # noqa: I001  (kanlab before torch, below)

# kanlab first: torch's OpenMP threads then sleep when idle, as under the kanlab command
import kanlab  # noqa: F401
import argparse
import contextlib
import datetime
import io
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import torch
from _common import reexec_with_peers  # benchmarks/ is sys.path[0]

import kanlab.symbolic.workflow as workflow
from kanlab.models.stack import KAN
from kanlab.symbolic import SymbolicConfig, symbolic_workflow
from kanlab.tasks import Dataset, function_dataset


def toy() -> Dataset:
    """The symbolic-demo preset's first task: exp_sin, 1000 train / 1000 test points, seed 0."""
    return function_dataset("exp_sin", 1000, 1000, seed=0)


def kanlab_stages(data: Dataset, cfg: SymbolicConfig) -> None:
    """Run the workflow with each stage's training (workflow._train, which names the stage) timed."""
    timed: list[tuple[str, Any, int, float]] = []
    stage = workflow._train

    def timing(model: torch.nn.Module, d: Any, tc: Any, name: str) -> int:
        t0 = time.perf_counter()
        steps = stage(model, d, tc, name)
        timed.append((name, tc, steps, time.perf_counter() - t0))
        return steps

    workflow._train = timing
    try:
        torch.manual_seed(0)
        result = symbolic_workflow(KAN([2, 5, 1], grid_size=5).double(), data, cfg)
    finally:
        workflow._train = stage
    print(f"kanlab's formula: {result.formula}")
    print("| kanlab stage | sparsity | grid updates | steps | steps/s |")
    print("|---|---|---|---:|---:|")
    for name, tc, steps, seconds in timed:
        updates = f"every {tc.grid_update_every}" if tc.grid_update_every else "no"
        print(f"| {name} | {tc.sparsity:g} | {updates} | {steps} | {steps / seconds:.1f} |")


def pykan_stages(data: Dataset, cfg: SymbolicConfig) -> None:
    try:
        from kan import MultKAN
        from kan.utils import SYMBOLIC_LIB
    except ImportError:
        print("PyKAN is not installed (--with-peers): kanlab only")
        return
    before, cwd = torch.get_default_dtype(), os.getcwd()
    torch.set_default_dtype(torch.float64)
    os.chdir(tempfile.mkdtemp())  # PyKAN writes checkpoints into the working directory
    try:
        ds = {"train_input": data.x_train, "train_label": data.y_train,
              "test_input": data.x_test, "test_label": data.y_test}
        with quiet():
            model = MultKAN(width=[2, 5, 1], grid=5, k=3, seed=0)
        print("| PyKAN fit | lamb | grid updates | steps | steps/s |")
        print("|---|---|---|---:|---:|")

        def fit(what: str, lamb: float, update: bool) -> None:
            t0 = time.perf_counter()
            with quiet():
                model.fit(ds, opt="LBFGS", steps=cfg.steps, lamb=lamb, update_grid=update, log=10**9)
            print(f"| {what} | {lamb:g} | {'yes' if update else 'no'} | {cfg.steps} "
                  f"| {cfg.steps / (time.perf_counter() - t0):.1f} |")

        for lamb, update in ((cfg.sparsity, True), (0.0, True), (0.0, False)):
            fit("", lamb, update)
        # The stage kanlab's auto-fix corresponds to: PyKAN's own prune, layer 0's edges fixed to
        # the functions its suggest_symbolic ranks first among kanlab's library, then fit on that
        # partly symbolic model (PyKAN runs its symbolic and spline branches both, as always).
        library = [name for name in cfg.library if name in SYMBOLIC_LIB]
        with quiet():
            model = model.prune()
            model(ds["train_input"])  # the activations suggest_symbolic fits
            fixed = []
            for i in range(model.width_in[0]):
                for j in range(model.width_out[1]):
                    name = model.suggest_symbolic(0, i, j, lib=library, verbose=False)[0]
                    model.fix_symbolic(0, i, j, name, verbose=False, log_history=False)
                    fixed.append(f"({i},{j}) {name}")
        widths = [w if isinstance(w, int) else w[0] for w in model.width]
        fit(f"pruned to {widths}, layer 0 fixed: {', '.join(fixed)}", 0.0, False)
    finally:
        torch.set_default_dtype(before)
        os.chdir(cwd)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """PyKAN's progress bars and checkpoint messages off the table."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--with-peers", action="store_true", help="rerun under benchmarks/.peers-venv")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.with_peers:
        reexec_with_peers(__file__)
    torch.set_num_threads(args.threads)
    print(f"symbolic_stages, {datetime.datetime.now():%Y-%m-%d %H:%M}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    data, cfg = toy(), SymbolicConfig(sparsity=0.01)  # symbolic-demo's: it prunes this seed to the formula
    kanlab_stages(data, cfg)
    pykan_stages(data, cfg)


if __name__ == "__main__":
    main()
