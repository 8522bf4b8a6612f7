"""Matching by time: hidden widths whose measured seconds per training step are within tol of a budget.

Time per step is measured, not counted: on this machine, in this process, with its torch threads
(a local sweep pool runs one thread per worker: set torch.set_num_threads(1) to match for it). A
measurement trains the model for `warmup + steps` steps of the run's own training config on the
task's own data (batch size, optimizer, dtype and grid updates included; evaluations, which
happen once at each end, are not timed) and takes the smallest median of three blocks of steps
(see step_seconds). A run's reported time per step is its mean over all steps, so on a busy
machine it can come out above the time it was matched to.

The search: uniform hidden widths (h, ..., h), h doubling from 1 until a step takes at least the
budget, then bisection between the last two; it stops at the first h measured within tol. A
budget below the smallest model's time, or above the time of width MAX_WIDTH, is an error that
gives the times measured. Results are cached on disk (time-match.json in kanlab's cache folder,
$KANLAB_CACHE or ~/.cache/kanlab) per problem and machine, so that expanding the same study
again (to resume it) gives the same widths, hence the same run ids; delete the file to measure
again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from kanlab.layers.kan import native_build
from kanlab.models.spec import ModelConfig
from kanlab.models.stack import build
from kanlab.training.config import TrainConfig
from kanlab.training.evaluation import Data
from kanlab.training.loop import train

MAX_WIDTH = 4096
Measure = Callable[[tuple[int, ...]], float]  # widths -> seconds per step


def step_seconds(model: torch.nn.Module, data: Data, cfg: TrainConfig, *, steps: int = 30,
                 warmup: int = 5, blocks: int = 3) -> float:
    """Seconds per training step of model on data with cfg (the model is trained in place).

    The timed steps are split into blocks; the result is the smallest of the blocks' medians, so
    that a burst of work by another process on a shared machine moves it less.

    Args:
        model: the model to time (its parameters change).
        data: the task's data.
        cfg: the run's training config; grid_stages are dropped and the step count replaced.
        steps, warmup: timed steps, and untimed ones before them.
        blocks: how many blocks the timed steps are split into.
    Returns:
        The smallest block median of the step durations, in seconds.
    """
    stamps: list[float] = []
    short = dataclasses.replace(cfg, steps=warmup + steps + 1, eval_every=warmup + steps + 2, grid_stages=())
    history = train(model, data, short, progress=lambda *_: stamps.append(time.perf_counter()))
    durations = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:], strict=False)]
    if len(durations) < 3:
        raise ValueError(f"cannot time a training step: the model {history.status} after "
                         f"{history.steps_done} steps ({history.message})")
    size = max(1, len(durations) // max(1, blocks))
    return min(statistics.median(durations[i : i + size]) for i in range(0, len(durations) - size + 1, size))


def match_time(seconds: float, measure: Measure, *, depth: int, in_features: int, out_features: int,
               tol: float = 0.1, what: str = "model") -> tuple[tuple[int, ...], float]:
    """Uniform widths whose measured time per step is seconds * (1 +- tol) (search in the module docstring).

    Args:
        seconds: the budget, seconds per training step.
        measure: widths (in_features, *hidden, out_features) -> seconds per step.
        depth: hidden layers.
        in_features, out_features: model input and output widths.
        tol: allowed relative deviation.
        what: the model's name in error messages.
    Returns:
        (widths, their measured seconds per step).
    """
    if not (isinstance(seconds, (int, float)) and 0 < seconds < float("inf")):
        raise ValueError(f"the time budget must be a number of seconds > 0, got {seconds!r}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    measured: dict[int, float] = {}

    def at(h: int) -> float:
        if h not in measured:
            measured[h] = measure((in_features, *(h,) * depth, out_features))
        return measured[h]

    def hit(h: int) -> bool:
        return abs(at(h) - seconds) <= tol * seconds

    def seen() -> str:
        return ", ".join(f"width {h}: {t:.3g} s" for h, t in sorted(measured.items()))

    if hit(1):
        return (in_features, *(1,) * depth, out_features), at(1)
    if at(1) > seconds:
        raise ValueError(f"time budget {seconds:.3g} s per step is below the fastest {what} with {depth} "
                         f"hidden layers on this machine ({seen()}); give a larger budget")
    lo, hi = 1, 2
    while not hit(hi) and at(hi) < seconds:  # at(lo) < seconds throughout
        if hi >= MAX_WIDTH:
            raise ValueError(f"time budget {seconds:.3g} s per step is above what a {what} with {depth} "
                             f"hidden layers of width up to {MAX_WIDTH} takes on this machine ({seen()})")
        lo, hi = hi, min(2 * hi, MAX_WIDTH)
    while not hit(hi) and hi - lo > 1:  # at(lo) < seconds < at(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if at(mid) < seconds else (lo, mid)
        if hit(mid):
            hi = mid
    best = min(measured, key=lambda h: (abs(measured[h] - seconds), h))
    if not hit(best):
        raise ValueError(f"no {what} with {depth} hidden layers takes {seconds:.3g} s per step within "
                         f"{tol:.0%} on this machine: the time jumps between widths {lo} and {hi} "
                         f"({seen()}); try another depth or budget, or a larger match_tol")
    return (in_features, *(best,) * depth, out_features), at(best)


def _cache_file() -> Path:
    return native_build.cache_dir().parent / "time-match.json"


def _machine() -> dict[str, Any]:
    return {"node": platform.node(), "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def cached_match_time(family: str, seconds: float, *, data: Data, train: TrainConfig, depth: int,
                      options: Mapping[str, Any], task: Mapping[str, Any], tol: float = 0.1,
                      measure: Measure | None = None) -> tuple[tuple[int, ...], float]:
    """match_time for a family on a task's data and training config, through the on-disk cache.

    Args:
        family, options: the model family and its layer options.
        seconds: the budget, seconds per training step.
        data: the task's data (its widths give in_features and out_features).
        train: the run's training config (its seed is left out of the cache key).
        depth: hidden layers.
        task: the task's config as a dict (part of the cache key).
        tol: allowed relative deviation.
        measure: widths -> seconds (default: build the model from seed 0 and time it with
            step_seconds); a given measure bypasses the cache.
    Returns:
        (widths, their measured seconds per step).
    """
    in_f, out_f = int(data.x_train.shape[1]), int(data.y_train.shape[1])
    if measure is not None:
        return match_time(seconds, measure, depth=depth, in_features=in_f, out_features=out_f, tol=tol,
                          what=family)
    train_key = {k: v for k, v in dataclasses.asdict(train).items() if k != "seed"}
    problem = {"family": family, "options": dict(options), "depth": depth, "seconds": seconds, "tol": tol,
               "task": task, "train": train_key, "widths": [in_f, out_f], "machine": _machine()}
    key = hashlib.sha256(json.dumps(problem, sort_keys=True, default=str).encode()).hexdigest()
    path = _cache_file()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache.get(key), Mapping):
        return tuple(cache[key]["widths"]), float(cache[key]["seconds"])

    def timed(widths: tuple[int, ...]) -> float:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build(ModelConfig.single(family, widths, **dict(options)))
        return step_seconds(model, data, train)

    widths, found = match_time(seconds, timed, depth=depth, in_features=in_f, out_features=out_f, tol=tol,
                               what=family)
    cache[key] = {"widths": list(widths), "seconds": found, "problem": problem}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=1, default=str))
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    return widths, found
