"""The `kanlab` command: run | compare | sweep | tune | report | eval | plot | list."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kanlab._cli_parser import DEFAULT_ROOT as DEFAULT_ROOT
from kanlab._cli_parser import EXECUTORS as EXECUTORS
from kanlab._cli_parser import build_parser
from kanlab._command import interrupted
from kanlab.runs.interrupts import ctrl_c_handled

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing before main() (kanlab/__init__)
if TYPE_CHECKING:
    from kanlab.runs.executors import Executor
    from kanlab.runs.experiment import Draw
    from kanlab.study.config import ExperimentConfig

def _executor(args: argparse.Namespace) -> Executor:
    from kanlab.runs import clusters, executors

    if args.address and args.executor not in ("dask", "ray"):
        raise ValueError("--address needs --executor dask or --executor ray")
    if args.executor == "dask" and not args.address:
        raise ValueError("--executor dask needs --address tcp://HOST:PORT (a running scheduler)")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.executor == "dask":
        return clusters.DaskExecutor.connect(args.address)
    if args.executor == "ray":
        return clusters.RayExecutor.connect(args.address, workers=args.workers)
    return executors.LocalExecutor(args.workers) if args.executor == "local" else executors.SerialExecutor()


def _threads(args: argparse.Namespace | None) -> int | None:
    """The torch threads each run of a sweep or tune computes on (part of its identity): one per pool or
    cluster worker; None (this process's count, as `kanlab run`) for the serial executor. args None:
    the default executor's (a local pool), for `kanlab report` of a sweep file."""
    from kanlab.runs.executors import WORKER_THREADS

    return WORKER_THREADS if args is None or args.executor != "serial" else None


def _sweep(args: argparse.Namespace) -> int:
    from kanlab.runs.driver import run_experiments
    from kanlab.study.sweep import load_sweep

    sweep = load_sweep(args.study, args.overrides, threads=_threads(args))  # all checked, nothing written
    axes = " x ".join(f"{len(values)} {key}" for key, values in sweep.axes) or "no axes"
    print(f"{sweep.name}: {len(sweep.experiments)} runs ({sweep.points} point(s) of {axes})")

    def work(executor: Executor) -> list[Path]:
        print(f"executing on {executor.description}")
        return run_experiments(sweep.experiments, args.root, _db(args), retry_failed=args.retry_failed,
                               draw=_draw(args.plots), executor=executor, annotations=sweep.annotations())

    if _on_executor(args, work) is None:
        return 2
    if not args.no_report:
        from kanlab.report.sweep import write_sweep_report
        from kanlab.runs.outputs import inside

        out = inside(args.root, sweep.name)
        print(f"report: {write_sweep_report(_db(args), sweep.name, out, runs=sweep.experiments)}")
    return 0


def _on_executor(args: argparse.Namespace, work: Callable[[Executor], list[Path]]) -> list[Path] | None:
    """work(executor) on the executor args name, closed afterwards; prints the runs' statuses.

    Returns:
        The run folders work returned, or None when the executor could not start (said on stderr).
    """
    from collections import Counter

    from kanlab.runs.executors import ExecutorUnavailable

    try:
        executor = _executor(args)
    except ExecutorUnavailable as err:
        print(f"kanlab: error: {err}", file=sys.stderr)
        return None
    try:
        folders = work(executor)
    finally:
        executor.close()
    statuses = Counter(json.loads((f / "final.json").read_text())["status"] for f in folders)
    print(", ".join(f"{n} {status}" for status, n in sorted(statuses.items())))
    return folders


def _tune(args: argparse.Namespace) -> int:
    from kanlab.runs.tune import journal_path, run_tune
    from kanlab.study.tune_config import load_tune

    tune = load_tune(args.study, args.overrides, threads=_threads(args))  # all checked, nothing written
    models = len({s.label for s in tune.studies})
    tasks = len(tune.studies) // models
    print(f"{tune.name}: {len(tune.studies)} searches ({models} models x {tasks} tasks), {tune.budget} each; "
          f"verdict on seeds {list(tune.seeds)}")
    from kanlab.runs.outputs import inside

    manifest = inside(args.root, tune.name) / "tune.json"

    def work(executor: Executor) -> list[Path]:
        print(f"executing on {executor.description}; Optuna studies in {journal_path(_db(args))}")
        folders, _ = run_tune(tune, args.root, _db(args), executor=executor, retry_failed=args.retry_failed,
                              draw=_draw(args.plots))
        print("verdict runs:", end=" ")
        return folders

    if _on_executor(args, work) is None:
        return 2
    print(f"manifest: {manifest}")
    if not args.no_report:
        from kanlab.report.tune import write_tune_report

        print(f"report: {write_tune_report(_db(args), manifest, manifest.parent)}")
    return 0


def _db(args: argparse.Namespace) -> Path:
    return args.db if args.db is not None else args.root / "kanlab.db"


def _draw(plots: bool) -> Draw | None:
    """The function that draws a run's plots into its folder, or None when plots are off."""
    if not plots:
        return None
    from kanlab.report.plots import draw_run

    return draw_run


def _run_study(args: argparse.Namespace, plots: bool = True
               ) -> tuple[str, list[ExperimentConfig], list[Path]]:
    from kanlab.runs.driver import run_experiments
    from kanlab.study.config import load_study
    from kanlab.study.experiments import expand

    study = load_study(args.study, args.overrides)
    experiments = expand(study)
    print(f"{study.name}: {len(experiments)} runs "
          f"({len(study.tasks)} tasks x {len(study.models)} models x {len(study.seeds)} seeds)")
    folders = run_experiments(experiments, args.root, _db(args), retry_failed=args.retry_failed,
                              draw=_draw(plots))
    return study.name, experiments, folders


def _expansion(source: str, overrides: Sequence[str]) -> tuple[str, list[ExperimentConfig] | None]:
    """`kanlab report`'s study: (name, its runs as its file expands now), or (source, None) for a bare
    study name (or a tune file, whose report shows the runs its manifest names)."""
    from kanlab.study.config import load_study, preset_names, read_study

    if not (source.endswith(".toml") or Path(source).is_file() or source in preset_names()):
        return source, None
    raw = read_study(source)
    if "tune" in raw or "search" in raw:
        return str(raw.get("name", "study")), None
    if "axes" in raw:
        from kanlab.study.sweep import load_sweep

        sweep = load_sweep(source, overrides, threads=_threads(args=None))
        return sweep.name, list(sweep.experiments)
    from kanlab.study.experiments import expand

    study = load_study(source, overrides)
    return study.name, expand(study)


def _write_report(name: str, args: argparse.Namespace, runs: Sequence[ExperimentConfig] | None) -> Path:
    """The study's report (of exactly `runs` when known), or the sweep or tune report of a sweep or tune."""
    from kanlab.report.html import write_report
    from kanlab.report.sweep import write_sweep_report
    from kanlab.runs.outputs import inside
    from kanlab.runs.store import ResultsStore

    db, out_dir = _db(args), inside(args.root, name)
    manifest = out_dir / "tune.json"
    if manifest.is_file():  # recorded by `kanlab tune`: its manifest names the verdict runs
        from kanlab.report.tune import write_tune_report

        return write_tune_report(db, manifest, out_dir)
    if db.is_file():
        with ResultsStore(db) as store:
            is_sweep = any("sweep" in json.loads(r["config_json"]) for r in store.runs(name))
        if is_sweep:
            return write_sweep_report(db, name, out_dir, runs=runs)
    return write_report(db, name, out_dir, runs=runs)


def _list() -> None:
    from kanlab.models.spec import FAMILIES
    from kanlab.study.config import preset_names
    from kanlab.tasks import DATASETS, FUNCTIONS, IMAGES

    print("presets: " + ", ".join(preset_names()))
    print("functions: " + ", ".join(FUNCTIONS))
    print("images: " + ", ".join(IMAGES) + " (or a path to a PNG/JPEG)")
    print("datasets: " + ", ".join(f"{name} ({kind})" for name, (kind, _) in DATASETS.items())
          + " (or kind = \"data\": a path to a CSV/npz)")
    print("families: " + ", ".join(FAMILIES))


# What each command imports (seconds: torch, matplotlib), loaded before it starts.
HEAVY = {
    "run": ("kanlab.runs.driver", "kanlab.report"),
    "compare": ("kanlab.runs.driver", "kanlab.report"),
    "sweep": ("kanlab.runs.driver", "kanlab.report", "kanlab.study.sweep"),
    "report": ("kanlab.report", "kanlab.runs.experiment", "kanlab.study.sweep"),
    "tune": ("kanlab.runs.tune", "kanlab.report"),
    "eval": ("kanlab.runs.experiment",),
    "plot": ("kanlab.report",),
    "list": ("kanlab.study.config",),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad input, with a message naming it)."""
    # The command writes image files and never opens a window: Agg whatever MPLBACKEND says (kanlab.report
    # alone keeps a backend already chosen, for notebooks). Local worker processes inherit it.
    os.environ["MPLBACKEND"] = "Agg"
    # A KeyboardInterrupt inside an import can leave a module half-built (numpy then fails with an
    # AttributeError traceback): a Ctrl-C while the command loads ends it at once, nothing written yet.
    with ctrl_c_handled(interrupted):
        args = build_parser().parse_args(argv)
        for module in HEAVY[args.command]:
            importlib.import_module(module)
    try:
        if args.command == "run":
            _, _, folders = _run_study(args, plots=not args.no_plots)
            for folder in folders:
                status = json.loads((folder / "final.json").read_text())["status"]
                print(f"{status:9s} {folder}")
        elif args.command == "compare":
            name, experiments, _ = _run_study(args)
            print(f"report: {_write_report(name, args, experiments)}")
        elif args.command == "sweep":
            return _sweep(args)
        elif args.command == "tune":
            return _tune(args)
        elif args.command == "report":
            name, runs = _expansion(args.experiment, args.overrides)
            print(f"report: {_write_report(name, args, runs)}")
        elif args.command == "eval":
            from kanlab.runs.experiment import evaluate_run

            print(json.dumps(evaluate_run(args.run_dir), indent=2))
        elif args.command == "plot":
            from kanlab.report.plots import plot_run

            paths = plot_run(args.run_dir, args.run_dir / "plots")
            if not paths:
                raise ValueError(f"{args.run_dir}: nothing to plot (no predictions.npz, edges.npz or "
                                 "metrics.jsonl in it)")
            for path in paths:
                print(path)
        elif args.command == "list":
            _list()
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"kanlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command in ("run", "compare", "sweep", "tune"):
            print("kanlab: interrupted; finished runs are saved: run the same command again to resume",
                  file=sys.stderr)
        else:
            print("kanlab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
