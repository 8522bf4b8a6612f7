"""The code version in a run's identity: an edited source gives new runs, unchanged code the same ids."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import kanlab.study.code_version as cv
from kanlab.runs.driver import run_experiments
from kanlab.runs.experiment import execute
from kanlab.runs.store import ResultsStore
from kanlab.study.config import ExperimentConfig, parse_study
from kanlab.study.experiments import expand

RAW = {"name": "cv", "seeds": [0], "train": {"steps": 2, "eval_every": 1},
       "tasks": [{"name": "zigzag", "n_train": 16, "n_test": 8}],
       "models": [{"family": "mlp", "spec": "mlp:1-3-1"}]}


def copy_of_package(to: Path) -> Path:
    """A copy of the installed package's source, to edit without touching the real one."""
    shutil.copytree(cv.PACKAGE, to, ignore=shutil.ignore_patterns("__pycache__"))
    return to


def naive_hash(root: Path) -> str:
    """The code version computed independently: the numerical libraries' versions, then every
    .py/.c/.h outside report/, by relative path."""
    h = hashlib.sha256()
    for name in ("torch", "numpy", "scipy"):
        h.update(f"{name}=={metadata.version(name)}\0".encode())
    files = sorted(p for p in root.rglob("*") if p.suffix in (".py", ".c", ".h")
                   and "__pycache__" not in p.parts and p.relative_to(root).parts[0] != "report")
    for p in files:
        data = p.read_bytes()
        h.update(f"{p.relative_to(root).as_posix()}\0{len(data)}\0".encode() + data)
    return h.hexdigest()


def plan(monkeypatch: pytest.MonkeyPatch, package: Path) -> ExperimentConfig:
    monkeypatch.setattr(cv, "PACKAGE", package)
    (exp,) = expand(parse_study(RAW), threads=1)
    return exp


def test_an_edited_source_file_gives_a_new_run_id_and_report_code_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A kanlab upgraded or edited reran nothing: `finished` runs of the old code were skipped.
    same, edited, drawn, kernel = (copy_of_package(tmp_path / n / "kanlab") for n in ("a", "b", "c", "d"))
    train = edited / "splines.py"
    train.write_bytes(train.read_bytes() + b"\n# one more line\n")
    plots = drawn / "report" / "plots.py"
    plots.write_bytes(plots.read_bytes() + b"\n# a plot restyled\n")
    source = kernel / "layers" / "kan" / "_native.c"
    source.write_bytes(source.read_bytes().replace(b"int", b"int ", 1))
    real = cv.code_version()
    assert real == naive_hash(cv.PACKAGE) and cv.source_files(cv.PACKAGE)  # hashes the files it should
    runs = {name: plan(monkeypatch, p) for name, p in
            (("same", same), ("edited", edited), ("drawn", drawn), ("kernel", kernel))}
    assert {name: e.code_version for name, e in runs.items()} == {
        "same": real, "edited": naive_hash(edited), "drawn": real, "kernel": naive_hash(kernel)}
    assert runs["same"].run_id == runs["drawn"].run_id
    assert len({runs[n].run_id for n in ("same", "edited", "kernel")}) == 3
    assert ExperimentConfig.from_dict(runs["edited"].to_dict()) == runs["edited"]  # config.json round trip


def test_unchanged_code_gives_the_same_version_in_another_process() -> None:
    script = "from kanlab.study.code_version import code_version as v; print(v())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == cv.code_version() == naive_hash(cv.PACKAGE)


def test_runs_of_old_and_new_code_are_both_kept_each_labelled_and_a_stale_plan_is_not_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = copy_of_package(tmp_path / "old" / "kanlab"), copy_of_package(tmp_path / "new" / "kanlab")
    (new / "splines.py").write_bytes((new / "splines.py").read_bytes() + b"\n# upgraded\n")
    db = tmp_path / "runs" / "kanlab.db"
    first = plan(monkeypatch, old)
    run_experiments([first], tmp_path / "runs", db)
    second = plan(monkeypatch, new)  # the same study after an upgrade: run again, not skipped
    (folder,) = run_experiments([second], tmp_path / "runs", db)
    assert json.loads((folder / "config.json").read_text())["code_version"] == naive_hash(new)
    with ResultsStore(db) as store:
        rows = {r["run_id"]: r for r in store.runs("cv")}
    assert {rid: r["code_version"] for rid, r in rows.items()} == {
        first.run_id: naive_hash(old), second.run_id: naive_hash(new)}
    assert {r["status"] for r in rows.values()} == {"finished"}
    # A worker on other code than the driver planned with refuses the run, rather than recording
    # numbers of one code under the version of another.
    final = json.loads((execute(first, tmp_path / "stale") / "final.json").read_text())
    assert final["status"] == "failed"
    assert f"planned by kanlab code {naive_hash(old)[:12]}" in final["message"]


def test_a_new_release_of_torch_numpy_or_scipy_is_a_new_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same kanlab source on another torch computes other numbers (kernels, reductions, RNG).
    real = cv.code_version()
    installed = {name: metadata.version(name) for name in cv.LIBRARIES}
    seen = {real}
    for name in cv.LIBRARIES:
        bump = {n: v + ("+1" if n == name else "") for n, v in installed.items()}
        monkeypatch.setattr(cv, "version", bump.__getitem__)
        cv.library_versions.cache_clear()
        seen.add(cv.code_version())
    assert len(seen) == 1 + len(cv.LIBRARIES)
    monkeypatch.undo()
    cv.library_versions.cache_clear()
    assert cv.code_version() == real
