"""Pruning in the worker: train()'s prune hook, and Optuna's pruners against a trial's reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from kanlab import MLP
from kanlab.tasks import TaskConfig, make_dataset
from kanlab.training.config import TrainConfig
from kanlab.training.loop import train
from kanlab.training.trial_pruning import PruneHook, curve


def reference(curves: list[dict[int, float]]) -> list[dict[str, Any]]:
    return [{"number": n, "state": "COMPLETE", "value": c[max(c)], "attrs": {},
             "curve": sorted([s, v] for s, v in c.items())} for n, c in enumerate(curves)]


def test_the_prune_hook_applies_the_median_rule_to_its_reference() -> None:
    curves = [{0: 5.0, 10: 1.0, 20: 0.5}, {0: 5.0, 10: 2.0, 20: 1.0}, {0: 5.0, 10: 4.0, 20: 3.0}]
    trial = {"metric": "test_loss", "direction": "minimize", "reference": reference(curves),
             "pruner": {"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 10}}
    median_10 = float(np.median([c[10] for c in curves]))  # 2.0
    worse = PruneHook(trial)
    assert worse({"step": 0, "test_loss": 99.0}) is None  # inside the warm-up
    message = worse({"step": 10, "test_loss": median_10 + 0.1})
    assert message is not None and message.startswith("pruned at step 10 by the median pruner: test_loss 2.1")
    better = PruneHook(trial)
    assert better({"step": 10, "test_loss": median_10 - 0.1}) is None
    assert better({"step": 10, "test_loss": 100.0}) is None  # a step is reported once, as Optuna does
    assert better({"step": 20, "test_loss": 0.9}) is None  # best so far 0.9 < the median 1.0 at 20


def test_the_prune_hook_keeps_successive_halvings_rungs_for_later_trials() -> None:
    trial = {"metric": "test_loss", "direction": "minimize", "reference": reference([{0: 3.0, 10: 1.0}]),
             "pruner": {"kind": "halving", "min_resource": 10, "reduction_factor": 2}}
    trial["reference"][0]["attrs"] = {"completed_rung_0": 1.0}
    hook = PruneHook(trial)
    assert hook({"step": 10, "test_loss": 0.5}) is None  # better than the one rival at rung 0: promoted
    assert hook.system_attrs() == {"completed_rung_0": 0.5}
    loser = PruneHook(trial)
    assert loser({"step": 10, "test_loss": 2.0}) is not None
    assert loser.system_attrs() == {"completed_rung_0": 2.0}


def test_curve_keeps_the_first_finite_value_of_each_step() -> None:
    records = [{"step": 0, "m": 3.0}, {"step": 5, "m": float("nan")}, {"step": 5, "m": 2.0},
               {"step": 5, "m": 9.0}, {"step": 9, "m": None}]
    assert curve(records, "m") == {0: 3.0, 5: 2.0}


def test_train_stops_where_the_prune_hook_says_but_never_at_the_last_evaluation() -> None:
    data = make_dataset(TaskConfig(name="zigzag", n_train=32, n_test=32))
    seen: list[int] = []

    def hook(record: dict[str, Any]) -> str | None:
        seen.append(record["step"])
        return "enough" if record["step"] == 10 else None

    h = train(MLP([1, 8, 1]), data, TrainConfig(steps=30, eval_every=5), prune=hook)
    assert (h.status, h.message, h.steps_done, seen) == ("pruned", "enough", 10, [0, 5, 10])
    assert [r["step"] for r in h.records] == [0, 5, 10]
    h = train(MLP([1, 8, 1]), data, TrainConfig(steps=20, eval_every=5),
              prune=lambda r: "late" if r["step"] == 20 else None)
    assert (h.status, h.steps_done) == ("finished", 20)  # a run that got to the end is complete
