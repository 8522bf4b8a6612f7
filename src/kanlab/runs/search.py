"""The search of `kanlab tune` (see kanlab.runs.tune): each (task, model) pair's Optuna study,
asked and told in rounds of trials that run on any executor.

Trials are asked in rounds: each study asks `trials_per_round` trials, all of them run on the
executor, and the next round is asked once every trial of this one is told. The TPE sampler is
seeded per trial (tune seed, trial number), so what it proposes depends only on the study's
history, never on timing or on a resume: the same file proposes the same trials. A pruned or
diverged run is told as PRUNED (its curve ranks it below every finished trial); a failed run is not
told: its trial stays RUNNING (Optuna cannot take back FAIL) until `--retry-failed` reruns the very
same run. Pruning happens in the worker (kanlab.training.trial_pruning) against the study's finished
trials of earlier rounds, sent along in the trial's config.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kanlab.runs.driver import DONE, Progress, land, recover
from kanlab.runs.executors import Executor, Job
from kanlab.runs.experiment import Draw
from kanlab.runs.outputs import run_folder
from kanlab.runs.store import ResultsStore
from kanlab.study.config import ExperimentConfig
from kanlab.study.tune_config import Tune, TuneStudy
from kanlab.training.trial_pruning import curve, optuna_quietly

ATTR = "kanlab"  # a trial's user attribute: {"seed", "reference", "run_id"}, set when it is asked


def journal_path(db_path: Path) -> Path:
    """Where the Optuna studies of a results database live: beside it (kanlab.db -> kanlab.optuna.journal)."""
    return Path(db_path).with_suffix(".optuna.journal")


def trial_seed(tune: Tune, number: int) -> int:
    """The TPE sampler's seed for one trial: a function of the tune's seed and the trial number only."""
    return int(np.random.SeedSequence([tune.seed, number]).generate_state(1)[0])


@dataclass
class _Study:
    spec: TuneStudy
    study: Any  # optuna.Study
    study_id: int


class Search:
    """The search phase of a tune: Optuna studies in a journal, trial runs on an executor."""

    def __init__(self, tune: Tune, root: Path, db_path: Path) -> None:
        optuna = optuna_quietly()
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

        self.tune, self.root, self.db_path = tune, Path(root), Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        path = str(journal_path(self.db_path))
        # Only this process writes the journal, each write in milliseconds: a lock left 5 s by a
        # killed driver is stale (Optuna's default waits 30 s before taking it over).
        self.storage = JournalStorage(JournalFileBackend(path, lock_obj=JournalFileSymlinkLock(path, 5)))
        self.studies = []
        self._experiments: dict[tuple[str, int], ExperimentConfig] = {}
        for spec in tune.studies:
            study = optuna.create_study(study_name=spec.name, storage=self.storage, load_if_exists=True,
                                        direction=tune.direction)
            self.studies.append(_Study(spec, study, self.storage.get_study_id_from_name(spec.name)))

    # -- trials as runs -------------------------------------------------------------------------
    def _reference(self, s: _Study, before: int) -> list[dict[str, Any]]:
        from optuna.trial import TrialState

        done = (TrialState.COMPLETE, TrialState.PRUNED)
        return [{"number": t.number, "state": t.state.name, "value": t.value if t.state == TrialState.COMPLETE
                 else None, "curve": sorted([s, v] for s, v in t.intermediate_values.items()),
                 "attrs": dict(t.system_attrs)}
                for t in s.study.get_trials(deepcopy=False, states=done) if t.number < before]

    def experiment(self, s: _Study, frozen: Any) -> ExperimentConfig:
        """The run of one trial, rebuilt from its params and the reference it was asked with."""
        known = self._experiments.get((s.spec.name, frozen.number))
        if known is None:
            known = self._experiments[(s.spec.name, frozen.number)] = self._rebuild(s, frozen)
        return known

    def _rebuild(self, s: _Study, frozen: Any) -> ExperimentConfig:
        tune, number = self.tune, frozen.number
        note = frozen.user_attrs.get(ATTR)
        k = tune.trials_per_round
        # Asked but not yet noted (killed in between): the reference is the finished trials of
        # earlier rounds, which nothing can have changed since.
        numbers = note["reference"] if note else [r["number"] for r in self._reference(s, number // k * k)]
        by_number = {r["number"]: r for r in self._reference(s, number)}
        values = s.spec.space.decode(frozen.params)
        trial = {"study": s.spec.name, "number": number, "params": values, "metric": tune.metric,
                 "direction": tune.direction, "pruner": dict(s.spec.pruner)}
        if s.spec.pruner["kind"] != "none":
            trial["reference"] = [by_number[n] for n in numbers]
        seed = tune.search_seeds[number % len(tune.search_seeds)]
        (exp,) = tune.resolve(s.spec, values, [seed], experiment=tune.search_experiment, trial=trial)
        if note is None:
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(s.study_id, number)
            self.storage.set_trial_user_attr(trial_id, ATTR, {"seed": seed, "reference": numbers,
                                                              "run_id": exp.run_id})
        elif note["run_id"] != exp.run_id:
            raise ValueError(f"trial {number} of {s.spec.name} ran as {note['run_id']}, now resolves to "
                             f"{exp.run_id}: kanlab changed since the tune started; give the tune a new name")
        return exp

    def _ask(self, s: _Study, count: int) -> None:
        import optuna

        for _ in range(count):
            number = len(s.study.get_trials(deepcopy=False))
            # Trials of a round are asked before any is told: TPE counts the open ones as bad
            # (constant_liar), so a round spreads out instead of proposing one point k times.
            s.study.sampler = optuna.samplers.TPESampler(
                seed=trial_seed(self.tune, number), n_startup_trials=self.tune.startup_trials,
                constant_liar=True)
            trial = s.study.ask(s.spec.space.distributions())
            self.experiment(s, s.study.get_trials(deepcopy=False)[trial.number])  # notes it

    def _tell(self, s: _Study, number: int, folder: Path) -> str:
        from optuna.trial import TrialState

        final = json.loads((folder / "final.json").read_text())
        metrics = folder / "metrics.jsonl"
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] \
            if metrics.is_file() else []
        status = final["status"]
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(s.study_id, number)
        self.storage.set_trial_user_attr(trial_id, "status", status)
        if status == "failed":
            return status  # stays RUNNING: --retry-failed reruns it
        for step, value in curve(records, self.tune.metric).items():
            self.storage.set_trial_intermediate_value(trial_id, step, value)
        for key, value in final.get("pruner_attrs", {}).items():
            self.storage.set_trial_system_attr(trial_id, key, value)
        value = final.get(self.tune.metric)
        if status == "finished" and value is not None and math.isfinite(value):
            s.study.tell(number, float(value))
        else:  # pruned, diverged, or no finite metric: ranked by its curve, below every finished trial
            s.study.tell(number, state=TrialState.PRUNED)
        return status

    # -- budget ---------------------------------------------------------------------------------
    def spent(self, s: _Study, store: ResultsStore) -> float:
        """Seconds of training recorded for a study's trials."""
        rows = store.runs(self.tune.search_experiment)
        return sum(r["wall_time"] or 0.0 for r in rows
                   if json.loads(r["config_json"]).get("trial", {}).get("study") == s.spec.name)

    def _wanted(self, s: _Study, store: ResultsStore) -> int:
        """How many more trials this study may ask now (a partial round is completed first)."""
        n, k, budget = len(s.study.get_trials(deepcopy=False)), self.tune.trials_per_round, self.tune.budget
        room = k - n % k
        if budget.kind == "trials":
            return max(0, min(room, int(budget.amount) - n))
        last = s.study.get_trials(deepcopy=False)[-k:] if n >= k else []
        if last and all(t.user_attrs.get("status") == "failed" for t in last):
            return 0  # a whole round failed (and failures take no time): more would fail forever
        return room if self.spent(s, store) < budget.amount else 0

    # -- the loop -------------------------------------------------------------------------------
    def run(self, executor: Executor, *, retry_failed: bool = False, draw: Draw | None = None) -> None:
        """Ask, run and tell rounds until every study has spent its budget."""
        progress: Progress | None = None
        k = self.tune.trials_per_round
        with ResultsStore(self.db_path) as store:
            try:
                while True:
                    jobs: dict[str, tuple[_Study, int, ExperimentConfig]] = {}
                    for s in self.studies:
                        running = self._running(s, store, retry_failed=retry_failed and progress is None)
                        if not running or len(s.study.get_trials(deepcopy=False)) % k:
                            self._ask(s, self._wanted(s, store))
                            running = self._running(s, store, retry_failed=retry_failed and progress is None)
                        jobs.update({e.run_id: (s, n, e) for n, e in running})
                    if progress is None:
                        progress = Progress(self._expected(len(jobs)), executor.description)
                    if not jobs:
                        return
                    for outcome in executor.run([Job.of(e, draw=draw) for _, _, e in jobs.values()]):
                        s, number, exp = jobs[outcome.job.run_id]
                        folder = land(exp, outcome, self.root)
                        store.record_run(folder)
                        progress.update(self._tell(s, number, folder))
            finally:
                if progress is not None:
                    progress.close()

    def _running(self, s: _Study, store: ResultsStore, *,
                 retry_failed: bool) -> list[tuple[int, ExperimentConfig]]:
        """RUNNING trials that need a run (in flight when killed, or failed and retried); tells the rest."""
        from optuna.trial import TrialState

        trials = [(t.number, self.experiment(s, t))
                  for t in s.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        recover([e for _, e in trials], store, self.root)  # folders landed but not recorded before a kill
        status = {r["run_id"]: r["status"] for r in store.runs(self.tune.search_experiment)
                  if Path(r["run_dir"]).is_dir()}
        out = []
        for number, exp in trials:
            found = status.get(exp.run_id)
            if found in DONE:  # recorded, then killed before Optuna heard of it
                self._tell(s, number, run_folder(self.root, exp))
            elif found != "failed" or retry_failed:
                out.append((number, exp))
        return out

    def _expected(self, now: int) -> int | None:
        """Runs this call will make: the ones about to run and the trials still to ask (trials budget)."""
        if self.tune.budget.kind != "trials":
            return None
        return now + sum(max(0, int(self.tune.budget.amount) - len(s.study.get_trials(deepcopy=False)))
                         for s in self.studies)

    # -- results --------------------------------------------------------------------------------
    def best(self, s: _Study) -> Any | None:
        """The best finished trial of a study among the trials its budget allows, or None."""
        from optuna.trial import TrialState

        trials = s.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if self.tune.budget.kind == "trials":  # trials past a lowered budget do not count
            trials = [t for t in trials if t.number < self.tune.budget.amount]
        sign = 1 if self.tune.direction == "minimize" else -1
        return min(trials, key=lambda t: (sign * t.value, t.number), default=None)
