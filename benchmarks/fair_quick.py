"""The README's fair-quick verdict: run `kanlab tune fair-quick`, then print each task's verdict table.

    .venv/bin/python benchmarks/fair_quick.py [--root runs] [--workers N] [--out FILE]

Runs the command as a user would (`kanlab tune fair-quick --root ROOT`, a local pool of one process
per core), timing its wall clock and the CPU seconds of it and its workers, and sampling the load
average every 10 s while it runs (the machine's other work slows it down: the CPU seconds divided
by the cores is roughly what it takes on an idle machine). Then it prints, per task, the verdict
table of the tune report (kanlab.report.verdict, over the verdict runs only) in Markdown, with the
date, the command and those timings: what the README shows. A root that already holds the tune
resumes it (finished runs are not redone), so the timings then cover only what was left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import run

from kanlab.report.tables import task_name, with_flops
from kanlab.report.verdict import verdict_markdown
from kanlab.runs.store import ResultsStore


def verdict_tables(root: Path, name: str) -> str:
    """Each task's verdict table, in Markdown, from the tune's manifest and the results database."""
    manifest = json.loads((root / name / "tune.json").read_text())
    with ResultsStore(root / "kanlab.db") as store:
        rows = with_flops(store.runs(name))
    out = []
    for task in dict.fromkeys(s["task"] for s in manifest["studies"]):
        ids = {i for s in manifest["studies"] if s["task"] == task for i in s["verdict_runs"]}
        task_rows = [r for r in rows if r["run_id"] in ids]
        if task_rows:
            out.append(f"#### {task_name(task_rows[0])}\n\n{verdict_markdown(task_rows)}\n")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs"))
    parser.add_argument("--workers", type=int, default=None, help="pool processes (default: the cores)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    args = parser.parse_args()
    command = [sys.executable, "-m", "kanlab.cli", "tune", "fair-quick", "--root", str(args.root)]
    command += ["--workers", str(args.workers)] if args.workers else []
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    t = run(command)
    cores = len(os.sched_getaffinity(0))
    shown = " ".join(["kanlab", *command[3:]])
    text = (f"`{shown}`, {when}, {cores} cores: {t['wall'] / 60:.1f} min wall clock, {t['cpu'] / 60:.1f} min "
            f"of CPU (driver and workers; / {cores} cores = {t['cpu'] / cores / 60:.1f} min), load average "
            f"{t['load_before']:.1f} at the start, median {t['load_median']:.1f} during, "
            f"{t['load_after']:.1f} at the end.\n\n" + verdict_tables(args.root, "fair-quick"))
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
