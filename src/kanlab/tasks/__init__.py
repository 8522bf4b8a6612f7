"""Tasks: a TaskConfig becomes a Dataset of tensors, the same tensors for the same config.

make_dataset runs the kind's builder (functions.py, image.py, data.py, datasets.py: float64 numpy
work; tables go through tabular.py), then does what every kind shares: noise on the train
targets, the dtype, the encoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from kanlab.tasks.base import Dataset
from kanlab.tasks.config import TABULAR_ONLY, TASK_KINDS, TaskConfig
from kanlab.tasks.data import DATA_SUFFIXES as DATA_SUFFIXES
from kanlab.tasks.data import data_dataset
from kanlab.tasks.datasets import DATASETS, sklearn_dataset
from kanlab.tasks.encodings import EncodingConfig, encode
from kanlab.tasks.functions import (
    FUNCTIONS,
    SAMPLINGS,
    TargetFunction,
    expression_function,
    function_dataset,
)
from kanlab.tasks.functions import get_function as get_function
from kanlab.tasks.image import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from kanlab.tasks.image import IMAGES, image_dataset, psnr
from kanlab.tasks.tabular import STANDARDIZE as STANDARDIZE
from kanlab.tasks.tabular import TARGET_KINDS as TARGET_KINDS

__all__ = [
    "DATASETS",
    "FUNCTIONS",
    "IMAGES",
    "SAMPLINGS",
    "TABULAR_ONLY",
    "TASK_KINDS",
    "Dataset",
    "TargetFunction",
    "TaskConfig",
    "data_hash",
    "expression_function",
    "function_dataset",
    "input_files",
    "make_dataset",
    "psnr",
]

STREAM_NOISE, STREAM_VAL_NOISE = 2, 5


def input_files(cfg: TaskConfig) -> tuple[Path, ...]:
    """The files a task reads: a data task's file, an image file (none for functions and bundled images)."""
    if cfg.kind == "data":
        return (Path(cfg.path).expanduser(),)
    if cfg.kind == "image" and cfg.name not in IMAGES:
        return (Path(cfg.name).expanduser(),)
    return ()


def data_hash(cfg: TaskConfig) -> str | None:
    """SHA-256 of the bytes of the file the task reads (as `sha256sum` prints it; of the files'
    digests if it reads several), None when it reads none: part of a run's identity, so that an
    edited file gives new runs instead of reusing the results of the old one."""
    digests = []
    for path in input_files(cfg):
        try:
            digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
        except OSError as err:
            raise FileNotFoundError(f"cannot read {str(path)!r} (the task's file): {err.strerror}") from None
    if len(digests) < 2:
        return digests[0] if digests else None
    return hashlib.sha256(" ".join(digests).encode()).hexdigest()


def _describe_encoding(enc: EncodingConfig) -> str:
    if enc.kind == "gaussian":
        return f"gaussian ({enc.features} features, sigma {enc.sigma:g}, seed {enc.seed})"
    return f"{enc.kind} ({enc.channels} channels)"


def _build(cfg: TaskConfig) -> Dataset:
    if cfg.kind == "function":
        return function_dataset(
            cfg.target(), cfg.n_train, cfg.n_test,
            input_range=cfg.input_range, sampling=cfg.sampling, seed=cfg.seed, val_fraction=cfg.val_fraction,
        )
    if cfg.kind == "image":
        return image_dataset(cfg.name, cfg.image_size, val_fraction=cfg.val_fraction, seed=cfg.seed)
    if cfg.kind == "dataset":
        return sklearn_dataset(cfg.name, test_fraction=cfg.test_fraction, seed=cfg.seed,
                               standardize=cfg.standardize, val_fraction=cfg.val_fraction)
    return data_dataset(
        cfg.path, cfg.inputs, cfg.targets, test_fraction=cfg.test_fraction, seed=cfg.seed,
        target_kind=cfg.targets_are, standardize=cfg.standardize, val_fraction=cfg.val_fraction,
    )


def make_dataset(cfg: TaskConfig, dtype: torch.dtype = torch.float32) -> Dataset:
    """Build the task's dataset: same cfg, identical tensors (no global RNG state is used).

    Args:
        cfg: the task.
        dtype: floating dtype of every tensor.
    Returns:
        Dataset with encoded x, noisy y_train and y_val (if cfg.noise > 0: the validation set is
        held-out training data), clean y_test, raw coords.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype}")
    raw = _build(cfg)

    def noisy(y: torch.Tensor, stream: int) -> torch.Tensor:
        if cfg.noise > 0:
            rng = np.random.default_rng([cfg.seed, stream])
            y = y + cfg.noise * torch.from_numpy(rng.standard_normal(tuple(y.shape)))
        return y.to(dtype)

    c_train, c_test = raw.coords_train.to(dtype), raw.coords_test.to(dtype)
    enc = cfg.encoding
    suffix = "" if enc.kind == "none" else f"; inputs encoded {_describe_encoding(enc)}"
    c_val = None if raw.coords_val is None else raw.coords_val.to(dtype)
    return replace(
        raw,
        description=raw.description + suffix,
        x_train=encode(c_train, cfg.encoding),
        y_train=noisy(raw.y_train, STREAM_NOISE),
        x_test=encode(c_test, cfg.encoding),
        y_test=raw.y_test.to(dtype),
        coords_train=c_train,
        coords_test=c_test,
        x_val=None if c_val is None else encode(c_val, cfg.encoding),
        y_val=None if raw.y_val is None else noisy(raw.y_val, STREAM_VAL_NOISE),
        coords_val=c_val,
    )
