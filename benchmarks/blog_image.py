"""The founding image experiment, measured: `kanlab run blog-image`, then its numbers beside the write-up's.

    .venv/bin/python benchmarks/blog_image.py [--steps 20000] [--root runs-blog] [--out FILE]

Runs the preset as a user would (`kanlab run blog-image --root ROOT`, shortened to --steps Adam
steps when given: the full 20k steps take hours on 2 cores), timing its wall clock and CPU seconds
and sampling the load average. Then it prints, per model, the parameter count, the steps run, the
final test MSE and PSNR over every pixel, the median seconds per training step and the ratio of
each model's step time to the tanh MLP's, in Markdown with the date and the load: what the README
quotes. The founding write-up's figures (tanh MLP loss 0.0006 after 20k epochs, best KAN 0.00011,
one KAN step ~28x an MLP step in its from-scratch code) are printed beside them for reference.
A root that already holds the runs reuses them (finished runs are not redone).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import run  # benchmarks/ is sys.path[0] when run as a script

WRITE_UP = {"mlp": "0.0006 (20k epochs)", "kan": "0.00011 (best KAN)"}


def table(root: Path) -> str:
    """Per run of the study: label, parameters, steps, test MSE, PSNR, time per step and its MLP ratio."""
    finals = []
    for folder in sorted((root / "blog-image").iterdir()):
        if (folder / "final.json").is_file():
            config = json.loads((folder / "config.json").read_text())
            finals.append((config, json.loads((folder / "final.json").read_text())))
    mlp = [f["time_per_step"] for c, f in finals if c["family"] == "mlp" and f.get("time_per_step")]
    lines = ["| model | parameters | steps | test MSE | PSNR (dB) | s / step | step vs MLP "
             "| write-up's loss |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for config, final in finals:
        step = final.get("time_per_step")
        ratio = f"{step / mlp[0]:.2f}x" if step and mlp else "-"
        lines.append(f"| {config['label']} | {final['param_count']:,} | {config['train']['steps']:,} | "
                     f"{final['test_loss']:.3g} | {final['psnr']:.2f} | {step:.3f} | {ratio} | "
                     f"{WRITE_UP.get(config['family'], '-')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="Adam steps per model (default: the preset's 20k)")
    parser.add_argument("--root", type=Path, default=Path("runs-blog"))
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    args = parser.parse_args()
    command = [sys.executable, "-m", "kanlab.cli", "run", "blog-image", "--root", str(args.root),
               "--no-plots"]
    command += ["--set", f"train.steps={args.steps}"] if args.steps else []
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    t = run(command)
    cores = len(os.sched_getaffinity(0))
    shown = " ".join(["kanlab", *command[3:]])
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    text = (f"`{shown}`, {when}, {cores} cores, torch threads {threads}: "
            f"{t['wall'] / 60:.1f} min wall clock, {t['cpu'] / 60:.1f} min of CPU, load average "
            f"{t['load_before']:.1f} at the start, median {t['load_median']:.1f} during, "
            f"{t['load_after']:.1f} at the end.\n\n" + table(args.root))
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
