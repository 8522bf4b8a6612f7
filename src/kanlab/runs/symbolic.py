"""A study run with [symbolic]: the KAN paper's workflow on the run's model, into its run folder.

Besides what every run folder holds (config.json; metrics.jsonl with one record per stage, the
stage's index as its step; final.json with the formula; predictions.npz and edges.npz of the
final model), a symbolic run writes symbolic/: symbolic.json (stages, what pruning removed, each
edge's choice, the formula as text and LaTeX) and `<k>-<stage>/edges.npz` per stage, which the
report draws as one edge grid per stage. It keeps no model.pt: the result is the formula, and a
model with symbolic edges is not a spec that `kanlab eval` could rebuild. A run whose workflow
left some edge a spline has no formula and is recorded with status "no_formula", the edges named
in its message.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn

from kanlab.runs.outputs import RunState, load_data, write_outputs
from kanlab.study.config import ExperimentConfig, build_checked
from kanlab.symbolic.config import SymbolicConfig
from kanlab.symbolic.snap import spline_edges
from kanlab.symbolic.workflow import symbolic_workflow
from kanlab.training.loop import History

NO_FORMULA = "no_formula"  # a symbolic run's status when some edge stayed a spline


def run_symbolic(exp: ExperimentConfig, model: nn.Module, folder: Path, out: RunState) -> None:
    """Run the workflow on model (float64, the run's seed) and write its results into folder.

    Args:
        exp: the run; exp.symbolic holds SymbolicConfig fields (the seed is exp.seed).
        model: the run's freshly built KAN.
        folder: the run's (temporary) folder.
        out: filled with the data, the final model, a History of one record per stage and the
            formula keys of final.json, as far as the run gets.
    """
    assert exp.symbolic is not None
    cfg = build_checked(SymbolicConfig, {**exp.symbolic, "seed": exp.seed}, "symbolic")
    data = out.data = load_data(exp, torch.float64)
    out.model = model.double()
    started = time.perf_counter()
    result = symbolic_workflow(out.model, data, cfg)
    wall = time.perf_counter() - started
    out.model = result.model
    result.save(folder / "symbolic")
    # One curve point per stage, at the stage's index (several stages can end at one optimizer step).
    records = [{"step": k, "stage": s.name, "optimizer_steps": s.step, "train_loss": s.train_rmse**2,
                "test_loss": s.test_rmse**2, "test_rmse": s.test_rmse, "grid_size": None}
               for k, s in enumerate(result.stages)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    steps = result.stages[-1].step
    out.history = History(records=records, wall_time=wall, steps_done=steps,
                          time_per_step=wall / steps if steps else 0.0)
    if result.formula is None:  # asked for a formula, got none: not "finished"
        edges = spline_edges(result.model)
        where = ", ".join(f"layer {j} edge {i}->{o}" for j, o, i in edges[:6])
        where += ", ..." if len(edges) > 6 else ""
        out.history.status = NO_FORMULA
        out.history.message = (f"no formula: {len(edges)} edge(s) stayed splines ({where}); their best "
                               f"symbolic fits were below r2_threshold {cfg.r2_threshold}")
    summary = result.summary()
    out.extra = {"formula": summary["formula"], "formula_latex": summary["formula_latex"],
                 "formula_error": result.formula_error}
    left_out = write_outputs(folder, result.model, data)
    if left_out:
        out.extra["left_out"] = left_out

