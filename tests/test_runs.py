"""One run into its folder (kanlab.runs.execute): diverged runs, the inputs a run's identity covers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kanlab.models.spec import FAMILIES
from kanlab.runs.experiment import evaluate_run, execute
from kanlab.runs.outputs import inside
from kanlab.study.config import ExperimentConfig, parse_study
from kanlab.study.experiments import expand


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
    folder = execute(exp, tmp_path)  # plots of a diverged run: test_report.py
    final = json.loads((folder / "final.json").read_text())
    assert final["status"] == "diverged", final["message"]
    assert final["message"].startswith("diverged at step 1")
    assert not (folder / "error.txt").exists()
    with np.load(folder / "predictions.npz") as pred:
        assert pred["y_pred"].shape == pred["y_test"].shape == (16, 1)
    assert (folder / "model.pt").is_file()
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


def csv(path: Path, fn: Any, n: int = 40) -> Path:
    """A CSV of y = fn(x) at n points in [-1, 1] (header x,y)."""
    xs = np.linspace(-1, 1, n)
    path.write_text("x,y\n" + "".join(f"{float(x)!r},{float(fn(x))!r}\n" for x in xs))
    return path


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_study(*paths: Path) -> dict[str, Any]:
    return study([{"family": "mlp", "budget": 60}], {"steps": 3, "eval_every": 3}, seeds=[0],
                 tasks=[{"kind": "data", "path": str(p), "targets": ["y"]} for p in paths])


def edit_between_runs(tmp_path: Path) -> tuple[Path, Path, str, str, list[dict[str, Any]]]:
    """Run a study on data.csv, edit the file, run it again: (file, db, old hash, new hash, rows)."""
    from kanlab.runs.driver import run_experiments
    from kanlab.runs.store import ResultsStore

    data = csv(tmp_path / "data.csv", np.sin)
    root, db = tmp_path / "runs", tmp_path / "runs" / "kanlab.db"
    run_experiments(expand(parse_study(data_study(data))), root, db)
    old = sha256(data)
    csv(data, lambda x: 3 * x * x)
    run_experiments(expand(parse_study(data_study(data))), root, db)
    with ResultsStore(db) as store:
        return data, db, old, sha256(data), store.runs()


def test_an_edited_data_file_gives_new_runs_and_the_old_rows_stay(tmp_path: Path) -> None:
    # Run on data.csv, edit it, rerun: it reported "finished" with the old loss.
    from kanlab.report.tables import data_version, task_labels

    data, _, old, new, rows = edit_between_runs(tmp_path)
    assert sorted(r["data_hash"] for r in rows) == sorted([old, new])  # the old row kept
    assert {r["status"] for r in rows} == {"finished"} and len({r["run_id"] for r in rows}) == 2
    by_hash = {r["data_hash"]: r["test_loss"] for r in rows}
    assert by_hash[old] != by_hash[new]
    # two versions of the data are two tasks in reports, each labelled with its version
    assert sorted(task_labels(rows).values()) == sorted(f"data (sha256 {h[:12]})" for h in (old, new))
    assert {data_version(r) for r in rows if r["data_hash"] == old} == {f"sha256 {old[:12]}"}
    old_run = next(Path(r["run_dir"]) for r in rows if r["data_hash"] == old)
    planned = rf"{data} is not the data this run was planned with \(sha256 {old[:12]}\.\.\.; it was edited"
    with pytest.raises(ValueError, match=planned):
        evaluate_run(old_run)


@pytest.mark.slow  # the report draws its plots
def test_the_report_shows_each_data_version_in_its_own_section(tmp_path: Path) -> None:
    from kanlab.report.html import write_report

    data, db, old, new, _ = edit_between_runs(tmp_path)
    html = write_report(db, "t", tmp_path / "report").read_text()
    assert html.count('<h2 id="task-') == 2
    from kanlab.study.code_version import code_version

    for h in (old, new):  # each with its data version, and the code version beside it
        assert (f'data (sha256 {h[:12]}) <span class="note">(data: {data}, sha256 {h[:12]}; code '
                f"{code_version()[:12]})") in html


def test_data_edited_after_planning_is_not_trained_on(tmp_path: Path) -> None:
    data = csv(tmp_path / "data.csv", np.sin)
    exp = expand(parse_study(data_study(data)))[0]
    assert exp.data_hash == sha256(data) and exp.task.name == "data"  # named after its file
    csv(data, np.cos)
    final = json.loads((execute(exp, tmp_path) / "final.json").read_text())
    assert final["status"] == "failed" and "is not the data this run was planned with" in final["message"]


def test_an_edited_user_image_gives_new_run_ids(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "img.png"
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(pixels).save(path)
    raw = study([{"family": "mlp", "budget": 60}], {}, tasks=[{"kind": "image", "name": str(path)}])
    before = one(raw)
    pixels[3, 4] += 1
    Image.fromarray(pixels).save(path)
    after = one(raw)
    assert (before.data_hash, after.data_hash) != (None, None) and after.data_hash == sha256(path)
    assert before.run_id != after.run_id and before.data_hash != after.data_hash
    assert one(study([{"family": "mlp", "budget": 60}], {})).data_hash is None  # a function reads no file


def test_the_thread_count_is_part_of_the_identity_and_is_what_a_run_computes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kanlab.runs.experiment

    seen: list[int] = []
    real = kanlab.runs.experiment.train

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(kanlab.runs.experiment, "train", counting)
    raw = study([{"family": "mlp", "budget": 60}], {"steps": 1, "eval_every": 1})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        exp = replace(one(raw), threads=1)
        assert one(raw).threads == 2 and one(raw).run_id != exp.run_id  # planned here: this process's
        assert expand(parse_study(raw), threads=1)[0].run_id == exp.run_id
        folder = execute(exp, tmp_path)
        assert seen == [1] and torch.get_num_threads() == 2  # ran on its own count, then restored
        assert json.loads((folder / "config.json").read_text())["threads"] == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow  # three runs of a 64 -> 64 KAN on 1024 points
def test_a_run_gives_the_same_numbers_whatever_threads_the_process_has(tmp_path: Path) -> None:
    # The same run id gave different numbers under `kanlab run` (2 threads) and `kanlab sweep` (1 per
    # worker). A 64 -> 64 layer on 1024 points: the gather kernels split their sums over threads.
    from kanlab.layers.kan import native_build

    raw = study([{"family": "kan", "spec": "kan:1-64-64-1"}], {"steps": 3, "eval_every": 3},
                tasks=[{"name": "zigzag", "n_train": 1024, "n_test": 64}])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        exp = one(raw)  # planned in a one-thread process, as a sweep's workers run
        folders = []
        for threads in (1, 2):  # the process's own count no longer matters
            torch.set_num_threads(threads)
            folders.append(execute(exp, tmp_path / str(threads)))
            assert torch.get_num_threads() == threads  # restored afterwards
        losses = [json.loads((f / "final.json").read_text())["test_loss"] for f in folders]
        assert losses[0] == losses[1]
        assert [json.loads((f / "config.json").read_text())["threads"] for f in folders] == [1, 1]
        two = replace(exp, threads=2)
        assert two.run_id != exp.run_id and one(raw).run_id == two.run_id  # planned in a 2-thread process
        if native_build.openmp_runtime()[0] is not None:  # the kernels split work only on torch's OpenMP
            folder = execute(two, tmp_path / "two")
            assert json.loads((folder / "final.json").read_text())["test_loss"] != losses[0]
    finally:
        torch.set_num_threads(before)
