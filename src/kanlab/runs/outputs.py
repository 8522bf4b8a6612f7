"""What a run reads and writes besides training: its data (checked against the run's identity),
its folder under the results root, predictions, edges, a table's split and final.json's parts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kanlab import models
from kanlab.models.edges import edge_arrays
from kanlab.study.config import ExperimentConfig
from kanlab.tasks import Dataset, data_hash, input_files, make_dataset
from kanlab.training.loop import History, nonfinite_inside

DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
        if not nonfinite_inside(model, data.x_train):
            raise
        return {"edges.npz": f"the model is not finite ({err})"}
    np.savez(folder / "edges.npz", allow_pickle=False, **arrays)
    return {}


@torch.no_grad()
def _write_predictions(folder: Path, model: nn.Module, data: Dataset) -> None:
    try:
        y_pred = model(data.x_test)
    except ValueError:  # a layer's input check: NaN predictions if NaN/inf got inside, else a real error
        if not nonfinite_inside(model, data.x_test):
            raise
        y_pred = torch.full_like(data.y_test, math.nan)
    shape = np.array(data.image_shape or (), dtype=np.int64)
    np.savez(folder / "predictions.npz", coords_test=data.coords_test.cpu().numpy(),
             y_test=data.y_test.cpu().numpy(), y_pred=y_pred.cpu().numpy(), image_shape=shape,
             target_kind=np.array(data.target_kind), target_names=np.array(data.target_names, dtype=str))


def read_config(path: Path) -> ExperimentConfig:
    """A run folder's config.json, or a ValueError naming the file and what is wrong with it."""
    try:
        return ExperimentConfig.from_dict(json.loads(Path(path).read_text()))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
