"""Where a training step's time goes: cProfile over kanlab.train on a preset's models.

For each case (a preset, one of its tasks, its KAN and its MLP) the model trains for --steps
steps (evaluation only at the start and end) under cProfile, and the script prints the share of
the step time (train()'s time per step, evaluation excluded) spent in each part, as cumulative
time of the function that does it (the parts nest: "optimizer step" holds the closure, which
holds forward, loss and backward). cProfile's own cost per Python call inflates the small
models' parts; read shares, and the step times of `history.time_per_step` without a profile
from benchmarks/training.py:

    batches         drawing the batch's rows (kanlab.training.loop._batches) and indexing them
    optimizer step  Trainer._step: opt.step(closure), everything of one step but the batch
      closure       zero_grad + forward + loss + backward
        forward     the model's forward (Stack.forward: every layer, the encoding if any)
        loss        torch.nn.functional.mse_loss / cross_entropy
        backward    torch.autograd.backward (all layers' backward)
      update        the optimizer's own arithmetic (torch.optim's adam/_multi_tensor_adam, ...)
    grid updates    kanlab.training.loop.update_grids (off here: the cases train without them)

Evaluation (the train and test loss at the start and end) runs outside the profile: train()'s
time here is its steps.

    .venv/bin/python benchmarks/profile_step.py                       # blog-image and default, 2 threads
    .venv/bin/python benchmarks/profile_step.py --case default --steps 300 --threads 1
    .venv/bin/python benchmarks/profile_step.py --round-robin   # the KAN's step over the MLP's

--round-robin: every model of the case's task trains in the same process, one Adam step each in
turn (train()'s own step and optimizer, the same batch: the task's first), for
--rounds rounds (default 20 at blog-image size, 200 at the default's), after 3 unmeasured
rounds; it prints each model's median step time and its ratio to the tanh MLP's. No grid
updates, no evaluation: the step alone.
"""

from __future__ import annotations  # noqa: I001  (kanlab before torch, below)

# kanlab first: it makes torch's OpenMP threads sleep when idle, as under the kanlab command
import kanlab  # noqa: F401
import argparse
import cProfile
import dataclasses
import datetime
import os
import pstats

import torch

from kanlab.runs.experiment import build_model
from kanlab.study.config import load_study
from kanlab.study.experiments import expand
from kanlab.tasks import make_dataset
from kanlab.training.config import DTYPES
import time

from kanlab.training.loop import _Run, train

# (preset, task index, overrides) per case: blog-image is the founding image experiment (256x256,
# batch 16384), default's image task is the 32x32 camera the README's main command trains.
CASES = {"blog-image": ("blog-image", 0, []), "default": ("default", 1, ["seeds=[0]"])}
PARTS = [  # (label, file suffix, function name), in the nesting order of the table
    ("batches", "kanlab/training/loop.py", "_batches"),
    ("optimizer step", "kanlab/training/loop.py", "_step"),
    ("  closure", "kanlab/training/loop.py", "closure"),
    ("    forward", "kanlab/models/stack.py", "forward"),
    ("    loss", "torch/nn/functional.py", "mse_loss"),
    ("    loss (class)", "torch/nn/functional.py", "cross_entropy"),
    ("    backward", "torch/autograd/__init__.py", "backward"),
    ("  update (Adam)", "torch/optim/adam.py", "adam"),
    ("grid updates", "kanlab/training/loop.py", "update_grids"),
]


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    """Cumulative seconds of the functions called name in a file ending in suffix."""
    return sum(v[3] for (path, _, func), v in stats.stats.items()  # type: ignore[attr-defined]
               if func == name and path.replace(os.sep, "/").endswith(suffix))


