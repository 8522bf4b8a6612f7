"""Run one experiment into its run folder, and reload a finished run.

A run folder `<root>/<experiment>/<run_id>/` holds config.json, metrics.jsonl, final.json,
model.pt (a state dict: load with weights_only=True), predictions.npz, edges.npz, plots/ (when
the caller hands execute a drawing function) and, for tables (data and dataset tasks),
split.npz: the row numbers of each split and the standardisation fitted on the training rows.
It is written under a temporary name and renamed when complete, so a folder with the final
name is always whole.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kanlab import models
from kanlab.runs.outputs import (
    CLASS_METRICS,
    DTYPES,
    VAL_METRICS,
    RunState,
    data_summary,
    load_data,
    read_config,
    run_folder,
    spec_flops,
    write_outputs,
)
from kanlab.runs.symbolic import run_symbolic
from kanlab.study.code_version import code_version
from kanlab.study.config import ExperimentConfig
from kanlab.tasks import Dataset
from kanlab.tasks.image import psnr
from kanlab.training.evaluation import evaluate
from kanlab.training.loop import History, train
from kanlab.training.threads import torch_threads

# What draws a finished run's plots into its folder (kanlab.report.plots.draw_run): handed down by
# whoever starts runs, so that computing never imports the report package.
Draw = Callable[[Path], object]


def build_model(exp: ExperimentConfig) -> nn.Module:
    """The run's model, initialised from its seed without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(exp.seed)
        return models.build(models.parse_spec(exp.spec))


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=float) + "\n")


def _final(history: History | None, model: nn.Module, data: Dataset | None, started: float,
           error: str | None, spec: str) -> dict[str, Any]:
    last = history.records[-1] if history and history.records else {}
    status = "failed" if error else (history.status if history else "failed")
    test_loss = last.get("test_loss")
    out = {
        "status": status,
        "message": error or (history.message if history else None),
        "param_count": models.param_count(model),
        **spec_flops(spec),
        "train_loss": last.get("train_loss"),
        "test_loss": test_loss,
        "test_rmse": last.get("test_rmse"),
        "psnr": last.get("psnr"),
        **{key: last.get(key) for key in CLASS_METRICS},
        **{key: last[key] for key in VAL_METRICS if key in last},  # runs with a validation set
        "wall_time": time.perf_counter() - started,
        "time_per_step": history.time_per_step if history else None,
        "steps": history.steps_done if history else 0,
        "stages": history.stages if history else [],
    }
    if data is not None:
        out["data"] = data_summary(data)
    return out


def _train_run(exp: ExperimentConfig, tmp: Path, out: RunState,
               progress: Callable[[int, int], None] | None) -> None:
    """The plain run: train, then write metrics, checkpoint, predictions and edges into tmp."""
    data = out.data = load_data(exp, DTYPES[exp.train.dtype])
    model = out.model = build_model(exp)
    metrics = (tmp / "metrics.jsonl").open("w")

    def with_psnr(rec: dict[str, Any]) -> dict[str, Any]:
        is_image = data.image_shape is not None
        return {**rec, "psnr": psnr(rec["test_loss"]) if is_image and np.isfinite(rec["test_loss"]) else None}

    def record(rec: dict[str, Any]) -> None:
        metrics.write(json.dumps(with_psnr(rec)) + "\n")
        metrics.flush()

    hook = None
    if exp.trial is not None and exp.trial["pruner"]["kind"] != "none":  # a tuning trial with a pruner
        from kanlab.training.trial_pruning import PruneHook

        hook = PruneHook(exp.trial)
    with metrics:
        history = out.history = train(model, data, exp.train, callback=record, progress=progress,
                                      prune=None if hook is None else lambda rec: hook(with_psnr(rec)))
    if hook is not None:
        out.extra["pruner_attrs"] = hook.system_attrs()
    for rec in history.records:  # keep the History's records in step with the file
        if data.image_shape is not None and np.isfinite(rec["test_loss"]):
            rec["psnr"] = psnr(rec["test_loss"])
    torch.save(model.state_dict(), tmp / "model.pt")
    left_out = write_outputs(tmp, model, data)
    if left_out:
        out.extra["left_out"] = left_out


