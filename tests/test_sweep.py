"""Sweep files: expansion, stable ids, coordinates, bad input before any run, presets and the report."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kanlab import models
from kanlab.cli import main
from kanlab.report.sweep import sweep_section, write_sweep_report
from kanlab.runs.driver import run_experiments
from kanlab.runs.executors import SerialExecutor
from kanlab.study.config import ExperimentConfig
from kanlab.study.sweep import apply_sweep_overrides, load_sweep, parse_sweep

TINY = """
name = "tiny"
seeds = [0, 1, 2]
depth = 2
[train]
steps = 5
eval_every = 5
[[tasks]]
name = "zigzag"
n_train = 32
n_test = 32
[[models]]
label = "KAN"
family = "kan"
options = { grid_size = 5 }
[[models]]
label = "MLP"
family = "mlp"
[axes]
budget = [300, 1000]
"""


def raw(extra: str = "", tiny: str = TINY) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(tiny + extra)


def test_axes_expand_to_budget_matched_runs_with_stable_ids() -> None:
    sweep = parse_sweep(raw())
    assert sweep.points == 2 and len(sweep.experiments) == 2 * 2 * 3  # budgets x models x seeds
    for exp in sweep.experiments:
        budget = sweep.coords[exp.run_id]["budget"]
        count = models.count_params(models.parse_spec(exp.spec))
        assert abs(count - budget) <= 0.02 * budget, (exp.spec, budget)
        assert exp.experiment == "tiny" and sweep.coords[exp.run_id]["depth"] == 2
    again = parse_sweep(raw())
    assert [e.run_id for e in sweep.experiments] == [e.run_id for e in again.experiments]
    assert len({e.run_id for e in sweep.experiments}) == 12


def test_dotted_axes_select_entries_and_mark_axes_that_do_not_apply() -> None:
    extra = '"models.kan.options.grid_size" = [5, 10]\n"train.lr" = [0.01, 0.001]\n'
    sweep = parse_sweep(raw(extra))
    assert sweep.points == 8
    # The MLP is the same run at both grid sizes: it runs once, with grid_size None.
    kan = [e for e in sweep.experiments if e.family == "kan"]
    mlp = [e for e in sweep.experiments if e.family == "mlp"]
    assert len(kan) == 2 * 2 * 2 * 3 and len(mlp) == 2 * 2 * 3
    assert {sweep.coords[e.run_id]["axes"]["models.kan.options.grid_size"] for e in mlp} == {None}
    assert {sweep.coords[e.run_id]["axes"]["models.kan.options.grid_size"] for e in kan} == {5, 10}
    assert {e.spec.endswith("g=10") for e in kan} == {True, False}
    assert {e.train.lr for e in sweep.experiments} == {0.01, 0.001}
    by_index = parse_sweep(raw('"models.0.options.grid_size" = [5, 10]\n'))
    star = parse_sweep(raw('"tasks.*.n_train" = [16, 32]\n'))
    assert len(by_index.experiments) == 18 and len(star.experiments) == 24
    assert {e.task.n_train for e in star.experiments} == {16, 32}


def test_set_overrides_replace_axes_and_study_keys() -> None:
    out = apply_sweep_overrides(raw(), ["axes.budget=[300]", "axes.train.lr=[0.1, 0.2]", "seeds=[4]"])
    assert out["axes"] == {"budget": [300], "train.lr": [0.1, 0.2]} and out["seeds"] == [4]
    sweep = parse_sweep(out)
    assert len(sweep.experiments) == 4 and {e.seed for e in sweep.experiments} == {4}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("bogus = [1, 2]\n", "unknown axis 'bogus'"),
        ('"train.bogus" = [1, 2]\n', "unknown key 'bogus' in train"),
        ('"models.kan.options.gird" = [5]\n', "unknown key 'gird' in the options of KAN"),
        ('"models.kna.options.grid_size" = [5]\n', "no models entry has family or label 'kna'"),
        ('"tasks.3.n_train" = [5]\n', "tasks has entries 0..0, not 3"),
        ("depth = []\n", "axis 'depth' is empty"),
        ('"train.lr" = ["fast", "slow"]\n', "values must be numbers like the study's train.lr"),
        ('"train.lr" = [0.1, "fast"]\n', "mixes kinds"),
        ("depth = [1.5]\n", "whole numbers >= 1"),
        ('"train.lr" = 0.1\n', "must be a list"),
        ("seeds = [[0], [1]]\n", "seeds already is the seed axis"),
        ("depth = [1, 1]\n", "repeats a value"),
        ('"train.lr" = [-1.0]\n', "sweep point budget=300, train.lr=-1.0: .*TrainConfig.lr=-1.0 is invalid"),
        ('"models.MLP.depth" = [1, 2]\n"models.MLP.spec" = ["mlp:1-8-1"]\n', "changes no run"),
    ],
)
def test_bad_sweeps_fail_before_any_run(extra: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sweep(raw(extra))


@pytest.mark.parametrize("name", ["../up", "/abs", "..", "a b"])
def test_a_sweep_name_is_one_plain_folder_name(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^sweep name {re.escape(repr(name))} is not allowed: use 1-100"):
        parse_sweep(raw(tiny=TINY.replace('name = "tiny"', f"name = {json.dumps(name)}")))


def test_an_unmeetable_budget_names_the_point_and_the_family() -> None:
    sweep = raw()
    sweep["axes"]["budget"] = [300, 5]
    expected = r"sweep point budget=5: model 'KAN' on task 'zigzag': budget 5 is below the smallest kan model"
    with pytest.raises(ValueError, match=expected):
        parse_sweep(sweep)


def test_the_cli_reports_bad_sweeps_with_exit_2_and_writes_nothing(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(TINY)
    bad.write_text(TINY + '"train.bogus" = [1]\n')
    root = tmp_path / "runs"
    assert main(["sweep", str(bad), "--root", str(root)]) == 2
    assert "kanlab: error: axis 'train.bogus'" in capsys.readouterr().err and not root.exists()
    assert main(["sweep", str(good), "--root", str(root), "--set", "axes.depth=[]"]) == 2
    assert "axis 'depth' is empty" in capsys.readouterr().err and not root.exists()
    assert main(["sweep", str(good), "--root", str(root), "--set", "axes.budget=[300, 3]"]) == 2
    assert "budget 3 is below" in capsys.readouterr().err and not root.exists()


def test_presets_expand_at_their_documented_sizes() -> None:
    quick = load_sweep("scaling-quick")
    assert quick.points == 3 and len(quick.experiments) == 2 * 3 * 4 * 3
    assert {c["budget"] for c in quick.coords.values()} == {300, 1000, 3000}
    assert len({e.family for e in quick.experiments}) == 4
    full = load_sweep("scaling")
    assert max(c["budget"] for c in full.coords.values()) == 30_000
    assert {e.seed for e in full.experiments} == set(range(5))


def rows(db: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    out = [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY run_id")]
    con.close()
    return out


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ExperimentConfig]]:
    root = tmp_path_factory.mktemp("sweep")
    sweep = parse_sweep(raw('"train.lr" = [0.01, 0.03]\n'))
    run_experiments(sweep.experiments, root, root / "kanlab.db", executor=SerialExecutor(),
                    annotations=sweep.annotations())
    return root, list(sweep.experiments)


def test_runs_carry_their_coordinates_into_the_database(ran: tuple[Path, list[ExperimentConfig]]) -> None:
    root, exps = ran
    recorded = rows(root / "kanlab.db")
    assert len(recorded) == len(exps) == 24 and {r["status"] for r in recorded} == {"finished"}
    for r in recorded:
        coords = json.loads(r["config_json"])["sweep"]
        assert coords["budget"] in (300, 1000) and coords["axes"]["train.lr"] in (0.01, 0.03)
        assert abs(r["param_count"] - coords["budget"]) <= 0.02 * coords["budget"]
        # The run folder reloads as its experiment: the extra key does not change the run id.
        config = json.loads((Path(r["run_dir"]) / "config.json").read_text())
        assert ExperimentConfig.from_dict(config).run_id == r["run_id"]


def test_the_sweep_report_has_statistics_comparisons_and_a_scaling_fit(
        ran: tuple[Path, list[ExperimentConfig]]) -> None:
    root, _ = ran
    page = write_sweep_report(root / "kanlab.db", "tiny", root / "tiny").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    text = re.sub(r"<[^>]+>", " ", page)
    for needle in ("Test MSE mean", "Geometric mean", "95% CI (t on log)", "95% CI (t)",
                   "paired comparison with the mlp", "95% CI (bootstrap)",
                   "Exponent alpha", "time to a target loss", "train.lr"):
        assert needle in text, needle
    # 2 budgets x 2 learning rates: one KAN-vs-MLP line each, with 3 seed pairs.
    assert len(re.findall(r'<td class="text">KAN</td><td class="text">MLP</td>', page)) == 4
    assert (root / "tiny" / "plots" / "sweep-scaling-0.png").is_file()
    assert (root / "tiny" / "plots" / "sweep-pareto-0.png").is_file() and "loss against cost" in text
    mlp_flops = {r["flops"] for r in rows(root / "kanlab.db") if r["family"] == "mlp"}
    assert "FLOPs / sample" in text and "Time / step" in text and "Model: params / FLOPs / step" in text
    assert all(f"{flops:,}" in text for flops in mlp_flops)
    with pytest.raises(ValueError, match="no runs"):
        sweep_section(root / "kanlab.db", "nope", root / "nope")


def test_cli_sweep_runs_resumes_and_prints_the_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    args = ["sweep", str(spec), "--root", str(tmp_path), "--executor", "serial", "--set", "seeds=[0]"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tiny: 4 runs (2 point(s) of 2 budget)" in out and "4 finished" in out
    assert (tmp_path / "tiny" / "report.html").is_file() and "report: " in out

    def stamps() -> dict[str, int]:
        return {r["run_id"]: Path(r["run_dir"], "final.json").stat().st_mtime_ns
                for r in rows(tmp_path / "kanlab.db")}

    before = stamps()
    assert main([*args, "--no-report"]) == 0
    assert stamps() == before
    assert main([*args, "--address", "tcp://127.0.0.1:1"]) == 2
    assert "--address needs --executor dask" in capsys.readouterr().err
    (tmp_path / "tiny" / "report.html").unlink()  # `kanlab report` of a sweep: the sweep report
    assert main(["report", "tiny", "--root", str(tmp_path)]) == 0
    assert "Sweep statistics: tiny" in (tmp_path / "tiny" / "report.html").read_text()


def test_the_report_counts_failed_runs_and_groups_plain_studies_by_size(tmp_path: Path) -> None:
    from kanlab.runs.executors import Job, run_job

    def mlp_seed_1_fails(job: Job) -> bytes:
        if job.config["family"] == "mlp" and job.config["seed"] == 1:
            raise RuntimeError("boom")
        return run_job(job)

    sweep = parse_sweep(raw("", TINY.replace("seeds = [0, 1, 2]", "seeds = [0, 1]")))
    # No annotations: the report finds budgets by clustering parameter counts.
    run_experiments(sweep.experiments, tmp_path, tmp_path / "db",
                    executor=SerialExecutor(target=mlp_seed_1_fails))
    html = sweep_section(tmp_path / "db", "tiny", tmp_path / "out")
    assert "8 runs, 6 finished" in html
    table = html.split("</table>")[0]  # the first task's cells: label, budget, params, flops, time, finished
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row)[:6] for row in table.split("<tr>")[2:]]
    assert len(cells) == 4 and [c[5] for c in cells if c[0] == "MLP"] == ["1 / 2", "1 / 2"]
    budgets = sorted({int(c[1].replace(",", "")) for c in cells})  # middles of parameter-count clusters
    assert budgets == [pytest.approx(300, rel=0.02), pytest.approx(1000, rel=0.02)]
    assert html.count("one pair: no test") == 2  # one KAN-vs-MLP line per budget, one pair each
