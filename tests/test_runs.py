"""One run into its folder (kanlab.runs.execute): diverged runs, the inputs a run's identity covers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kanlab.config import ExperimentConfig, parse_study
from kanlab.models import FAMILIES
from kanlab.runs import execute, expand, inside


def study(models: list[dict[str, Any]], train: dict[str, Any], tasks: list[dict[str, Any]] | None = None,
          **keys: Any) -> dict[str, Any]:
    """A raw study dict: tiny zigzag unless tasks are given."""
    return {"name": "t", "budget": 400, "train": {"steps": 3, "eval_every": 1, **train},
            "tasks": tasks or [{"name": "zigzag", "n_train": 32, "n_test": 16}], "models": models, **keys}


def one(raw: dict[str, Any]) -> ExperimentConfig:
    (exp,) = expand(parse_study(raw))
    return exp


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_diverged_run_is_diverged_with_the_outputs_it_can_write(family: str, tmp_path: Path) -> None:
    # SGD at lr 1e30 sends every family's parameters to inf/NaN at the first step. Writing the
    # predictions then ran the NaN model, whose next layer refused its NaN input: the run was
    # "failed", and --retry-failed reran it forever.
    exp = one(study([{"family": family}], {"optimizer": "sgd", "lr": 1e30, "steps": 6, "eval_every": 3}))
    folder = execute(exp, tmp_path, plots=family == "kan")  # plots take a second: once is enough
    final = json.loads((folder / "final.json").read_text())
    assert final["status"] == "diverged", final["message"]
    assert final["message"].startswith("diverged at step 1")
    assert not (folder / "error.txt").exists()
    with np.load(folder / "predictions.npz") as pred:
        assert pred["y_pred"].shape == pred["y_test"].shape == (16, 1)
    assert (folder / "model.pt").is_file()
    assert family != "kan" or (folder / "plots" / "curves.png").is_file()
    left = final.get("left_out", {})
    assert (folder / "edges.npz").is_file() != ("edges.npz" in left)  # written, or said why not


def test_every_folder_the_driver_writes_is_checked_to_lie_inside_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "runs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    assert inside(root, "study", "run") == root / "study" / "run"
    for names in (("..",), ("a", ".."), ("/etc",), ("a/b",), ("",), (".",)):
        with pytest.raises(ValueError, match="is not a folder inside the results root"):
            inside(root, *names)
    (root / "linked").symlink_to(outside)  # a link out of the tree is refused too
    exp = replace(one(study([{"family": "mlp"}], {})), experiment="linked")
    with pytest.raises(ValueError, match=r"refusing to write '.*/runs/linked/zigzag-mlp-s0-\w+': it is not"):
        execute(exp, root)
    assert list(outside.iterdir()) == []
