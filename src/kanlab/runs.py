"""Run one experiment into a run folder, and expand a study into experiments.

A run folder `<root>/<experiment>/<run_id>/` holds config.json, metrics.jsonl, final.json,
model.pt (a state dict: load with weights_only=True), predictions.npz, edges.npz, plots/ and,
for tables (data and dataset tasks), split.npz: the row numbers of each split and the
standardisation fitted on the training rows.
It is written under a temporary name and renamed when complete, so a folder with the final
name is always whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pickle
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kanlab import models
from kanlab.budget import match_widths
from kanlab.code_version import code_version
from kanlab.config import ExperimentConfig, ModelEntry, StudyConfig, _build
from kanlab.evaluation import evaluate
from kanlab.layers import KANLinear
from kanlab.layers.dense import Dense
from kanlab.tasks import Dataset, TaskConfig, data_hash, input_files, make_dataset
from kanlab.tasks.image import psnr
from kanlab.timing import cached_match_time
from kanlab.train import History, TrainConfig, _nonfinite_inside, train

DTYPES = {"float32": torch.float32, "float64": torch.float64}
EDGE_POINTS = 200


def expand(study: StudyConfig, *, threads: int | None = None) -> list[ExperimentConfig]:
    """Every (task, model, seed) of a study as a resolved ExperimentConfig (widths matched).

    Args:
        study: the study.
        threads: torch threads each run computes on (default: this process's torch.get_num_threads(),
            which `kanlab run` uses; pool and cluster workers run one each).
    Returns:
        The runs, each with the hash of its task's files, its thread count and this code's version.
    """
    threads = torch.get_num_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    out, version = [], code_version()
    for n, (task, task_train) in enumerate(zip(study.tasks, study.task_train, strict=True)):
        data = make_dataset(task)
        files = data_hash(task)  # after make_dataset, whose errors say best what is wrong with a file
        for entry in study.models:
            merged = {**study.train, **task_train, **entry.train}
            train = _build(TrainConfig, merged, f"train of {entry.label}")
            spec, match = entry.spec, None
            if spec is None:
                resolved = dataclasses.replace(entry, budget=study.budget_of(entry, n))
                with torch_threads(threads):  # a time per step is measured on the run's own thread count
                    widths, match = match_entry(resolved, data, train, task)
                cfg = models.ModelConfig.single(entry.family, widths, **dict(entry.options))
                spec = models.format_spec(cfg)
            for seed in study.seeds:
                out.append(ExperimentConfig(
                    experiment=study.name, label=entry.label, family=entry.family, spec=spec,
                    task=task, train=dataclasses.replace(train, seed=seed), seed=seed,
                    symbolic=study.symbolic_of(n), match=match, data_hash=files, threads=threads,
                    code_version=version,
                ))
    return out


def match_entry(entry: ModelEntry, data: Dataset, train: TrainConfig,
                task: TaskConfig) -> tuple[tuple[int, ...], dict[str, Any]]:
    """Widths of a budget-matched model entry and how they were matched (ExperimentConfig.match).

    Args:
        entry: a study's model entry without a spec (family, options, budget, depth, match).
        data: its task's dataset (input and output widths; the data timed for match = "time").
        train: its training config (timed for match = "time").
        task: its task (part of the time-match cache key).
    Returns:
        (widths, {"by", "budget", "tol", "depth", "value"}): value is the count reached, or the
        measured seconds per step.
    """
    try:
        return matched_widths(entry, data, train, task)
    except ValueError as err:
        raise ValueError(f"model {entry.label!r} on task {task_label(task)!r}: {err}") from None


def matched_widths(entry: ModelEntry, data: Dataset, train: TrainConfig,
                   task: TaskConfig) -> tuple[tuple[int, ...], dict[str, Any]]:
    """match_entry without naming the model and task in its errors (a tune's checks name more)."""
    assert entry.budget is not None
    options = dict(entry.options)
    if entry.match == "time":
        widths, value = cached_match_time(
            entry.family, float(entry.budget), data=data, train=train, depth=entry.depth, options=options,
            task=json.loads(json.dumps(dataclasses.asdict(task))), tol=entry.tol)
    else:
        widths = match_widths(
            entry.family, entry.budget, by=entry.match, depth=entry.depth, tol=entry.tol,
            in_features=data.in_dim, out_features=data.out_dim, **options)
        cfg = models.ModelConfig.single(entry.family, widths, **options)
        value = models.count_flops(cfg) if entry.match == "flops" else models.count_params(cfg)
    return widths, {"by": entry.match, "budget": entry.budget, "tol": entry.tol, "depth": entry.depth,
                    "value": value}


def load_data(exp: ExperimentConfig, dtype: torch.dtype) -> Dataset:
    """The run's dataset, checked to be built from the very bytes its identity names (exp.data_hash).

    The files are hashed after they are read, so an edit between planning the run and reading them
    (or while reading) is caught, not trained on under the old data's identity.
    """
    data = make_dataset(exp.task, dtype=dtype)
    if exp.data_hash is not None and data_hash(exp.task) != exp.data_hash:
        files = ", ".join(map(str, input_files(exp.task)))
        raise ValueError(f"{files} is not the data this run was planned with (sha256 "
                         f"{exp.data_hash[:12]}...; it was edited since): run the study again to plan runs "
                         "for the new data")
    return data


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block on n torch threads (None: as it is), then restore the previous count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def inside(root: Path, *names: str) -> Path:
    """root / names, each one plain folder name; a ValueError where the path would lie outside root.

    Every folder the driver writes (run folders, reports) goes through this: a study name such as
    "../x" or "/x", or a symbolic link out of the tree, would otherwise write elsewhere.
    """
    path = Path(root).joinpath(*names)
    plain = all(name not in ("", ".", "..") and Path(name).name == name for name in names)
    if not plain or not path.resolve().is_relative_to(Path(root).resolve()):
        raise ValueError(f"refusing to write {str(path)!r}: it is not a folder inside the results root "
                         f"{str(root)!r} (names must be plain folder names, without '/' or '..')")
    return path


def run_folder(root: Path, exp: ExperimentConfig) -> Path:
    """The run folder of exp under root, `<root>/<experiment>/<run_id>` (checked by inside)."""
    return inside(root, exp.experiment, exp.run_id)


def build_model(exp: ExperimentConfig) -> nn.Module:
    """The run's model, initialised from its seed without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(exp.seed)
        return models.build(models.parse_spec(exp.spec))


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=float) + "\n")


@torch.no_grad()
def edge_arrays(model: nn.Module, x_train: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-edge responses of every learnable-activation layer over the input range it saw."""
    arrays: dict[str, np.ndarray] = {}
    layers = list(getattr(model, "layers", [model]))
    present = []
    for index, (layer, h) in enumerate(zip(layers, models.layer_inputs(model, x_train), strict=True)):
        if isinstance(layer, Dense) or not hasattr(layer, "edge_responses"):
            continue
        xs, ys = models.edge_samples(layer, h, EDGE_POINTS)                # (P, in), (P, out, in)
        arrays[f"layer{index}_x"] = xs.cpu().numpy()
        arrays[f"layer{index}_y"] = ys.cpu().numpy()
        if isinstance(layer, KANLinear):
            arrays[f"layer{index}_knots"] = layer.grid.cpu().numpy()
        present.append(index)
    arrays["layers"] = np.array(present, dtype=np.int64)
    return arrays


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


CLASS_METRICS = ("train_accuracy", "test_accuracy", "test_macro_f1")
VAL_METRICS = ("val_loss", "val_rmse", "val_accuracy", "val_macro_f1")  # rmse: values; the rest: classes


def spec_flops(spec: str) -> dict[str, int | None]:
    """FLOPs per sample of a spec (kanlab.models.count_flops): "flops" (dense) and "flops_local"."""
    try:
        cfg = models.parse_spec(spec)
    except ValueError:
        return {"flops": None, "flops_local": None}
    return {"flops": models.count_flops(cfg), "flops_local": models.count_flops(cfg, local=True)}


def data_summary(data: Dataset) -> dict[str, Any]:
    """final.json's "data": target kind, split sizes, how a table was split; rows per class per split."""
    out: dict[str, Any] = {"target_kind": data.target_kind, "n_train": len(data.x_train),
                           "n_test": len(data.x_test)}
    if data.x_val is not None:
        out["n_val"] = len(data.x_val)
    if data.split is not None:
        out["split"] = {k: data.split[k] for k in ("seed", "test_fraction", "val_fraction", "stratified",
                                                   "standardize") if k in data.split}
    if data.target_kind == "class":
        out["classes"] = list(data.target_names)
        for split in ("train", "test", "val"):
            y = getattr(data, f"y_{split}")
            if y is not None:
                out[f"{split}_counts"] = [round(float(v)) for v in y.sum(0)]
    return out


@dataclass
class RunState:
    """What a run has produced so far (kept when it fails half way, for final.json)."""

    model: nn.Module = field(default_factory=nn.Module)
    data: Dataset | None = None
    history: History | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more keys for final.json


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
        from kanlab.trial_pruning import PruneHook

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


def write_outputs(folder: Path, model: nn.Module, data: Dataset) -> dict[str, str]:
    """predictions.npz (test set), edges.npz (per-edge responses) and a table's split.npz.

    A diverged model (NaN or inf in its parameters or activations) makes a layer refuse its input:
    its predictions are then NaN, and edges.npz is left out.

    Returns:
        {file left out: why}, empty for a finite model.
    """
    _write_predictions(folder, model, data)
    if data.split is not None:
        split = {k: np.asarray(v) for k, v in data.split.items() if isinstance(v, np.ndarray)}
        np.savez(folder / "split.npz", allow_pickle=False, **split)
    try:
        arrays = edge_arrays(model, data.x_train)
    except ValueError as err:
        if not _nonfinite_inside(model, data.x_train):
            raise
        return {"edges.npz": f"the model is not finite ({err})"}
    np.savez(folder / "edges.npz", allow_pickle=False, **arrays)
    return {}


def execute(exp: ExperimentConfig, root: Path, *, progress: Callable[[int, int], None] | None = None,
            plots: bool = True) -> Path:
    """Train one experiment and write its run folder; a failure is recorded, not raised.

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
                from kanlab.symbolic_run import run_symbolic

                run_symbolic(exp, build_model(exp), tmp, out)
            else:
                _train_run(exp, tmp, out, progress)
    except Exception as err:  # noqa: BLE001 - a failed run is recorded and the study goes on
        out.error = f"{type(err).__name__}: {err}"
        (tmp / "error.txt").write_text(traceback.format_exc())
    history, model, data, error = out.history, out.model, out.data, out.error
    _json(tmp / "final.json", {**_final(history, model, data, started, error, exp.spec), **out.extra})
    if plots and error is None:
        from kanlab.report.plots import plot_run

        plot_run(tmp, tmp / "plots")
    shutil.rmtree(final_dir, ignore_errors=True)
    tmp.rename(final_dir)
    return final_dir


@torch.no_grad()
def _write_predictions(folder: Path, model: nn.Module, data: Dataset) -> None:
    try:
        y_pred = model(data.x_test)
    except ValueError:  # a layer's input check: NaN predictions if NaN/inf got inside, else a real error
        if not _nonfinite_inside(model, data.x_test):
            raise
        y_pred = torch.full_like(data.y_test, math.nan)
    shape = np.array(data.image_shape or (), dtype=np.int64)
    np.savez(folder / "predictions.npz", coords_test=data.coords_test.cpu().numpy(),
             y_test=data.y_test.cpu().numpy(), y_pred=y_pred.cpu().numpy(), image_shape=shape,
             target_kind=np.array(data.target_kind), target_names=np.array(data.target_names, dtype=str))


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


def read_config(path: Path) -> ExperimentConfig:
    """A run folder's config.json, or a ValueError naming the file and what is wrong with it."""
    try:
        return ExperimentConfig.from_dict(json.loads(Path(path).read_text()))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def _first_sentence(err: BaseException) -> str:
    # torch's messages run to several lines of advice; the first sentence says what is wrong
    text = " ".join(str(err).split()) or type(err).__name__
    first = text.split(". ", 1)[0]
    return first if len(first) <= 200 else first[:200] + "..."


def evaluate_run(run_dir: Path) -> dict[str, float]:
    """Reload a run's checkpoint and evaluate it on its task's train and test sets (kanlab.evaluation)."""
    exp, model = load_run(run_dir)
    data = load_data(exp, DTYPES[exp.train.dtype])
    with torch_threads(exp.threads):
        out = evaluate(model, data)
    if data.image_shape is not None:
        out["psnr"] = psnr(out["test_loss"])
    return out


def task_label(task: TaskConfig) -> str:
    """Short human name of a task (image paths shortened to their file name)."""
    return Path(task.name).stem if task.kind != "function" else task.name
