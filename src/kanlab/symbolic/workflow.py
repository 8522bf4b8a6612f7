"""The KAN paper's symbolic regression workflow, one stage after another on one model.

    train with sparsity -> prune -> retrain -> refine the grid and retrain -> auto-fix the edges
    one layer at a time, retraining the later layers in between -> train the symbolic constants
    in float64 (LBFGS, then Levenberg-Marquardt) -> formula

Every training stage is full-batch LBFGS in float64 through training.train. The defaults recover
exp(sin(pi x1) + x2^2) from a [2, 5, 1] KAN for seeds 0-3 (tests/test_symbolic.py runs one).

Every stage records the model's widths, parameter count, train/test RMSE and every edge's
response on a grid over its input range (the arrays of models.edge_arrays), so a report can show
how the network turns from splines into a formula. WorkflowResult.save writes them to a folder:
`symbolic.json` and one `<k>-<stage>/edges.npz` per stage (report.plots.plot_edges reads it).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import torch
from torch import nn

from kanlab.models.edges import edge_arrays
from kanlab.models.stack import param_count
from kanlab.symbolic.config import SymbolicConfig
from kanlab.symbolic.formulas import evaluate, formula
from kanlab.symbolic.polish import polish_constants
from kanlab.symbolic.pruning import PruneReport, prune
from kanlab.symbolic.snap import EdgeChoice, auto_fix, spline_edges, stack_of, symbolize
from kanlab.training.config import TrainConfig
from kanlab.training.evaluation import Data
from kanlab.training.evaluation import evaluate as evaluate_model
from kanlab.training.loop import train


@dataclass(frozen=True)
class Stage:
    """The model after one stage of the workflow."""

    name: str
    step: int  # optimizer steps of the workflow so far
    widths: tuple[int, ...]
    params: int
    train_rmse: float
    test_rmse: float
    note: str = ""
    edges: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, eq=False)
class WorkflowResult:
    """What symbolic_workflow produced: the final model, the stages, the fits and the formula.

    Attributes:
        model: the final (symbolic) model.
        stages: one Stage per step of the workflow, in order.
        prune_report: what pruning removed (None if skipped).
        choices: auto-fix's decision per edge.
        formula: the rounded formula of the first output (None if some edge stayed a spline).
        exact_formula: the same with full float64 constants (None likewise).
        formula_error: max |exact formula - model output 0| on the test inputs (nan if no formula).
    """

    model: nn.Module
    stages: tuple[Stage, ...]
    prune_report: PruneReport | None
    choices: tuple[EdgeChoice, ...]
    formula: sympy.Expr | None
    exact_formula: sympy.Expr | None
    formula_error: float

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays, no model)."""
        return {
            "stages": [{k: v for k, v in asdict(s).items() if k != "edges"} for s in self.stages],
            "prune": None if self.prune_report is None
            else {**asdict(self.prune_report), "text": str(self.prune_report)},
            "choices": [str(c) for c in self.choices],
            "formula": None if self.formula is None else str(self.formula),
            "formula_latex": None if self.formula is None else sympy.latex(self.formula),
            "exact_formula": None if self.exact_formula is None else str(self.exact_formula),
            "formula_error": self.formula_error,
        }

    def save(self, folder: Path | str) -> Path:
        """Write symbolic.json and <k>-<stage>/edges.npz per stage into folder; returns the folder."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / "symbolic.json").write_text(json.dumps(self.summary(), indent=2, default=float) + "\n")
        for k, s in enumerate(self.stages):
            if s.edges:
                (out / f"{k}-{s.name}").mkdir(exist_ok=True)
                np.savez(out / f"{k}-{s.name}" / "edges.npz", **s.edges)  # type: ignore[arg-type]
        return out


def _widths(model: nn.Module) -> tuple[int, ...]:
    layers = stack_of(model)
    return (layers[0].in_features, *(layer.out_features for layer in layers))


def _stage(name: str, step: int, model: nn.Module, data: Data, note: str = "") -> Stage:
    ev = evaluate_model(model, data)
    x = data.x_train.to(next(model.parameters()).dtype)
    return Stage(name, step, _widths(model), param_count(model), math.sqrt(ev["train_loss"]), ev["test_rmse"],
                 note, edge_arrays(model, x))


def _train(model: nn.Module, data: Data, cfg: TrainConfig, name: str) -> int:
    """Train one stage; returns its optimizer steps."""
    history = train(model, data, cfg)
    if history.status != "finished":
        raise RuntimeError(f"symbolic workflow: the {name} stage {history.status}: {history.message}")
    return history.steps_done


def symbolic_workflow(model: nn.Module, data: Data, cfg: SymbolicConfig = SymbolicConfig()) -> WorkflowResult:
    """Run the whole workflow on a KAN and return the symbolic model, the stages and the formula.

    Args:
        model: a stack of KANLinear layers (trained in place in the first stages; the final model
            is a symbolic copy, see WorkflowResult.model).
        data: x_train, y_train, x_test, y_test (a tasks.Dataset or any such object).
        cfg: the workflow's settings.
    Returns:
        The WorkflowResult (the formula is None if some edge stayed below cfg.r2_threshold).
    """
    stages = []
    first = cfg.stage(cfg.steps, grid_updates=True, sparsity=cfg.sparsity, sparsity_l1=cfg.sparsity_l1,
                      sparsity_entropy=cfg.sparsity_entropy)
    steps = _train(model, data, first, "sparsify")
    note = f"LBFGS {cfg.steps} steps, sparsity {cfg.sparsity:g}"
    stages.append(_stage("sparsify", steps, model, data, note))
    report = None
    x = data.x_train.to(torch.float64)
    if cfg.prune_threshold is not None:
        model, report = prune(model, x, cfg.prune_threshold)
        stages.append(_stage("prune", steps, model, data, str(report)))
        steps += _train(model, data, cfg.stage(cfg.steps, grid_updates=True), "retrain")
        stages.append(_stage("retrain", steps, model, data, f"LBFGS {cfg.steps} steps"))
    if cfg.refine_grid is not None:
        refine = cfg.stage(cfg.steps, grid_updates=True, grid_stages=(cfg.refine_grid,))
        steps += _train(model, data, refine, "refine")
        note = f"grid {cfg.refine_grid}, LBFGS {cfg.steps} steps"
        stages.append(_stage("refine", steps, model, data, note))
    # Fix one layer at a time and let the later layers' splines adapt to the exact functions
    # before they are fitted: with x*y, the output edges become clean parabolas only once the
    # inner edges are exactly linear (fitted all at once, a sine imitates the inexact splines).
    model = symbolize(model)
    choices: list[EdgeChoice] = []
    depth = len(stack_of(model))
    for j in range(depth):
        done = auto_fix(model, x, cfg.library, r2_threshold=cfg.r2_threshold, layers=[j])
        choices += done
        note = f"layer {j}: {sum(c.fixed for c in done)} of {len(done)} edges fixed"
        if j < depth - 1 and cfg.steps:
            steps += _train(model, data, cfg.stage(cfg.steps), f"auto-fix layer {j}")
            note += f", then LBFGS {cfg.steps} steps"
        stages.append(_stage(f"auto-fix-{j}", steps, model, data, note))
    if cfg.final_steps:
        steps += _train(model, data, cfg.stage(cfg.final_steps), "final")
        note = f"LBFGS {cfg.final_steps} steps on the symbolic constants"
        stages.append(_stage("final", steps, model, data, note))
    if spline_edges(model):
        return WorkflowResult(model, tuple(stages), report, tuple(choices), None, None, math.nan)
    if cfg.polish:
        polish_constants(model, data.x_train, data.y_train)
        stages.append(_stage("polish", steps, model, data, "Levenberg-Marquardt on the symbolic constants"))
    exact = formula(model)
    with torch.no_grad():
        pred = model(data.x_test.to(torch.float64))[:, 0].numpy()
    error = float(np.abs(evaluate(exact, data.x_test) - pred).max())
    rounded = formula(model, precision=cfg.precision)
    return WorkflowResult(model, tuple(stages), report, tuple(choices), rounded, exact, error)
