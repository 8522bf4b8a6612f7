"""The `kanlab` command's arguments: one parser with a subcommand per verb (cli.py runs them)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_ROOT = Path("runs")
EXECUTORS = ("local", "dask", "ray", "serial")


def study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="a preset name (see `kanlab list`) or a path to a study .toml file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study key, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where run folders go (default: runs)")
    p.add_argument("--db", type=Path, default=None, help="results database (default: ROOT/kanlab.db)")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kanlab", description="KANs vs MLPs, measured fairly.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every experiment of a study into run folders")
    study_args(run)
    run.add_argument("--no-plots", action="store_true", help="skip the per-run plots")
    compare = sub.add_parser("compare", help="run a study and write its HTML report")
    study_args(compare)
    sweep_args(sub.add_parser("sweep", help="run a sweep (a study plus [axes]) on an executor, and report"))
    sweep_args(sub.add_parser(
        "tune", help="tune each model on an equal budget (Optuna), retrain each best on fresh seeds, report",
        description="A tune file is a study plus [tune] (per_family = 'trials:N' or 'seconds:S', metric, "
                    "seed, pruner) and [search.<family or label>] ranges; see the README's `kanlab tune`."),
        "TUNE", "a tune preset (tune-quick) or a .toml file", "--set tune.per_family=trials:4")
    report = sub.add_parser("report", help="write the HTML report of a recorded study")
    report.add_argument("experiment", metavar="STUDY",
                        help="a preset or .toml file: its runs as the file expands now (with --set as it "
                             "ran); or a study's name: every configuration recorded under it, apart")
    report.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="the --set overrides the study ran with (repeatable)")
    report.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    report.add_argument("--db", type=Path, default=None)
    ev = sub.add_parser("eval", help="reload a run's checkpoint and evaluate it")
    ev.add_argument("run_dir", type=Path)
    plot = sub.add_parser("plot", help="redraw a run's plots from its folder")
    plot.add_argument("run_dir", type=Path)
    sub.add_parser("list", help="list presets, tasks, images and model families")
    return parser


def sweep_args(p: argparse.ArgumentParser, metavar: str = "SWEEP",
                what: str = "a sweep preset (scaling-quick, scaling) or a .toml file",
                example: str = "--set axes.budget=[300]") -> None:
    p.add_argument("study", metavar=metavar, help=what)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a key, e.g. --set train.steps=100 or {example} (repeatable)")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where run folders go (default: runs)")
    p.add_argument("--db", type=Path, default=None, help="results database (default: ROOT/kanlab.db)")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local process pool (default), a Dask or Ray cluster, or serial in this process")
    p.add_argument("--address", default=None,
                   help="the cluster: tcp://HOST:PORT for Dask; ray://HOST:PORT or HOST:PORT for Ray "
                        "(without it Ray starts a private local instance)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes of the local pool, or CPUs of a private Ray instance (default: the cores)")
    p.add_argument("--plots", action="store_true", help="also write each run's plots (slower)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
