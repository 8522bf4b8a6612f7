"""A tuning trial's pruner, run inside the worker that trains the trial.

The driver sends each trial, in its config's `trial` field, the finished trials of its study as
they stood when the trial was asked (the reference: state, final value, evaluation curve, and the
pruner's own notes such as successive halving's rungs). The worker rebuilds them in an in-memory
Optuna study, reports each evaluation of its own curve there and asks Optuna's pruner whether to
stop. Nothing is shared while trials run, so pruning works the same in this process, a local pool,
Dask or Ray, needs no shared disk or database, and gives the same decisions on every rerun.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

Record = Mapping[str, Any]
PRUNERS = {"median": "MedianPruner", "halving": "SuccessiveHalvingPruner", "none": "NopPruner"}


def optuna_quietly() -> Any:
    """The optuna module, its per-trial INFO logging turned off (the progress bar says enough)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_pruner(spec: Mapping[str, Any]) -> Any:
    """The Optuna pruner a spec names: {"kind": "median" | "halving" | "none", **its arguments}."""
    optuna = optuna_quietly()
    kind = spec.get("kind", "median")
    if kind not in PRUNERS:
        raise ValueError(f"tune.pruner.kind = {kind!r}; allowed: {', '.join(PRUNERS)}")
    cls = getattr(optuna.pruners, PRUNERS[kind])
    args = {k: v for k, v in spec.items() if k != "kind"}
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} in tune.pruner ({kind}); allowed: "
                         f"kind, {', '.join(allowed) or 'nothing else'}")
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"tune.pruner ({kind}): {err}") from None


def curve(records: Iterable[Record], metric: str) -> dict[int, float]:
    """A run's evaluation curve as Optuna sees it: step -> metric, finite values, first one per step.

    A grid stage's first evaluation repeats the step of the last one of the stage before; Optuna
    keeps the first value reported at a step, and so does this.
    """
    out: dict[int, float] = {}
    for rec in records:
        value = rec.get(metric)
        if value is not None and math.isfinite(value) and int(rec["step"]) not in out:
            out[int(rec["step"])] = float(value)
    return out


class PruneHook:
    """train()'s prune hook for one trial: Optuna's pruner against the trial's reference.

    Args:
        trial: the run config's `trial` field: metric, direction, pruner (see make_pruner)
            and reference (a list of {"state", "value", "curve": [[step, value], ...], "attrs"}).
    """

    def __init__(self, trial: Mapping[str, Any]) -> None:
        optuna = optuna_quietly()
        from optuna.trial import TrialState, create_trial

        self.metric, self.kind = trial["metric"], trial["pruner"]["kind"]
        self.study = optuna.create_study(direction=trial["direction"], pruner=make_pruner(trial["pruner"]),
                                         sampler=optuna.samplers.RandomSampler(seed=0))
        for ref in trial["reference"]:
            state = TrialState[ref["state"]]
            self.study.add_trial(create_trial(
                state=state, value=ref["value"] if state == TrialState.COMPLETE else None,
                intermediate_values={int(step): float(v) for step, v in ref["curve"]},
                system_attrs=dict(ref["attrs"]),
            ))
        self.n_reference = len(trial["reference"])
        self.trial = self.study.ask()
        self.reported: dict[int, float] = {}

    def __call__(self, record: Record) -> str | None:
        """Report this evaluation; a message when the pruner stops the trial here."""
        value, step = record.get(self.metric), int(record["step"])
        if value is None or not math.isfinite(value) or step in self.reported:
            return None
        self.trial.report(float(value), step)
        self.reported[step] = float(value)
        if not self.trial.should_prune():
            return None
        return (f"pruned at step {step} by the {self.kind} pruner: {self.metric} {value:.4g} against "
                f"{self.n_reference} earlier trial(s)")

    def system_attrs(self) -> dict[str, Any]:
        """What the pruner noted on this trial (successive halving's rungs), for later references."""
        return dict(self.study.trials[-1].system_attrs)
