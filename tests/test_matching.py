"""Matching by FLOPs and by time: widths, the study keys, errors before any run, the time-match cache."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kanlab.models.budget import match_widths
from kanlab.models.spec import ModelConfig, parse_spec
from kanlab.models.stack import build, count_flops, count_params
from kanlab.study.axes import check_axis
from kanlab.study.config import ExperimentConfig, parse_study
from kanlab.study.experiments import expand
from kanlab.study.sweep import parse_sweep
from kanlab.tasks import TaskConfig, make_dataset
from kanlab.training import timing
from kanlab.training.config import TrainConfig
from test_flops import traced_macs

STUDY: dict[str, Any] = {
    "name": "m", "seeds": [0], "depth": 2, "train": {"steps": 5},
    "tasks": [{"kind": "function", "name": "exp_sin", "n_train": 64, "n_test": 64}],
    "models": [{"label": "KAN", "family": "kan", "options": {"grid_size": 5}},
               {"label": "MLP", "family": "mlp"}],
}


@pytest.mark.parametrize(("family", "options"), [("mlp", {}), ("kan", {"grid_size": 7}), ("fourier", {}),
                                                 ("tanhquad", {}), ("rbf", {"grid_size": 5})])
@pytest.mark.parametrize("budget", [500, 5_000, 50_000])
def test_flops_matched_widths_meet_the_budget(family: str, options: dict[str, Any], budget: int) -> None:
    widths = match_widths(family, budget, by="flops", depth=2, in_features=3, out_features=2, **options)
    flops = count_flops(ModelConfig.single(family, widths, **options))
    assert abs(flops - budget) <= 0.02 * budget, (widths, flops)


def test_flops_matching_agrees_with_a_counted_forward() -> None:
    widths = match_widths("kan", 3000, by="flops", depth=1, in_features=2, out_features=1, path="reference")
    model = build(ModelConfig.single("kan", widths, path="reference")).double()
    assert abs(traced_macs(model, 2) - 3000) <= 0.02 * 3000


def test_a_study_matched_by_flops_records_the_match_outside_the_run_id() -> None:
    study = parse_study({**STUDY, "budget": 2000, "match": "flops"})
    runs = expand(study)
    for exp in runs:
        assert exp.match is not None and exp.match["by"] == "flops" and exp.match["budget"] == 2000
        assert exp.match["value"] == count_flops(parse_spec(exp.spec))
        assert abs(exp.match["value"] - 2000) <= 0.02 * 2000
        same = ExperimentConfig.from_dict({**exp.to_dict(), "match": None})
        assert same.run_id == exp.run_id and "match" in exp.to_dict()
    by_params = expand(parse_study({**STUDY, "budget": 2000}))
    kan_p, kan_f = by_params[0], runs[0]
    assert count_params(parse_spec(kan_p.spec)) != count_params(parse_spec(kan_f.spec))
    assert kan_p.match is not None and kan_p.match["by"] == "params"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"budget": 2000, "match": "speed"}, r"models.0 \(kan\): match must be one of params, flops, time"),
        ({"budget": 2000, "match_tol": 1.5}, r"match_tol must be a number in \(0, 1\)"),
        ({"budget": -0.1, "match": "time"}, r"seconds per training step, a number > 0"),
        ({"budget": 1500.5, "match": "flops"}, r"the budget counts multiply-adds per sample"),
    ],
)
def test_bad_match_keys_fail_before_anything_runs(extra: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_study({**STUDY, **extra})


def test_a_budget_no_model_can_meet_names_the_model_and_the_task() -> None:
    expected = (r"model 'KAN' on task 'exp_sin': budget 20 is below the smallest kan model with 2 hidden "
                r"layers \(36 multiply-adds per sample at widths \(2, 1, 1, 1\)\)")
    with pytest.raises(ValueError, match=expected):
        expand(parse_study({**STUDY, "budget": 20, "match": "flops"}))


def fake_time(widths: tuple[int, ...], rng: np.random.Generator | None = None) -> float:
    """A step time that grows with the model: 1 ms + 10 ns per multiply-add, with +-2 % noise."""
    t = 1e-3 + 1e-8 * count_flops(ModelConfig.single("mlp", widths))
    return t * (1 + (0.02 * (2 * rng.random() - 1) if rng is not None else 0.0))


@pytest.mark.parametrize("budget", [1.5e-3, 4e-3, 2e-2, 0.1])
def test_match_time_lands_within_its_tolerance(budget: float) -> None:
    rng = np.random.default_rng(0)
    calls: list[tuple[int, ...]] = []

    def measure(widths: tuple[int, ...]) -> float:
        calls.append(widths)
        return fake_time(widths, rng)

    widths, seconds = timing.match_time(budget, measure, depth=2, in_features=3, out_features=1, tol=0.05)
    assert abs(seconds - budget) <= 0.05 * budget
    assert abs(fake_time(widths) - budget) <= 0.08 * budget  # the noiseless time: tol plus the noise
    assert widths[1] == widths[2] and len(calls) <= 2 * math.log2(widths[1] + 1) + 3


def test_match_time_errors_name_the_times_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"below the fastest mlp .* \(width 1: 0.001 s\)"):
        timing.match_time(5e-4, fake_time, depth=1, in_features=2, out_features=1, what="mlp")
    monkeypatch.setattr(timing, "MAX_WIDTH", 64)
    with pytest.raises(ValueError, match=r"above what a model with 1 hidden layers of width up to 64 takes"):
        timing.match_time(1.0, fake_time, depth=1, in_features=2, out_features=1)
    steps = {1: 1e-3, 2: 1e-3, 3: 3e-3, 4: 3e-3}  # a jump no width lands in
    with pytest.raises(ValueError, match=r"time jumps between widths 2 and 3"):
        timing.match_time(2e-3, lambda w: steps[min(w[1], 4)], depth=1, in_features=2, out_features=1,
                          tol=0.1)


def test_step_seconds_times_real_steps() -> None:
    data = make_dataset(TaskConfig(n_train=32, n_test=8))
    model = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    seconds = timing.step_seconds(model, data, TrainConfig(lr=1e-3), steps=5, warmup=1)
    assert 0 < seconds < 1.0


def test_time_matches_are_cached_per_problem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KANLAB_CACHE", str(tmp_path))
    measured: list[tuple[int, ...]] = []

    def fake_step_seconds(model: torch.nn.Module, data: Any, cfg: TrainConfig) -> float:
        widths = (model.layers[0].in_features, *(layer.out_features for layer in model.layers))
        measured.append(widths)
        return fake_time(widths)

    monkeypatch.setattr(timing, "step_seconds", fake_step_seconds)
    study = {**STUDY, "budget": 4e-3, "match": "time", "models": STUDY["models"][1:]}
    first = expand(parse_study(study))
    n = len(measured)
    assert n > 0 and first[0].match is not None and first[0].match["by"] == "time"
    assert abs(first[0].match["value"] - 4e-3) <= 0.1 * 4e-3
    again = expand(parse_study(study))  # a rerun (to resume): no new measurement, the same run ids
    assert len(measured) == n and [e.run_id for e in again] == [e.run_id for e in first]
    cache = json.loads((tmp_path / "time-match.json").read_text())
    assert len(cache) == 1
    expand(parse_study({**study, "budget": 8e-3}))
    assert len(measured) > n and len(json.loads((tmp_path / "time-match.json").read_text())) == 2


def test_sweep_axes_over_match_and_time_budgets() -> None:
    sweep = parse_sweep({**STUDY, "budget": 2000, "axes": {"match": ["params", "flops"]}})
    by = {e.match["by"] for e in sweep.experiments if e.match is not None}
    assert by == {"params", "flops"} and len(sweep.experiments) == 4
    with pytest.raises(ValueError, match="whole numbers"):
        parse_sweep({**STUDY, "axes": {"budget": [1.5, 2.5]}})
    assert check_axis({**STUDY, "match": "time"}, "budget", [0.001, 0.002]) == (0.001, 0.002)  # seconds


@pytest.mark.slow  # measures real training steps (a few seconds)
def test_a_study_matched_by_time_lands_within_its_tolerance(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.setenv("KANLAB_CACHE", str(tmp_path))
    study = {**STUDY, "budget": 0.02, "match": "time", "match_tol": 0.25, "models": STUDY["models"][1:],
             "tasks": [{"kind": "function", "name": "zigzag", "n_train": 2048, "n_test": 64}]}
    runs = expand(parse_study(study))
    for exp in runs:
        assert exp.match is not None and abs(exp.match["value"] - 0.02) <= 0.25 * 0.02, exp.match
    cached = json.loads((tmp_path / "time-match.json").read_text())
    assert sorted(entry["seconds"] for entry in cached.values()) == sorted(e.match["value"] for e in runs
                                                                           if e.match is not None)
    assert [e.spec for e in expand(parse_study(study))] == [e.spec for e in runs]  # no second measurement


def test_budgets_are_shown_in_the_unit_they_were_matched_by() -> None:
    from kanlab.report.sweep import fmt_budget

    assert fmt_budget({"budget": 2000, "match": "params"}) == "2,000"
    assert fmt_budget({"budget": 2000, "match": "flops"}) == "2,000 FLOPs"
    assert fmt_budget({"budget": 0.0025, "match": "time"}) == "2.5 ms / step"


def test_only_table_tasks_carry_the_table_keys_into_their_run_ids() -> None:
    # Function and image runs keep the ids they had before target_kind and standardize existed.
    function = expand(parse_study({**STUDY, "budget": 300}))[0]
    assert not {"target_kind", "standardize"} & set(function.to_dict()["task"])
    table = ExperimentConfig.from_dict({**function.to_dict(), "task": {"kind": "dataset", "name": "iris"}})
    assert {"target_kind", "standardize"} <= set(table.to_dict()["task"])
    other = ExperimentConfig.from_dict({**table.to_dict(), "task": {**table.to_dict()["task"],
                                                                    "standardize": "none"}})
    assert other.run_id != table.run_id


def test_a_task_budget_overrides_the_studys_but_not_a_models_own() -> None:
    tasks = [{"kind": "function", "name": "zigzag", "n_train": 32, "n_test": 32},
             {"kind": "function", "name": "exp_sin", "n_train": 32, "n_test": 32, "budget": 1000}]
    models = [{"label": "KAN", "family": "kan", "budget": 500}, {"label": "MLP", "family": "mlp"}]
    runs = expand(parse_study({**STUDY, "budget": 300, "tasks": tasks, "models": models}))
    got = {(e.task.name, e.label): (e.match or {})["budget"] for e in runs}
    assert got == {("zigzag", "KAN"): 500, ("zigzag", "MLP"): 300, ("exp_sin", "KAN"): 500,
                   ("exp_sin", "MLP"): 1000}
    for e in runs:
        budget = got[(e.task.name, e.label)]
        assert abs(count_params(parse_spec(e.spec)) - budget) <= 0.02 * budget
    missing = r"models.1 \(mlp\) has no spec and no budget: set one for the model, the study or every task"
    with pytest.raises(ValueError, match=missing):
        parse_study({**STUDY, "tasks": tasks, "models": models})
    with pytest.raises(ValueError, match=r"models.1 \(mlp\): tasks.1.budget must be a whole number >= 1"):
        parse_study({**STUDY, "budget": 300, "models": models,
                     "tasks": [tasks[0], {**tasks[1], "budget": 12.5}]})
    sweep = parse_sweep({**STUDY, "budget": 300, "tasks": tasks, "models": models,
                         "axes": {"tasks.1.budget": [600, 1000]}})
    assert {c["budget"] for c in sweep.coords.values()} == {300, 500, 600, 1000}
