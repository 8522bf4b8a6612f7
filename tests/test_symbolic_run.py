"""Studies with [symbolic]: config checks, the run folder, the database row and the report section."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import sys
from html import escape as html_escape
from pathlib import Path

import pytest
import sympy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from kanlab.cli import main
from kanlab.runs.experiment import load_run
from kanlab.study.config import apply_overrides, load_study, parse_study
from kanlab.study.experiments import expand

TINY_TOML = """
name = "sym"
seeds = [0]
[symbolic]
steps = 2
refine_grid = 6
library = ["x", "x^2", "sin"]
r2_threshold = -1e30            # fix every edge, however poor its fit: the formula always exists
final_steps = 1
prune_threshold = 1e-3
[[tasks]]
kind = "function"
name = "sin_plus_sq"
n_train = 100
n_test = 50
[tasks.symbolic]
sparsity = 0.05
[[models]]
label = "KAN"
spec = "kan:2-3-1:g=4"
"""
TINY = tomllib.loads(TINY_TOML)


def test_symbolic_settings_merge_per_task_and_are_checked() -> None:
    study = load_study("symbolic-demo")
    runs = expand(study)
    assert [r.symbolic["sparsity"] for r in runs] == [0.01, 0.01, 0.05]  # type: ignore[index]
    assert all(r.symbolic["prune_threshold"] == 0.01 for r in runs)      # type: ignore[index]
    # Plain runs carry no symbolic key, so their ids do not depend on the feature existing.
    plain = expand(load_study("smoke"))[0]
    assert plain.symbolic is None and "symbolic" not in plain.to_dict()
    with pytest.raises(ValueError, match=r"unknown key\(s\) stepz in symbolic of tasks.0; allowed: steps"):
        parse_study(apply_overrides(TINY, ["symbolic.stepz=3"]))
    with pytest.raises(ValueError, match="unknown symbolic function 'sinh'"):
        parse_study(apply_overrides(TINY, ['tasks.0.symbolic.library=["sinh"]']))
    with pytest.raises(ValueError, match="seed comes from the study's seeds"):
        parse_study(apply_overrides(TINY, ["symbolic.seed=3"]))
    mixed = apply_overrides(TINY, []) | {"models": [*TINY["models"], {"label": "MLP", "spec": "mlp:2-8-1"}]}
    with pytest.raises(ValueError, match="needs B-spline KAN models .*not: MLP"):
        parse_study(mixed)


def test_a_symbolic_study_runs_records_and_reports(tmp_path: Path) -> None:
    study = tmp_path / "sym.toml"
    study.write_text(TINY_TOML)
    assert main(["compare", str(study), "--root", str(tmp_path)]) == 0
    con = sqlite3.connect(tmp_path / "kanlab.db")
    (status, final_json, n_curve), = con.execute(
        "SELECT status, final_json, (SELECT COUNT(*) FROM curves c WHERE c.run_id = r.run_id) FROM runs r")
    con.close()
    final = json.loads(final_json)
    assert status == "finished"
    folder = next((tmp_path / "sym").glob("sin_plus_sq-*"))
    summary = json.loads((folder / "symbolic" / "symbolic.json").read_text())
    names = [s["name"] for s in summary["stages"]]
    assert names == ["sparsify", "prune", "retrain", "refine", "auto-fix-0", "auto-fix-1", "final", "polish"]
    assert n_curve == len(names)                      # one curve point per stage
    assert [s["step"] for s in summary["stages"]] == [2, 2, 4, 6, 8, 8, 9, 9]
    # The recorded formula is the run's model: evaluate it against the saved predictions.
    assert final["formula"] == summary["formula"] and final["formula_error"] < 1e-10
    assert math.isclose(final["test_rmse"], summary["stages"][-1]["test_rmse"], rel_tol=1e-9)
    expr = sympy.sympify(summary["exact_formula"])
    assert expr.free_symbols <= set(sympy.symbols("x_1 x_2"))
    html = (tmp_path / "sym" / "report.html").read_text()
    assert "Symbolic workflow: KAN, seed 0" in html
    assert f"<code>{html_escape(summary['formula'])}</code>" in html
    assert len(re.findall(r"<figcaption>Stage \d+: ", html)) == len(names)
    with pytest.raises(ValueError, match="symbolic run: its result is the formula"):
        load_run(folder)



@pytest.mark.slow  # a whole study and its report: seconds
def test_a_symbolic_run_without_a_formula_says_so_in_its_status_and_the_report(tmp_path: Path) -> None:
    # r2_threshold 2: no fit is good enough, every edge stays a spline (no pruning or refinement:
    # fewer stages to draw)
    study = tmp_path / "sym.toml"
    study.write_text(TINY_TOML.replace("r2_threshold = -1e30", "r2_threshold = 2.0")
                     .replace("refine_grid = 6", 'refine_grid = "none"')
                     .replace("prune_threshold = 1e-3", 'prune_threshold = "none"'))
    assert main(["compare", str(study), "--root", str(tmp_path)]) == 0
    con = sqlite3.connect(tmp_path / "kanlab.db")
    (status, message), = con.execute("SELECT status, message FROM runs")
    con.close()
    assert status == "no_formula"
    assert re.fullmatch(r"no formula: 9 edge\(s\) stayed splines \(layer 0 edge 0->0, .*\); their best "
                        r"symbolic fits were below r2_threshold 2.0", message)
    html = (tmp_path / "sym" / "report.html").read_text()
    assert "1 run(s) diverged, failed or found no formula" in html and html_escape(message) in html
    assert "No formula: some edges stayed splines" in html  # the run's own section is still there
    assert main(["compare", str(study), "--root", str(tmp_path)]) == 0  # rerun: recorded, not redone
    folder = next((tmp_path / "sym").glob("sin_plus_sq-*"))
    assert json.loads((folder / "final.json").read_text())["status"] == "no_formula"
