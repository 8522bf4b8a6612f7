"""`kanlab tune`: search spaces, bad input, seeded proposals, resume, --retry-failed, the verdict's seeds.

Most tests stand a deterministic function of the config in for training (fake_trial), so the
search machinery (Optuna's sampler, the journal, rounds, the database) runs for real in a
fraction of a second; the slow tests train for real, on a local pool and on Dask.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import tomllib

import kanlab.study.experiments
from kanlab.cli import main
from kanlab.models.budget import match_widths
from kanlab.runs.executors import Executor, Job, Outcome, SerialExecutor, pack
from kanlab.runs.experiment import build_model, execute
from kanlab.runs.store import ResultsStore
from kanlab.runs.tune import Search, run_tune, verdict_experiments
from kanlab.study.config import ExperimentConfig, build_checked, parse_study, read_study
from kanlab.study.search_space import build_space
from kanlab.study.tune_config import Tune, load_tune, parse_tune
from kanlab.training.config import TrainConfig
from kanlab.training.trial_pruning import PruneHook
from test_executors import dask_address as dask_cluster  # noqa: F401 - a fixture: a local Dask cluster
from test_trial_pruning import reference

TUNE = """
name = "t"
seeds = [1, 2]
budget = 120
depth = 1
[train]
steps = 20
eval_every = 5
[[tasks]]
name = "zigzag"
n_train = 32
n_test = 32
[[models]]
label = "MLP"
family = "mlp"
[[models]]
label = "TQ"
family = "tanhquad"
[tune]
per_family = "trials:6"
seed = 0
startup_trials = 2
trials_per_round = 2
[tune.pruner]
kind = "median"
n_startup_trials = 1
n_warmup_steps = 5
[search.mlp]
depth = { low = 1, high = 2 }
[search.tanhquad]
depth = 1
"""


def tune_of(text: str = TUNE, **tune_keys: Any) -> Tune:
    raw = tomllib.loads(text)
    raw["tune"].update(tune_keys)
    return parse_tune(raw)


def fake_loss(exp: ExperimentConfig, best_lr: float = 0.01) -> float:
    """A made-up final loss with its minimum at lr = best_lr that also depends on the model and seed."""
    return (math.log10(exp.train.lr / best_lr)) ** 2 + 0.01 * len(exp.spec) + 0.001 * exp.seed + 0.01


def fake_trial(job: Job) -> bytes:
    """Stands in for training: a run folder whose curves are functions of the config (no torch).

    The validation loss is lowest at lr = 0.01, the test loss at lr = 0.03: a tuner that ranked on
    the test set would pick other trials. A run without a validation set (the verdict's) has none.
    """
    exp = ExperimentConfig.from_dict(job.config)
    final, test = fake_loss(exp), fake_loss(exp, best_lr=0.03)
    hook = PruneHook(exp.trial) if exp.trial and exp.trial["pruner"]["kind"] != "none" else None
    records, status = [], "finished"
    for step in range(0, exp.train.steps + 1, exp.train.eval_every):
        slow = 1 + 10 / (1 + step)
        records.append({"step": step, "test_loss": test * slow, "train_loss": final})
        if exp.task.val_fraction:
            records[-1]["val_loss"] = final * slow
        if hook is not None and step < exp.train.steps and hook(records[-1]):
            status = "pruned"
            break
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "config.json").write_text(json.dumps({**job.config, "run_id": job.run_id}))
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (folder / "final.json").write_text(json.dumps({
            "status": status, "test_loss": records[-1]["test_loss"], "val_loss": records[-1].get("val_loss"),
            "steps": records[-1]["step"],
            "wall_time": 0.01, "pruner_attrs": hook.system_attrs() if hook else {}}))
        return pack(folder)


class Recording(SerialExecutor):
    """The serial executor over fake_trial, remembering which runs it executed (and failing on cue)."""

    def __init__(self, fail: set[int] | None = None, stop_after: int | None = None) -> None:
        super().__init__(target=self.target)
        self.ran: list[str] = []
        self.fail, self.stop_after = fail or set(), stop_after

    def target(self, job: Job) -> bytes:
        self.ran.append(job.run_id)
        trial = job.config.get("trial")
        if trial and job.config["label"] == "MLP" and trial["number"] in self.fail:
            raise RuntimeError("disk on fire")
        return fake_trial(job)

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        for outcome in super().run(jobs):
            if self.stop_after is not None and len(self.ran) > self.stop_after:
                raise KeyboardInterrupt  # killed with this outcome in flight
            yield outcome


def proposals(search: Search) -> dict[str, list[tuple[int, dict[str, Any], str]]]:
    return {s.spec.label: [(t.number, t.params, t.state.name) for t in s.study.get_trials()]
            for s in search.studies}


def searched(tune: Tune, root: Path, executor: Executor, **kw: Any) -> Search:
    search = Search(tune, root, root / "kanlab.db")
    search.run(executor, **kw)
    return search


def rows(root: Path, experiment: str) -> list[dict[str, Any]]:
    with ResultsStore(root / "kanlab.db") as store:
        return store.runs(experiment)


def stamps(root: Path, experiment: str) -> dict[str, int]:
    return {r["run_id"]: (Path(r["run_dir"]) / "final.json").stat().st_mtime_ns
            for r in rows(root, experiment)}


# -- search spaces ----------------------------------------------------------------------------------

def test_search_space_defaults_tables_and_decoding() -> None:
    tables = {"kan": {"grid_size": {"low": 3, "high": 9, "step": 2}, "grid_range": [[-1, 1], [-2, 2]]},
              "my KAN": {"order": 3, "lr": {"low": 0.001, "high": 0.1, "log": True}}}
    space = build_space("kan", "my KAN", tables, {"schedule"}, spec_given=False)
    dims = {d.key: d for d in space.dims}
    # Defaults minus what the model fixes (schedule), the family's table, then the label's.
    assert sorted(dims) == ["depth", "grid_range", "grid_size", "lr"] and space.fixed == {"order": 3}
    assert (dims["grid_size"].kind, dims["grid_size"].corners()) == ("int", [3, 5, 7, 9])
    assert (dims["lr"].kind, dims["lr"].log, dims["lr"].corners()) == ("float", True, [0.001, 0.1])
    assert dims["depth"].corners() == [1, 2, 3]
    dist = space.distributions()["grid_range"]
    assert dist.choices == ("[-1, 1]", "[-2, 2]")  # arrays travel as JSON text
    assert space.decode({"grid_range": "[-2, 2]", "lr": 0.5}) == {"order": 3, "grid_range": [-2, 2],
                                                                  "lr": 0.5}
    corners = space.corner_points({"grid_size", "depth", "order"})
    assert len(corners) == 12 and all(c["order"] == 3 for c in corners)
    spec_space = build_space("mlp", "m", {}, set(), spec_given=True)
    assert sorted(d.key for d in spec_space.dims) == ["lr", "schedule"]  # a spec fixes depth


def without(raw: dict[str, Any], *keys: str) -> dict[str, Any]:
    node = raw
    for key in keys[:-1]:
        node = node[key]
    del node[keys[-1]]
    return raw


BAD = [  # (change to the raw tune dict, the error's text)
    (lambda r: r["search"]["mlp"].update(lr=[]), "search.mlp.lr is an empty choice"),
    (lambda r: r["search"]["mlp"].update(lr={"low": 0.1, "high": 0.01}),
     "search.mlp.lr is inverted: low 0.1 > high 0.01; swap them"),
    (lambda r: r["search"]["mlp"].update(lr={"low": 0.1, "high": 0.1}),
     "search.mlp.lr is empty: low = high = 0.1"),
    (lambda r: r["search"]["mlp"].update(lr={"low": 0.0, "high": 0.1, "log": True}),
     "a log range needs log = true and low > 0"),
    (lambda r: r["search"]["mlp"].update(width=[4, 8]),
     "search.mlp.width: unknown search key 'width' for family 'mlp'; allowed: depth, optimizer, lr"),
    (lambda r: r["search"]["mlp"].update(steps=[10, 20]),
     "search.mlp.steps: 'steps' is not searchable: every trial of a family trains for the same number"),
    (lambda r: r["search"]["mlp"].update(schedule={"low": 1, "high": 2}),
     "schedule takes one of a set of values"),
    (lambda r: r["search"]["mlp"].update(depth={"low": 1.5, "high": 3}), "depth takes integers"),
    (lambda r: r["search"].update(kan={"lr": [0.1]}),
     "[search.kan] names no family or label of the models; families: mlp, tanhquad; labels: MLP, TQ"),
    (lambda r: r["search"]["mlp"].update(lr=[-0.1, 0.1]),
     "model 'MLP' on task 'zigzag' at lr=-0.1, schedule='constant': train: TrainConfig.lr=-0.1 is invalid"),
    # A budget no model can meet, at one corner of the space: TanhQuadratic at depth 40 needs more.
    (lambda r: r["search"]["tanhquad"].update(depth=[1, 40]),
     "model 'TQ' on task 'zigzag' at depth=40: budget 120 is below the smallest tanhquad model"),
    (lambda r: r.update(budget=3), "model 'MLP' on task 'zigzag' at depth=1: budget 3 is below the smallest"),
    (lambda r: r["tasks"][0].update(budget=3),  # a task's own budget is the one its models are checked at
     "model 'MLP' on task 'zigzag' at depth=1: budget 3 is below the smallest mlp model with 1 hidden layers "
     "(4 parameters"),
    (lambda r: r.update(match="flops", budget=6),  # by FLOPs: [1, 3, 1] does 6, [1, h, k, 1] h + hk + k
     "model 'MLP' on task 'zigzag' at depth=2: no mlp model with 2 hidden layers has 6 multiply-adds per "
     "sample within 2.0%; the closest has 5"),
    (lambda r: r["tune"].update(per_family="trials:0"),
     "tune.per_family = 'trials:0' is a budget no model can meet"),
    (lambda r: r["tune"].update(per_family="minutes:5"), "tune.per_family = 'minutes:5': give 'trials:N'"),
    (lambda r: without(r, "tune", "per_family"), "[tune] needs per_family = 'trials:N' or 'seconds:S'"),
    (lambda r: r["tune"].update(search_seeds=[1]),
     "seeds and tune.search_seeds share [1]: the verdict must train on seeds the search never used"),
    (lambda r: r["tune"].update(budget=3), "unknown key(s) budget in [tune]; allowed: per_family"),
    (lambda r: r["tune"]["pruner"].update(patience=3),
     "unknown key(s) patience in tune.pruner (median); allowed: kind, n_startup_trials"),
    (lambda r: r["tune"]["pruner"].update(kind="hyperband"),
     "tune.pruner.kind = 'hyperband'; allowed: median"),
    (lambda r: r["tune"].update(metric="accuracy"), "tune.metric = 'accuracy'; allowed: val_loss"),
    (lambda r: r["tune"].update(metric="val_accuracy"),
     "tune.metric = 'val_accuracy' is for class targets, and task 'zigzag' has value targets; use val_loss"),
    (lambda r: r["tune"].update(validation=0),
     "tune.metric = 'val_loss' ranks trials on a validation set, and task 'zigzag' has none"),
    (lambda r: r["tune"].update(validation=1.0), "tune.validation must be a number in [0, 1)"),
    (lambda r: r.update(symbolic={"sparsity": 0.01}), "tuning trains each model plainly: drop [symbolic]"),
    (lambda r: without(r, "tune"), "a tune file needs a [tune] table with per_family"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=range(len(BAD)))
def test_bad_tune_files_are_refused_with_the_key_and_the_fix(change: Any, message: str) -> None:
    raw = tomllib.loads(TUNE)
    change(raw)
    with pytest.raises(ValueError) as err:
        parse_tune(raw)
    assert message in str(err.value), str(err.value)


def test_a_bad_tune_file_fails_before_any_trial_starts(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path, root = tmp_path / "bad.toml", tmp_path / "runs"
    path.write_text(TUNE.replace("depth = { low = 1, high = 2 }", "depth = { low = 3, high = 2 }"))
    assert main(["tune", str(path), "--root", str(root), "--executor", "serial"]) == 2
    err = capsys.readouterr().err
    assert err == "kanlab: error: search.mlp.depth is inverted: low 3 > high 2; swap them\n"
    assert not root.exists()  # nothing written: no database, no journal, no run


def fake_step_seconds(model: Any, data: Any, cfg: Any) -> float:
    """A measured step time stood in for: 1 ms plus 1 us per parameter of the model."""
    return 1e-3 + 1e-6 * sum(p.numel() for p in model.parameters())


def test_trials_are_sized_by_the_models_match_and_each_corner_is_checked_that_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kanlab.models.spec import parse_spec
    from kanlab.models.stack import count_flops, count_params
    from kanlab.training import timing

    raw = tomllib.loads(TUNE)
    raw.update(match="flops", budget=240)
    tune = parse_tune(raw)
    trial = {"study": tune.studies[0].name, "number": 0, "params": {}, "metric": "val_loss",
             "direction": "minimize", "pruner": {"kind": "none"}}
    for depth in (1, 2):
        (exp,) = tune.resolve(tune.studies[0], {"depth": depth, "lr": 0.01}, [0], experiment="x", trial=trial)
        assert exp.match is not None and exp.match["by"] == "flops" and exp.match["depth"] == depth
        flops = count_flops(parse_spec(exp.spec))
        assert abs(flops - 240) <= 0.02 * 240 and count_params(parse_spec(exp.spec)) != flops
    # By time: every corner measured up front (on the trial's data), lr left at the study's value.
    monkeypatch.setenv("KANLAB_CACHE", str(tmp_path))
    measured: list[tuple[Any, ...]] = []

    def step(model: Any, data: Any, cfg: Any) -> float:
        measured.append((len(data.x_train), cfg.lr))
        return fake_step_seconds(model, data, cfg)

    monkeypatch.setattr(timing, "step_seconds", step)
    raw.update(match="time", budget=4e-3)
    tune = parse_tune(raw)
    cache = json.loads((tmp_path / "time-match.json").read_text())
    problems = sorted((p["problem"]["family"], p["problem"]["depth"]) for p in cache.values())
    assert problems == [("mlp", 1), ("mlp", 2), ("tanhquad", 1)]  # depth's corners, lr not among them
    assert {m for m in measured} == {(32, 0.01)}  # 32 training points (the validation points are extra)
    (exp,) = tune.resolve(tune.studies[0], {"depth": 2, "lr": 0.05}, [0], experiment="x", trial=trial)
    assert exp.match is not None and exp.match["by"] == "time"
    assert abs(fake_step_seconds(build_model(exp), None, None) - 4e-3) <= 0.1 * 4e-3
    raw.update(budget=5e-4)
    with pytest.raises(ValueError, match=r"model 'MLP' on task 'zigzag' at depth=1: time budget 0.0005 s per "
                                         r"step is below the fastest mlp"):
        parse_tune(raw)


def test_the_shipped_preset_and_the_readmes_tune_file_are_valid() -> None:
    preset = load_tune("tune-quick")
    assert len(preset.studies) == 6 and preset.budget.kind == "trials" and not set(preset.seeds) & {0}
    kan = next(s for s in preset.studies if s.label == "bare B-spline KAN")
    assert [d.key for d in kan.space.dims] == ["depth", "grid_size", "lr", "order", "schedule"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "[tune]" in b)
    raw = {k: v for k, v in read_study("tune-quick").items() if k not in ("tune", "search")}
    tune = parse_tune({**raw, **tomllib.loads(snippet)})
    mlp = next(s for s in tune.studies if s.label == "MLP tanh")
    assert str(tune.budget) == "trials:40" and "batch_size" in {d.key for d in mlp.space.dims}


def expansion(tune: Tune) -> list[str]:
    """What a tune preset runs, as the README's fair-quick paragraph and table state it."""
    study = parse_study(tune.raw)
    labels = list(dict.fromkeys(s.label for s in tune.studies))
    steps = build_checked(TrainConfig, study.train, "train").steps
    lines = [f"{len(study.tasks)} tasks x {len(labels)} models ({', '.join(labels)}) = {len(tune.studies)} "
             f"searches of `{tune.budget}` each, ranked on `{tune.metric}` (`validation = "
             f"{tune.validation}`), {steps} steps per run; each best retrained on seeds {list(tune.seeds)}.",
             "| task | kind | parameters per model |", "|---|---|---:|"]
    for n, task in enumerate(study.tasks):
        budget = study.budget_of(study.models[0], n)
        lines.append(f"| `{tune.studies[n * len(labels)].task}` | {task.kind} | {budget:,} |")
    return lines


def test_fair_quick_parses_every_corner_is_valid_and_it_runs_what_the_readme_says() -> None:
    quick = load_tune("fair-quick")  # every corner of every space meets its task's budget
    assert [s.task for s in quick.studies[::6]] == ["zigzag", "exp_sin", "camera", "digits", "diabetes"]
    assert [s.family for s in quick.studies[:6]] == ["kan", "kan", "tanhquad", "chebyshev", "mlp", "mlp"]
    assert str(quick.budget) == "trials:6" and quick.metric == "val_loss" and not set(quick.seeds) & {0}
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    for line in expansion(quick):  # the README's paragraph (wrapped: compared word by word) and table
        assert " ".join(line.split()) in readme, line


def test_the_fair_presets_parse_and_every_corner_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, by in (("fair", "params"), ("fair-flops", "flops")):
        tune = load_tune(name)  # every corner of every space meets its budget, by parameters or FLOPs
        assert len(tune.studies) == 30 and tune.budget.amount >= 40 and len(tune.seeds) >= 5
        assert {m.match for m in parse_study(tune.raw).models} == {by}
    # fair-time's corners are timed (the ends of each range); here a made-up time per step stands
    # in for the measurement, 1 us per parameter: what is checked is the file, not this machine.
    asked: list[tuple[str, int, float]] = []

    def timed(family: str, seconds: float, *, data: Any, depth: int, options: Any, tol: float,
              **_: Any) -> tuple[tuple[int, ...], float]:
        asked.append((family, depth, seconds))
        widths = match_widths(family, seconds * 1e6, depth=depth, tol=tol, in_features=data.in_dim,
                              out_features=data.out_dim, **options)
        return widths, seconds

    monkeypatch.setattr(kanlab.study.experiments, "cached_match_time", timed)
    tune = load_tune("fair-time")
    assert len(tune.studies) == 30 and {m.match for m in parse_study(tune.raw).models} == {"time"}
    kan = [a for a in asked if a[0] == "kan"]
    assert len(kan) == 2 * 5 * 2 * 2 * 2  # two KANs x 5 tasks x depth, grid size and order at their ends


def test_a_study_command_points_a_tune_file_to_kanlab_tune(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "t.toml").write_text(TUNE)
    assert main(["run", str(tmp_path / "t.toml"), "--root", str(tmp_path / "runs")]) == 2
    assert "so it is a tune file: run it with `kanlab tune`" in capsys.readouterr().err


def test_a_trial_run_is_pruned_in_its_worker_against_its_reference(tmp_path: Path) -> None:
    tune = tune_of()
    study = tune.studies[0]
    good = reference([{0: 0.01, 5: 0.001, 10: 0.001, 20: 0.001}, {0: 0.01, 5: 0.002, 10: 0.001, 20: 0.001}])
    trial = {"study": study.name, "number": 2, "params": {}, "metric": "val_loss", "direction": "minimize",
             "pruner": dict(study.pruner), "reference": good}
    (exp,) = tune.resolve(study, {"lr": 0.01}, [0], experiment="x", trial=trial)
    assert exp.task.val_fraction == 0.2  # a trial holds the tune's validation share out of training
    folder = execute(exp, tmp_path)
    final = json.loads((folder / "final.json").read_text())
    steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert final["status"] == "pruned" and final["steps"] == 5 and steps == [0, 5]  # warm-up: 5 steps
    assert final["message"].startswith("pruned at step 5 by the median pruner: val_loss")
    assert final["pruner_attrs"] == {}
    assert json.loads((folder / "config.json").read_text())["trial"] == trial


# -- the search -----------------------------------------------------------------------------------

def test_a_seeded_tune_proposes_the_same_trials_twice(tmp_path: Path) -> None:
    raw = tomllib.loads(TUNE)
    raw["models"], raw["tune"]["per_family"] = raw["models"][:1], "trials:4"  # two random, two TPE
    del raw["search"]["tanhquad"]
    first = proposals(searched(parse_tune(raw), tmp_path / "a", Recording()))
    again = proposals(searched(parse_tune(raw), tmp_path / "b", Recording()))
    assert first == again and len(first["MLP"]) == 4
    assert len({json.dumps(p, sort_keys=True) for _, p, _ in first["MLP"]}) == 4


def test_trials_are_ranked_on_the_validation_set_and_the_verdict_on_the_test_set(tmp_path: Path) -> None:
    # fake_trial's validation loss is lowest at lr = 0.01, its test loss at lr = 0.03.
    raw = tomllib.loads(TUNE)
    raw["models"], raw["tune"]["per_family"] = raw["models"][:1], "trials:6"
    raw["search"] = {"mlp": {"lr": [0.01, 0.03], "depth": 1, "schedule": "constant"}}
    tune = parse_tune(raw)
    assert (tune.metric, tune.validation) == ("val_loss", 0.2)
    search = searched(tune, tmp_path, Recording())
    trials = [r for r in rows(tmp_path, "t-search") if r["status"] == "finished"]
    assert {json.loads(r["config_json"])["task"]["val_fraction"] for r in rows(tmp_path, "t-search")} == {0.2}
    by_lr = {json.loads(r["config_json"])["train"]["lr"] for r in trials}
    assert by_lr == {0.01, 0.03}  # both were tried
    best = search.best(search.studies[0])
    assert best is not None and best.params["lr"] == 0.01
    assert best.value == min(r["val_loss"] for r in trials) > 0
    assert min(trials, key=lambda r: r["test_loss"])["val_loss"] > best.value  # the test set would differ
    verdict, _ = verdict_experiments(tune, search)
    (runs,) = verdict.values()
    trial_run = search.experiment(search.studies[0], best)
    assert [e.seed for e in runs] == [1, 2] and all(e.trial is None for e in runs)
    for e in runs:  # the best trial's model and training on fresh seeds, the validation rows given back
        assert (e.spec, e.train.lr, e.task.val_fraction) == (trial_run.spec, 0.01, 0.0)
        assert e.task == replace(trial_run.task, val_fraction=0.0)
        assert "val_fraction" not in e.to_dict()["task"]


def test_a_budget_in_seconds_asks_rounds_until_spent_and_stops_on_a_round_that_only_fails(
        tmp_path: Path) -> None:
    raw = tomllib.loads(TUNE)
    raw["models"], raw["tune"]["per_family"] = raw["models"][:1], "seconds:0.025"  # fake trials take 0.01 s
    del raw["search"]["tanhquad"]
    tune = parse_tune(raw)
    assert proposals(searched(tune, tmp_path / "a", Recording()))["MLP"][3][0] == 3
    assert len(rows(tmp_path / "a", "t-search")) == 4  # 0.02 s after one round, 0.04 s after two
    failing = Recording(fail={0, 1, 2, 3})
    searched(tune, tmp_path / "b", failing)  # failures take no time: it must not ask forever
    assert len(failing.ran) == 2 and {r["status"] for r in rows(tmp_path / "b", "t-search")} == {"failed"}


@pytest.mark.slow  # three searches of 12 trials each (a few seconds on 2 cores)
def test_another_seed_proposes_others_and_each_trial_is_one_row_with_optunas_state(tmp_path: Path) -> None:
    first = proposals(searched(tune_of(), tmp_path / "a", Recording()))
    other = proposals(searched(tune_of(seed=1), tmp_path / "c", Recording()))
    assert [len(v) for v in first.values()] == [6, 6] and first["MLP"] != other["MLP"]
    states = {state for trials in first.values() for _, _, state in trials}
    assert states == {"COMPLETE", "PRUNED"}, states  # the median pruner stopped some trials early
    for label, trials in first.items():  # one row per trial, its status Optuna's state
        recorded = {json.loads(r["config_json"])["trial"]["number"]: r["status"]
                    for r in rows(tmp_path / "a", "t-search") if r["label"] == label}
        assert recorded == {n: {"COMPLETE": "finished", "PRUNED": "pruned"}[s] for n, _, s in trials}


@pytest.mark.slow  # four searches of 12 trials (seconds)
def test_an_interrupted_tune_resumes_without_retraining_and_proposes_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tune = tune_of()
    whole = proposals(searched(tune, tmp_path / "whole", Recording()))
    root = tmp_path / "killed"
    killed = Recording(stop_after=5)  # the 6th outcome never lands: killed mid-round
    with pytest.raises(KeyboardInterrupt):
        searched(tune, root, killed)
    # Killed again between recording a run and telling Optuna about it.
    told = Search._tell
    calls = {"n": 0}

    def tell_then_die(self: Search, *args: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return told(self, *args)

    monkeypatch.setattr(Search, "_tell", tell_then_die)
    second = Recording()
    with pytest.raises(KeyboardInterrupt):
        searched(tune, root, second)
    monkeypatch.setattr(Search, "_tell", told)
    before = stamps(root, "t-search")
    last = Recording()
    assert proposals(searched(tune, root, last)) == whole
    recorded = rows(root, "t-search")
    assert len(recorded) == 12 == len({r["run_id"] for r in recorded})  # one row per trial
    assert not set(last.ran) & set(before) and not set(second.ran) & set(killed.ran[:5])
    assert {k: v for k, v in stamps(root, "t-search").items() if k in before} == before  # none retrained


@pytest.mark.slow  # three searches of 12 trials (seconds)
def test_retry_failed_reruns_the_failed_trial_in_place(tmp_path: Path) -> None:
    tune = tune_of()
    search = searched(tune, tmp_path, Recording(fail={1}))
    mlp = next(s for s in search.studies if s.spec.label == "MLP")
    assert mlp.study.trials[1].state.name == "RUNNING"  # not told: Optuna has no way back from FAIL
    failed = [r for r in rows(tmp_path, "t-search") if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["message"] == "RuntimeError: disk on fire"
    before = stamps(tmp_path, "t-search")
    again = Recording()
    searched(tune, tmp_path, again)  # without --retry-failed: nothing to do
    assert again.ran == [] and stamps(tmp_path, "t-search") == before
    retry = Recording()
    search = searched(tune, tmp_path, retry, retry_failed=True)
    assert retry.ran == [failed[0]["run_id"]]  # the same run, and nothing else
    recorded = rows(tmp_path, "t-search")
    assert len(recorded) == 12 and "failed" not in {r["status"] for r in recorded}
    assert next(s for s in search.studies if s.spec.label == "MLP").study.trials[1].state.name in ("COMPLETE",
                                                                                                   "PRUNED")


@pytest.mark.slow  # a search, its verdict and the report (seconds)
def test_the_verdict_retrains_each_best_on_seeds_the_search_never_used(tmp_path: Path) -> None:
    tune = tune_of()
    _, manifest = run_tune(tune, tmp_path, tmp_path / "kanlab.db", executor=Recording())
    search_rows, verdict = rows(tmp_path, "t-search"), rows(tmp_path, "t")
    assert {r["seed"] for r in search_rows} == {0} and {r["seed"] for r in verdict} == {1, 2}
    for label in ("MLP", "TQ"):
        trials = [r for r in search_rows if r["label"] == label and r["status"] == "finished"]
        best = min(trials, key=lambda r: r["val_loss"])
        runs = [r for r in verdict if r["label"] == label]
        assert len(runs) == 2
        for r in runs:  # the best trial's configuration, on a fresh seed
            cfg, best_cfg = json.loads(r["config_json"]), json.loads(best["config_json"])
            assert (cfg["spec"], cfg["train"]["lr"]) == (best_cfg["spec"], best_cfg["train"]["lr"])
            assert cfg["tune"]["best_trial"] == best_cfg["trial"]["number"] and "trial" not in cfg
    # The guard in code, for a tune that slipped past parse_tune's check.
    search = Search(tune, tmp_path, tmp_path / "kanlab.db")
    with pytest.raises(RuntimeError, match=r"verdict runs of MLP would reuse search seeds \[1\]"):
        verdict_experiments(replace(tune, search_seeds=(1,)), search)
    # The report: per model its trials and best value (the minimum over its finished trials).
    assert main(["report", "t", "--root", str(tmp_path)]) == 0
    html = (tmp_path / "t" / "report.html").read_text()
    for label in ("MLP", "TQ"):
        best = min(r["val_loss"] for r in search_rows if r["label"] == label and r["status"] == "finished")
        pruned = sum(r["status"] == "pruned" for r in search_rows if r["label"] == label)
        row = re.search(rf"<tr><td class=\"text\">{label}</td>.*?</tr>", html).group(0)
        cells = re.findall(r">([^<]*)</td>", row)
        assert cells[2:5] == ["6 (trials:6)", str(6 - pruned), str(pruned)] and f"{best:.2e}" in cells
    assert "Paired comparison with the mlp" in html and json.loads(manifest.read_text())["seeds"] == [1, 2]


# -- end to end: real training, worker processes, a killed driver, Dask ----------------------------

REAL = TUNE.replace("steps = 20\n", "steps = 60\n").replace("budget = 120", "budget = 200").replace(
    'per_family = "trials:6"', 'per_family = "trials:6"\nsearch_seeds = [0]') + """
[search.MLP]
lr = { low = 1e-5, high = 0.1, log = true }
"""


def cli(root: Path, spec: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "kanlab.cli", "tune", str(spec), "--root", str(root), *options]


@pytest.mark.slow  # real training and two worker processes, killed and rerun (tens of seconds)
def test_sigkill_mid_tune_then_rerun_completes_with_one_row_per_trial_and_none_retrained(
        tmp_path: Path) -> None:
    spec, root = tmp_path / "real.toml", tmp_path / "runs"
    spec.write_text(REAL.replace("steps = 60\n", "steps = 200\n"))
    command = cli(root, spec, "--workers", "2", "--no-report")
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        while len([p for p in (root / "t-search").glob("*") if not p.name.startswith(".")]
                  if (root / "t-search").is_dir() else []) < 3:
            assert proc.poll() is None, f"the tune ended before it was killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no trial finished within 180 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its pool workers, mid-search
        proc.communicate(timeout=60)
    before = stamps(root, "t-search")
    assert 0 < len(before) < 12
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    recorded = rows(root, "t-search")
    numbers = sorted((r["label"], json.loads(r["config_json"])["trial"]["number"]) for r in recorded)
    assert numbers == sorted((label, n) for label in ("MLP", "TQ") for n in range(6))  # one row per trial
    assert {k: v for k, v in stamps(root, "t-search").items() if k in before} == before  # none retrained
    search = Search(parse_tune(tomllib.loads(spec.read_text())), root, root / "kanlab.db")
    assert all(t.state.name in ("COMPLETE", "PRUNED") for s in search.studies for t in s.study.trials)
    assert {r["seed"] for r in rows(root, "t")} == {1, 2} and not list((root / "t-search").glob(".tmp-*"))


@pytest.mark.slow  # real training end to end through the command line, twice (seconds)
def test_a_real_tune_prunes_trials_mid_run_reports_and_proposes_the_same_again(tmp_path: Path) -> None:
    spec, root = tmp_path / "real.toml", tmp_path / "runs"
    spec.write_text(REAL)
    for where in (root, tmp_path / "again"):
        assert main(["tune", str(spec), "--root", str(where), "--executor", "serial", "--no-report"]) == 0
    tune = parse_tune(tomllib.loads(REAL))
    assert proposals(Search(tune, root, root / "kanlab.db")) == proposals(
        Search(tune, tmp_path / "again", tmp_path / "again" / "kanlab.db"))
    assert main(["report", "t", "--root", str(root)]) == 0
    recorded = rows(root, "t-search")
    pruned = [r for r in recorded if r["status"] == "pruned"]
    assert pruned and all(0 < r["steps"] < 60 for r in pruned)
    with ResultsStore(root / "kanlab.db") as store:
        for r in pruned:  # the curve stops where the pruner stopped the run
            assert [c["step"] for c in store.curves(r["run_id"])][-1] == r["steps"]
    assert all(r["steps"] == 60 for r in recorded if r["status"] == "finished")
    html = (root / "t" / "report.html").read_text()
    assert "t: the verdict" not in html and "zigzag: the verdict (best configurations, fresh seeds)" in html


@pytest.mark.slow  # worker processes and a Dask cluster (tens of seconds)
def test_pruning_in_out_of_process_workers_decides_as_in_this_process(
        tmp_path: Path, dask_cluster: str) -> None:  # noqa: F811 - the fixture imported above
    from kanlab.runs.clusters import DaskExecutor
    from kanlab.runs.executors import LocalExecutor

    tune = tune_of()
    here = proposals(searched(tune, tmp_path / "serial", Recording()))
    assert {state for trials in here.values() for _, _, state in trials} == {"COMPLETE", "PRUNED"}
    for name, executor in (("pool", LocalExecutor(2, target=fake_trial)),
                           ("dask", DaskExecutor.connect(dask_cluster, target=fake_trial))):
        try:
            assert proposals(searched(tune, tmp_path / name, executor)) == here, name
        finally:
            executor.close()


# -- threads, locks and folders (issue 15's follow-ups) ------------------------------------------------

@pytest.mark.parametrize(("executor", "threads"), [("local", 1), ("serial", None)])
def test_a_tune_plans_its_runs_on_the_threads_its_executor_computes_on(
        executor: str, threads: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_tune expanded every trial with this process's thread count, while a pool's workers
    # compute on one each (kanlab sweep passes WORKER_THREADS): the run ids named the wrong count.
    import kanlab.study.tune_config
    from kanlab.runs.executors import WORKER_THREADS

    seen: list[int | None] = []

    def load(source: str, overrides: Any, *, threads: int | None = None) -> Tune:
        seen.append(threads)
        raise ValueError("stop here")

    monkeypatch.setattr(kanlab.study.tune_config, "load_tune", load)
    assert main(["tune", "tune-quick", "--executor", executor, "--root", str(tmp_path)]) == 2
    assert seen == [threads] and WORKER_THREADS == 1
    tune = tune_of()
    (exp,) = parse_tune(tomllib.loads(TUNE), threads=3).resolve(
        tune.studies[0], {"depth": 1, "lr": 0.01}, [0], experiment="x")
    assert exp.threads == 3
    fingerprints = {tune_of().studies[0].name, parse_tune(tomllib.loads(TUNE), threads=3).studies[0].name}
    assert len(fingerprints) == 2  # trials on another thread count are other runs: another Optuna study


def test_time_matching_measures_on_the_thread_count_the_run_computes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The widths of match = "time" were timed on this process's threads (2 under `kanlab run`), for
    # runs a pool then computed on one thread each.
    import torch

    from kanlab.training import timing

    monkeypatch.setenv("KANLAB_CACHE", str(tmp_path))
    counts: list[int] = []

    def step(model: Any, data: Any, cfg: Any) -> float:
        counts.append(torch.get_num_threads())
        return fake_step_seconds(model, data, cfg)

    monkeypatch.setattr(timing, "step_seconds", step)
    raw = tomllib.loads(TUNE)
    raw.update(match="time", budget=4e-3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        tune = parse_tune(raw, threads=1)  # every corner timed
        assert counts and set(counts) == {1}
        trial = {"study": tune.studies[0].name, "number": 0, "params": {}, "metric": "val_loss",
                 "direction": "minimize", "pruner": {"kind": "none"}}
        counts.clear()
        (exp,) = tune.resolve(tune.studies[0], {"depth": 2, "lr": 0.05}, [0], experiment="x", trial=trial)
        assert exp.threads == 1 and set(counts) <= {1}  # measured at 1 thread, or the cache of that
        study = parse_study({k: v for k, v in raw.items() if k not in ("tune", "search")})
        for threads in (1, 2):  # `kanlab sweep` on a pool: 1; `kanlab run` in this process: its 2
            counts.clear()
            kanlab.study.experiments.expand(study, threads=threads)
            assert counts and set(counts) == {threads} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_tune_holds_the_study_locks_and_writes_only_inside_the_root(tmp_path: Path) -> None:
    # A tune took no lock (two tunes, or a tune and a sweep of its study, raced on its folders) and
    # built a trial's folder and its manifest without checking that they lie inside the root.
    from kanlab.runs.driver import running

    tune, root = tune_of(), tmp_path / "runs"
    for held in (tune.name, tune.search_experiment):
        executor = Recording()
        with running(root, [held]), pytest.raises(ValueError, match=f"study '{held}' is being run into"):
            run_tune(tune, root, root / "kanlab.db", executor=executor)
        assert executor.ran == []  # refused before any trial ran
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.rmtree(root / tune.search_experiment)  # held by the lock above: only its lock file
    (root / tune.search_experiment).symlink_to(outside)
    executor = Recording()
    with pytest.raises(ValueError, match="is not a folder inside the results root"):
        run_tune(tune, root, root / "kanlab.db", executor=executor)
    assert executor.ran == [] and list(outside.iterdir()) == []
