"""Study files: parsing, --set overrides, expansion into runs with stable ids, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanlab import models
from kanlab.study.config import (
    ExperimentConfig,
    apply_overrides,
    load_study,
    parse_study,
    preset_names,
    read_study,
)
from kanlab.study.experiments import expand

MINIMAL = {
    "name": "t",
    "budget": 300,
    "tasks": [{"kind": "function", "name": "zigzag", "n_train": 32, "n_test": 32}],
    "models": [{"family": "kan"}, {"family": "mlp", "options": {"activation": "tanh"}}],
}


def test_overrides_reach_nested_keys_with_typed_values() -> None:
    raw = apply_overrides(MINIMAL, ["train.steps=7", "tasks.0.n_train=64", "seeds=[3, 4]",
                                    "models.1.options.activation=relu", "train.lr=1e-3"])
    assert raw["train"] == {"steps": 7, "lr": 1e-3}
    assert raw["tasks"][0]["n_train"] == 64 and raw["seeds"] == [3, 4]
    assert raw["models"][1]["options"]["activation"] == "relu"
    assert MINIMAL["tasks"][0]["n_train"] == 32  # the input is not mutated


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("train.steps", "key=value"),
        ("tasks.5.n_train=3", "entries 0..0"),
        ("tasks=3", None),
    ],
)
def test_bad_overrides_are_explained(override: str, match: str | None) -> None:
    if match is None:  # replacing the task list by a number is caught by validation
        with pytest.raises((ValueError, TypeError)):
            parse_study(apply_overrides(MINIMAL, [override]))
        return
    with pytest.raises(ValueError, match=match):
        apply_overrides(MINIMAL, [override])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("bogus=1", r"unknown key\(s\) bogus in the study; allowed: name"),
        ("train.stepz=1", r"unknown key\(s\) stepz in train; allowed: .*steps"),
        ("tasks.0.colour=1", r"unknown key\(s\) colour in tasks.0; allowed: kind"),
        ("models.0.widht=3", r"unknown key\(s\) widht in models.0"),
        ("train.optimizer=rmsprop", "rmsprop"),
        ("tasks.0.name=nosuchfunction", "nosuchfunction"),
        ("seeds=[]", "seeds must be a non-empty list"),
        ("axes.budget=[300]", "it is a sweep: run it with `kanlab sweep`"),
    ],
)
def test_invalid_studies_fail_before_any_run(override: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        study = parse_study(apply_overrides(MINIMAL, [override]))
        expand(study)


def test_every_shipped_preset_parses_and_expands_quickly() -> None:
    assert {"smoke", "default", "blog-image", "kan-paper-toy"} <= set(preset_names())
    for name in ("smoke", "default", "kan-paper-toy"):
        runs = expand(load_study(name))
        study = load_study(name)
        assert len(runs) == len(study.tasks) * len(study.models) * len(study.seeds)


def test_unknown_preset_and_missing_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown preset 'nope'; presets: .*default"):
        read_study("nope")
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        read_study(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ValueError, match="invalid TOML"):
        read_study(bad)


def test_budget_matched_models_meet_the_budget_and_ids_are_stable() -> None:
    study = parse_study({**MINIMAL, "budget": 1000, "depth": 2, "seeds": [0, 1]})
    runs = expand(study)
    assert len(runs) == 4
    for exp in runs:
        count = models.count_params(models.parse_spec(exp.spec))
        assert abs(count - 1000) <= 20, (exp.spec, count)
    again = expand(study)
    assert [e.run_id for e in runs] == [e.run_id for e in again]
    assert len({e.run_id for e in runs}) == 4
    changed = expand(parse_study(apply_overrides({**MINIMAL, "budget": 1000, "depth": 2, "seeds": [0, 1]},
                                                 ["train.lr=0.5"])))
    assert not {e.run_id for e in runs} & {e.run_id for e in changed}


def test_experiment_config_round_trips_through_json() -> None:
    exp = expand(load_study("smoke"))[1]
    back = ExperimentConfig.from_dict(exp.to_dict())
    assert back == exp and back.run_id == exp.run_id


def test_train_precedence_model_over_task_over_study() -> None:
    raw = {**MINIMAL, "train": {"lr": 0.1, "steps": 5}}
    raw["tasks"] = [{**MINIMAL["tasks"][0], "train": {"lr": 0.2}}]
    raw["models"] = [{"family": "kan", "train": {"lr": 0.3}}, {"family": "mlp"}]
    kan, mlp = expand(parse_study(raw))
    assert (kan.train.lr, mlp.train.lr, kan.train.steps) == (0.3, 0.2, 5)
