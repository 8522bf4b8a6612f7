"""Test accuracy on scikit-learn's bundled classification tables, for the README's stated numbers.

    .venv/bin/python benchmarks/classification.py [--seeds 3] [--steps 200]

A tanh MLP [d, 64, 10-or-C] (kanlab.MLP), Adam at lr 0.01, full batch, float32, on each table's
stratified seed-0 split (test fraction 0.2, inputs standardised on the training rows): test
accuracy and macro-F1 after --steps steps, per model seed, and the median.
"""

from __future__ import annotations  # noqa: I001  (kanlab before torch, below)

# kanlab first: torch's OpenMP threads then sleep when idle, as under the kanlab command
import kanlab  # noqa: F401
import argparse
import statistics
import time

import torch

from kanlab.models.stack import MLP
from kanlab.tasks import DATASETS, TaskConfig, make_dataset
from kanlab.training.config import TrainConfig
from kanlab.training.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    print(f"# {when}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| table | rows (train/test) | classes | test accuracy per seed | median | macro-F1 median |")
    print("|---|---|---:|---|---:|---:|")
    for name, (kind, _) in DATASETS.items():
        if kind != "class":
            continue
        data = make_dataset(TaskConfig(kind="dataset", name=name))
        accs, f1s = [], []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = MLP([data.in_dim, 64, data.out_dim])
            cfg = TrainConfig(lr=0.01, steps=args.steps, eval_every=args.steps)
            final = train(model, data, cfg).records[-1]
            accs.append(final["test_accuracy"])
            f1s.append(final["test_macro_f1"])
        per_seed = ", ".join(f"{a:.1%}" for a in accs)
        print(f"| {name} | {len(data.x_train)}/{len(data.x_test)} | {data.out_dim} | {per_seed} | "
              f"{statistics.median(accs):.1%} | {statistics.median(f1s):.3f} |")


if __name__ == "__main__":
    main()
