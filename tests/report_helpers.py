"""Synthetic run folders in the on-disk contract of kanlab.runs, for store and report tests."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

EDGE_FAMILIES = ("kan", "rbf", "chebyshev", "fourier", "tanhquad")


def write_run(root: Path, experiment: str, *, label: str, family: str, seed: int = 0, task: str = "zigzag",
              kind: str = "function", status: str = "finished", message: str | None = None,
              test_loss: float = 1e-3, train_loss: float | None = None, param_count: int = 100,
              wall_time: float = 2.0, time_per_step: float = 0.01, n_evals: int = 5,
              layers: tuple[tuple[int, int], ...] = ((1, 3), (3, 1)), run_id: str | None = None) -> Path:
    """Write `<root>/<experiment>/<run_id>/` with config, metrics, final, predictions and edges.

    Args:
        root: runs root.
        experiment: experiment name.
        label, family, seed, task, kind, status, message: the run's identity and outcome.
        test_loss, train_loss, param_count, wall_time, time_per_step: final.json values.
        n_evals: metrics.jsonl lines (losses fall geometrically to the final values).
        layers: (in, out) of each per-edge layer in edges.npz (families in EDGE_FAMILIES only).
        run_id: folder name (default from task, family, label and seed).
    Returns:
        The run folder.
    """
    train_loss = test_loss / 2 if train_loss is None else train_loss
    slug = "".join(c if c.isalnum() else "-" for c in label.lower())
    run_id = run_id or f"{Path(task).stem}-{family}-{slug}-s{seed}"
    folder = Path(root) / experiment / run_id
    folder.mkdir(parents=True)
    image = kind == "image"
    psnr = 10 * math.log10(1 / test_loss) if image and math.isfinite(test_loss) else None
    config = {"experiment": experiment, "run_id": run_id, "label": label, "family": family,
              "spec": f"{family}:1-3-1", "task": {"kind": kind, "name": task, "n_train": 64},
              "train": {"optimizer": "adam", "lr": 0.01, "steps": 20, "dtype": "float64"}, "seed": seed}
    steps = [int(s) for s in np.linspace(0, 20, n_evals)]
    with (folder / "metrics.jsonl").open("w") as f:
        for i, step in enumerate(steps):
            decay = 10.0 ** (n_evals - 1 - i)
            f.write(json.dumps({"step": step, "time": 0.1 * step, "train_loss": train_loss * decay,
                                "test_loss": test_loss * decay, "test_rmse": math.sqrt(test_loss * decay),
                                "psnr": psnr, "lr": 0.01, "grid_size": 5 if i < 3 else 10}) + "\n")
    final = {"status": status, "message": message, "param_count": param_count, "train_loss": train_loss,
             "test_loss": test_loss, "test_rmse": math.sqrt(test_loss) if math.isfinite(test_loss) else None,
             "psnr": psnr, "wall_time": wall_time, "time_per_step": time_per_step, "steps": 20,
             "stages": [{"grid_size": 5, "step": 10, "train_rmse": 0.1, "test_rmse": 0.2}]}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "final.json").write_text(json.dumps(final, indent=2))
    rng = np.random.default_rng(seed)
    if image:
        yy, xx = np.mgrid[0:16, 0:16] / 15.0
        coords = np.stack([xx.ravel(), yy.ravel()], axis=1)                      # (256, 2)
        y = (0.5 + 0.5 * np.sin(6 * xx) * np.cos(4 * yy)).reshape(-1, 1)         # (256, 1)
        shape = np.array([16, 16], dtype=np.int64)
    else:
        coords = np.sort(rng.uniform(-1, 1, size=(200, 1)), axis=0)              # (200, 1)
        y = np.sin(3 * coords) + 0.3 * np.abs(coords)                            # (200, 1)
        shape = np.zeros(0, dtype=np.int64)
    noise = math.sqrt(test_loss) if math.isfinite(test_loss) else 1.0
    y_pred = y + noise * rng.standard_normal(y.shape)
    np.savez(folder / "predictions.npz", coords_test=coords, y_test=y, y_pred=y_pred, image_shape=shape)
    if family in EDGE_FAMILIES:
        write_edges(folder / "edges.npz", layers, knots=family == "kan")
    return folder


def write_edges(path: Path, layers: tuple[tuple[int, int], ...], *, knots: bool, points: int = 50) -> None:
    """An edges.npz with smooth, distinct per-edge curves for each (in, out) layer."""
    arrays: dict[str, Any] = {"layers": np.arange(len(layers), dtype=np.int64)}
    for l, (n_in, n_out) in enumerate(layers):
        lo, hi = -1.0 - 0.5 * np.arange(n_in), 1.0 + 0.25 * np.arange(n_in)      # (in,) each
        x = lo + (hi - lo) * np.linspace(0, 1, points)[:, None]                  # (P, in)
        o, i = np.arange(n_out)[:, None], np.arange(n_in)[None, :]
        amp = 1.0 / (1 + o + i)                                                  # (out, in)
        arrays[f"layer{l}_x"] = x
        arrays[f"layer{l}_y"] = amp * np.sin((1 + o) * x[:, None, :] + i)        # (P, out, in)
        if knots:
            step = (hi - lo) / 5
            arrays[f"layer{l}_knots"] = lo[:, None] + step[:, None] * np.arange(-3, 9)  # (in, 12)
    np.savez(path, **arrays)
