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

--repeat N runs each library N times, alternating (kanlab then PyKAN, then PyKAN then kanlab, ...)
so that a change of load falls on both alike, and ends with the median steps/s per stage and the
median of the per-run ratios (run r of kanlab against run r of PyKAN). PyKAN's prune leaves a
width that varies from run to run ([2, 2, 1], sometimes [2, 1, 1] or [2, 3, 1]; kanlab's leaves
[2, 1, 1] for this seed): every run prints both, and the summary compares auto-fix twice: with
PyKAN's own prune, whatever it left, and with PyKAN at kanlab's widths (its own prune where that
left them, else the same fitted PyKAN model pruned to them: each hidden layer keeps its nodes of
highest attribution score, then PyKAN's edge pruning).

    .venv/bin/python benchmarks/symbolic_stages.py --with-peers --repeat 3
"""

from __future__ import annotations  # noqa: I001  (kanlab before torch, below)

# kanlab first: torch's OpenMP threads then sleep when idle, as under the kanlab command
import kanlab  # noqa: F401
import argparse
import contextlib
import datetime
import io
import os
import statistics
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


Rates = dict[str, float]  # stage -> steps per second


def kanlab_stages(data: Dataset, cfg: SymbolicConfig, *, show: bool) -> tuple[Rates, tuple[int, ...]]:
    """Run the workflow with each stage's training (workflow._train, which names the stage) timed;
    returns steps/s per stage and the widths pruning left."""
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
    pruned = next((s.widths for s in result.stages if s.name == "prune"), result.stages[0].widths)
    if show:
        print(f"kanlab's formula: {result.formula}, pruned to {list(pruned)}")
        print("| kanlab stage | sparsity | grid updates | steps | steps/s |")
        print("|---|---|---|---:|---:|")
        for name, tc, steps, seconds in timed:
            updates = f"every {tc.grid_update_every}" if tc.grid_update_every else "no"
            print(f"| {name} | {tc.sparsity:g} | {updates} | {steps} | {steps / seconds:.1f} |")
    return {name: steps / seconds for name, _, steps, seconds in timed}, pruned


def pykan_stages(data: Dataset, cfg: SymbolicConfig, like: tuple[int, ...] | None, *,
                 show: bool) -> tuple[Rates, tuple[int, ...]] | None:
    """PyKAN's fits (see the module docstring): steps/s per fit and the widths its prune left;
    None without PyKAN. Where its prune leaves other widths than `like` (kanlab's), auto-fix also
    runs on the same fitted model pruned to those widths ("auto-fix, kanlab's widths")."""
    try:
        from kan import MultKAN
        from kan.utils import SYMBOLIC_LIB
    except ImportError:
        return None
    before, cwd = torch.get_default_dtype(), os.getcwd()
    torch.set_default_dtype(torch.float64)
    os.chdir(tempfile.mkdtemp())  # PyKAN writes checkpoints into the working directory
    rates: Rates = {}
    notes = []
    try:
        ds = {"train_input": data.x_train, "train_label": data.y_train,
              "test_input": data.x_test, "test_label": data.y_test}
        with quiet():
            model = MultKAN(width=[2, 5, 1], grid=5, k=3, seed=0)

        def fit(what: str, net: Any, lamb: float, update: bool) -> None:
            t0 = time.perf_counter()
            with quiet():
                net.fit(ds, opt="LBFGS", steps=cfg.steps, lamb=lamb, update_grid=update, log=10**9)
            rates[what] = cfg.steps / (time.perf_counter() - t0)

        def auto_fix(what: str, pruned: Any) -> tuple[int, ...]:
            # The stage kanlab's auto-fix corresponds to: layer 0's edges of the pruned model fixed
            # to the functions PyKAN's suggest_symbolic ranks first among kanlab's library, then
            # fit on that partly symbolic model (PyKAN runs its symbolic and spline branches both).
            library = [name for name in cfg.library if name in SYMBOLIC_LIB]
            with quiet():
                pruned(ds["train_input"])  # the activations suggest_symbolic fits
                fixed = []
                for i in range(pruned.width_in[0]):
                    for j in range(pruned.width_out[1]):
                        name = pruned.suggest_symbolic(0, i, j, lib=library, verbose=False)[0]
                        pruned.fix_symbolic(0, i, j, name, verbose=False, log_history=False)
                        fixed.append(f"({i},{j}) {name}")
            widths = tuple(w if isinstance(w, int) else w[0] for w in pruned.width)
            notes.append(f"{what}: {list(widths)}, layer 0 fixed: {', '.join(fixed)}")
            fit(what, pruned, 0.0, False)
            return widths

        fit("sparsify", model, cfg.sparsity, True)
        fit("plain, grid updates", model, 0.0, True)
        fit("plain, no updates", model, 0.0, False)
        with quiet():
            own = model.prune()  # a new model: `model` stays as fitted
        widths = auto_fix("auto-fix", own)
        if like is not None and widths != like and len(like) == len(widths):
            # the same fitted model pruned to kanlab's widths: each hidden layer keeps its nodes
            # of highest attribution score (PyKAN's own measure), then PyKAN's edge pruning
            with quiet():
                model.attribute()
                keep = [torch.argsort(model.node_scores[n], descending=True)[:like[n]].tolist()
                        for n in range(1, len(like) - 1)]
                alike = model.prune_node(active_neurons_id=keep, log_history=False)
                alike(ds["train_input"])
                alike.attribute()
                alike.prune_edge(log_history=False)
            auto_fix("auto-fix, kanlab's widths", alike)
    finally:
        torch.set_default_dtype(before)
        os.chdir(cwd)
    if show:
        print("PyKAN pruned to " + "; ".join(notes))
        print("| PyKAN fit | steps | steps/s |")
        print("|---|---:|---:|")
        for what, rate in rates.items():
            print(f"| {what} | {cfg.steps} | {rate:.1f} |")
    return rates, widths


# kanlab's stage -> the PyKAN fit it is compared with
PEER_OF = {"sparsify": "sparsify", "retrain": "plain, grid updates", "refine": "plain, grid updates",
           "auto-fix layer 0": "auto-fix"}


def summary(ours: list[tuple[Rates, tuple[int, ...]]], peers: list[tuple[Rates, tuple[int, ...]]]) -> None:
    """Median steps/s per stage over the runs, and the median of the per-run ratios (run r of
    kanlab against run r of PyKAN). Auto-fix twice: against PyKAN's own prune, whatever width it
    left, and against PyKAN at kanlab's widths (its own prune where that left them, else the
    fitted model pruned to them)."""
    med = statistics.median
    print(f"\nMedians over {len(ours)} runs ({datetime.datetime.now():%Y-%m-%d %H:%M}, "
          f"load average {os.getloadavg()[0]:.1f}); PyKAN's prune left "
          f"{', '.join(str(list(w)) for _, w in peers) or '-'}, kanlab's "
          f"{', '.join(str(list(w)) for _, w in ours)}")
    print("| kanlab stage | kanlab steps/s | PyKAN fit | PyKAN steps/s | median ratio |")
    print("|---|---:|---|---:|---:|")
    for name in ours[0][0]:
        rate = med(r[name] for r, _ in ours)
        peer = PEER_OF.get(name)
        if peer is None or not peers:
            print(f"| {name} | {rate:.1f} | | | |")
            continue
        rows = [(peer, [(o[0][name], p[0][peer]) for o, p in zip(ours, peers, strict=False)])]
        if peer == "auto-fix":  # PyKAN's prune width varies from run to run: like with like too
            alike = [(o[0][name], p[0].get("auto-fix, kanlab's widths", p[0][peer])) for o, p in
                     zip(ours, peers, strict=False) if o[1] == p[1] or "auto-fix, kanlab's widths" in p[0]]
            rows.append(("auto-fix at kanlab's widths", alike))
        for what, pairs in rows:
            if pairs:
                print(f"| {name} | {rate:.1f} | {what} | {med(b for _, b in pairs):.1f} "
                      f"| {med(a / b for a, b in pairs):.1f}x |")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """PyKAN's progress bars and checkpoint messages off the table."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--with-peers", action="store_true", help="rerun under benchmarks/.peers-venv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each library, alternated (kanlab, PyKAN, PyKAN, kanlab, ...)")
    args = ap.parse_args()
    if args.with_peers:
        reexec_with_peers(__file__)
    torch.set_num_threads(args.threads)
    print(f"symbolic_stages, {datetime.datetime.now():%Y-%m-%d %H:%M}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    data, cfg = toy(), SymbolicConfig(sparsity=0.01)  # symbolic-demo's: it prunes this seed to the formula
    with torch.no_grad():  # build (or load) the native kernels before anything is timed
        KAN([2, 5, 1], grid_size=5).double()(data.x_train.double())
    ours: list[tuple[Rates, tuple[int, ...]]] = []
    peers: list[tuple[Rates, tuple[int, ...]]] = []
    for r in range(args.repeat):
        print(f"\nrun {r + 1} of {args.repeat}, {datetime.datetime.now():%H:%M:%S}, "
              f"load average {os.getloadavg()[0]:.1f}")
        # alternate which library goes first, so that a change of load falls on both alike
        for which in ("kanlab", "PyKAN") if r % 2 == 0 else ("PyKAN", "kanlab"):
            if which == "kanlab":
                ours.append(kanlab_stages(data, cfg, show=True))
            elif (done := pykan_stages(data, cfg, ours[0][1] if ours else None, show=True)) is not None:
                peers.append(done)
            elif r == 0:
                print("PyKAN is not installed (--with-peers): kanlab only")
    summary(ours, peers)


if __name__ == "__main__":
    main()