def execute(exp: ExperimentConfig, root: Path, *, progress: Callable[[int, int], None] | None = None,
            draw: Draw | None = None) -> Path:
    """Train one experiment and write its run folder; a failure is recorded, not raised.

    Args:
        exp: the experiment.
        root: the results tree; the run goes to `<root>/<experiment>/<run_id>`.
        progress: called with (step, steps) as training goes.
        draw: called with the finished folder (before it gets its final name) to draw its plots,
            e.g. kanlab.report.plots.draw_run; None draws nothing.
    Returns:
        The finished run folder `<root>/<experiment>/<run_id>`.
    """
    final_dir = run_folder(root, exp)
    tmp = final_dir.with_name(f".tmp-{exp.run_id}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _json(tmp / "config.json", {**exp.to_dict(), "run_id": exp.run_id})
    started = time.perf_counter()
    out = RunState()
    try:
        if exp.code_version is not None and exp.code_version != code_version():
            raise RuntimeError(f"this run was planned by kanlab code {exp.code_version[:12]}, and this "
                               f"process runs code {code_version()[:12]} (another kanlab version or an "
                               "edited source): run the driver and its workers on one kanlab")
        with torch_threads(exp.threads):
            if exp.symbolic is not None:
                run_symbolic(exp, build_model(exp), tmp, out)
            else:
                _train_run(exp, tmp, out, progress)
    except Exception as err:  # noqa: BLE001 - a failed run is recorded and the study goes on
        out.error = f"{type(err).__name__}: {err}"
        (tmp / "error.txt").write_text(traceback.format_exc())
    history, model, data, error = out.history, out.model, out.data, out.error
    _json(tmp / "final.json", {**_final(history, model, data, started, error, exp.spec), **out.extra})
    if draw is not None and error is None:
        draw(tmp)
    shutil.rmtree(final_dir, ignore_errors=True)
    tmp.rename(final_dir)
    return final_dir


def load_run(run_dir: Path) -> tuple[ExperimentConfig, nn.Module]:
    """A finished run as a live model (kanlab.load_run): its config and its trained weights.

    Args:
        run_dir: a run folder `<root>/<experiment>/<run_id>` (config.json and model.pt).
    Returns:
        (config, model): the ExperimentConfig (spec, task, train, seed) and the model in the run's
        dtype, weights loaded with weights_only=True (never unpickled). Its task's data, checked
        to be the bytes the run trained on: kanlab.runs.load_data(config, dtype).
    """
    run_dir = Path(run_dir)
    cfg_path, ckpt = run_dir / "config.json", run_dir / "model.pt"
    missing = FileNotFoundError(f"{run_dir} is not a finished run folder (needs config.json and model.pt)")
    if not cfg_path.is_file():
        raise missing
    exp = read_config(cfg_path)
    if exp.symbolic is not None:
        raise ValueError(f"{run_dir} is a symbolic run: its result is the formula in symbolic/symbolic.json "
                         "and final.json, and it keeps no checkpoint to reload")
    if not ckpt.is_file():
        raise missing
    model = build_model(exp).to(DTYPES[exp.train.dtype])
    try:  # weights_only: anything but tensors and plain containers is refused, never run
        state = torch.load(ckpt, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise ValueError(f"{ckpt} is not a kanlab checkpoint: refused to unpickle it, as it holds more than "
                         "tensors (nothing in it was run)") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{ckpt} is not a kanlab checkpoint (truncated or not a torch file: "
                         f"{_first_sentence(err)})") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ValueError(f"{ckpt} does not fit this run's model {exp.spec!r} (is it another run's "
                         f"checkpoint?): {_first_sentence(err)}") from None
    return exp, model


def _first_sentence(err: BaseException) -> str:
    # torch's messages run to several lines of advice; the first sentence says what is wrong
    text = " ".join(str(err).split()) or type(err).__name__
    first = text.split(". ", 1)[0]
    return first if len(first) <= 200 else first[:200] + "..."


def evaluate_run(run_dir: Path) -> dict[str, float]:
    """Reload a run's checkpoint and evaluate it on its task's train and test sets (training.evaluation)."""
    exp, model = load_run(run_dir)
    data = load_data(exp, DTYPES[exp.train.dtype])
    with torch_threads(exp.threads):
        out = evaluate(model, data)
    if data.image_shape is not None:
        out["psnr"] = psnr(out["test_loss"])
    return out