def profile(case: str, steps: int) -> None:
    preset, task, overrides = CASES[case]
    study = load_study(preset, [*overrides, f"train.steps={steps}", f"train.eval_every={steps}"])
    exps = [e for e in expand(study) if e.task == study.tasks[task]]
    for exp in exps:
        exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, grid_update_every=0))
        data = make_dataset(exp.task, DTYPES[exp.train.dtype])
        model = build_model(exp)
        prof = cProfile.Profile()
        evaluate = _Run.evaluate

        def unprofiled(run: _Run, evaluate=evaluate, prof=prof) -> bool:  # type: ignore[no-untyped-def]
            prof.disable()
            try:
                return evaluate(run)
            finally:
                prof.enable()

        _Run.evaluate = unprofiled  # type: ignore[method-assign]
        try:
            prof.enable()
            history = train(model, data, exp.train)
            prof.disable()
        finally:
            _Run.evaluate = evaluate  # type: ignore[method-assign]
        stats = pstats.Stats(prof)
        # train()'s own cumulative time is lost when the profile pauses inside it (evaluation):
        # the whole is the steps' wall time as train() measured it
        total = history.time_per_step * steps
        print(f"\n{case}: {exp.label} ({sum(p.numel() for p in model.parameters())} parameters, batch "
              f"{exp.train.batch_size or len(data.x_train)}), {steps} steps, "
              f"{history.time_per_step * 1e3:.2f} ms per step")
        print("| part | ms per step | share of the step |")
        print("|---|---|---|")
        top = 0.0
        for label, suffix, name in PARTS:
            seconds = cumulative(stats, suffix, name)
            top += seconds if not label.startswith(" ") else 0.0
            if seconds > 0:
                print(f"| {label} | {seconds / steps * 1e3:.2f} | {seconds / total:.0%} |")
        print(f"| the rest (the loop's own Python, logging) | {(total - top) / steps * 1e3:.2f} "
              f"| {(total - top) / total:.0%} |")
        print(f"| step (train()'s time per step) | {total / steps * 1e3:.2f} | 100% |")


def round_robin(case: str, rounds: int | None) -> None:
    preset, task, overrides = CASES[case]
    study = load_study(preset, overrides)
    exps = [e for e in expand(study) if e.task == study.tasks[task]]
    rounds = rounds or (20 if case == "blog-image" else 200)
    steps = []  # (label, parameters, one step)
    for exp in exps:
        data = make_dataset(exp.task, DTYPES[exp.train.dtype])
        model = build_model(exp).to(dtype=DTYPES[exp.train.dtype])
        run = _Run(model, data, exp.train, None, None, None)  # train()'s own step, optimizer and data
        run.new_optimizer()
        idx = next(run.batches)
        x, y = (run.x_train, run.y_train) if idx is None else (run.x_train[idx], run.y_train[idx])
        steps.append((exp.label, sum(p.numel() for p in model.parameters()),
                      lambda run=run, x=x, y=y: run._step(x, y)))
    times: dict[str, list[float]] = {label: [] for label, _, _ in steps}
    for r in range(rounds + 3):
        for label, _, step in steps:
            t0 = time.perf_counter()
            step()
            if r >= 3:
                times[label].append(time.perf_counter() - t0)
    median = {label: sorted(t)[len(t) // 2] for label, t in times.items()}
    mlp = next((label for label in median if "MLP" in label), None)
    print(f"\n{case}, round-robin: {rounds} rounds, batch {len(x)}, load average {os.getloadavg()[0]:.1f}")
    print("| model | parameters | ms per step (median) | over the tanh MLP's |")
    print("|---|---:|---:|---:|")
    for label, params, _ in steps:
        ratio = f"{median[label] / median[mlp]:.2f}x" if mlp else ""
        print(f"| {label} | {params} | {median[label] * 1e3:.2f} | {ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=list(CASES), action="append")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--round-robin", action="store_true", help="time each model's step in turn instead")
    ap.add_argument("--rounds", type=int, default=None, help="round-robin rounds (default 20 / 200)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"profile_step, {datetime.datetime.now():%Y-%m-%d %H:%M}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    for case in args.case or list(CASES):
        if args.round_robin:
            round_robin(case, args.rounds)
        else:
            profile(case, args.steps)


if __name__ == "__main__":
    main()
