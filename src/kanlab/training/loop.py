"""One training loop for every optimizer: a closure step, grid stages and updates, evaluation, History.

Steps are counted globally (a record's `step` is the number of optimizer steps taken); grid
updates, learning-rate schedules and the optimizer restart with each grid stage, as each stage of
the KAN paper is a fresh fit. Legend: n rows, d inputs, t targets, b batch rows.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kanlab.training.config import DTYPES, OPTIMIZERS, SCHEDULES, TrainConfig
from kanlab.training.evaluation import Data, evaluate, loss_function, splits, target_kind
from kanlab.training.flat_step import FlatStep
from kanlab.training.grids import REFINE_ROWS as REFINE_ROWS
from kanlab.training.grids import kan_layers as kan_layers
from kanlab.training.grids import refine_grids, update_grids
from kanlab.training.lbfgs import LBFGS
from kanlab.training.native_objective import lbfgs_step
from kanlab.training.optimizers import make_optimizer as make_optimizer
from kanlab.training.optimizers import make_scheduler as make_scheduler
from kanlab.training.regularization import forward_with_sparsity

__all__ = ["DTYPES", "OPTIMIZERS", "SCHEDULES", "Data", "History", "TrainConfig", "evaluate", "refine_grids",
           "train", "update_grids"]

Record = dict[str, Any]
Callback = Callable[[Record], None]  # gets each evaluation record
Prune = Callable[[Record], str | None]  # gets each evaluation record; a message stops training (pruned)
Progress = Callable[[int, int], None]  # gets (step, total_steps) after each step


@dataclass
class History:
    """What a run produced.

    Attributes:
        records: one dict per evaluation with keys step, time, lr, grid_size and evaluate()'s
            (train_loss, test_loss, then test_rmse for value targets, or train_accuracy,
            test_accuracy and test_macro_f1 for class targets; the val_ ones with a validation
            set); finite evaluations only.
        status: "finished", "diverged" or "pruned" (stopped by the prune hook).
        message: why it diverged (step and last finite loss) or was pruned, else None.
        wall_time: seconds for the whole call.
        steps_done: optimizer steps completed with a finite loss.
        time_per_step: training seconds (evaluation excluded) per completed step.
        stages: one dict per completed grid stage (a run without grid_stages is one stage): grid_size,
            step, and train_rmse, test_rmse (value targets) or train_loss, test_loss, test_accuracy
            (class targets) at the end of the stage.
    """

    records: list[Record] = field(default_factory=list)
    status: str = "finished"
    message: str | None = None
    wall_time: float = 0.0
    steps_done: int = 0
    time_per_step: float = 0.0
    stages: list[Record] = field(default_factory=list)


def nonfinite_inside(model: nn.Module, x: torch.Tensor) -> bool:
    # Whether a forward on x meets a NaN/inf parameter or layer input: tells a layer's non-finite
    # input ValueError (divergence) apart from a genuine error, which must propagate.
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return True
    finite: list[bool] = []

    def look(_: nn.Module, inputs: tuple[Any, ...]) -> None:
        finite.extend(bool(torch.isfinite(t).all()) for t in inputs if isinstance(t, torch.Tensor))

    handles = [m.register_forward_pre_hook(look) for m in model.modules()]
    try:
        with torch.no_grad(), contextlib.suppress(ValueError):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return not all(finite)


def _batches(n: int, batch_size: int | None, gen: torch.Generator) -> Iterator[torch.Tensor | None]:
    # Row indices per step, None = the full set. Epochs are drawn without replacement; the
    # n % batch_size rows left over by an epoch's permutation wait for the next one.
    if batch_size is None or batch_size >= n:
        while True:
            yield None
    while True:
        perm = torch.randperm(n, generator=gen)
        for k in range(n // batch_size):
            yield perm[k * batch_size : (k + 1) * batch_size]


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, kind: str) -> torch.Tensor:
    # the training objective on (x, y): the target kind's loss, plus the sparsity term if asked
    loss_fn = loss_function(kind)
    if cfg.sparsity > 0:
        pred, reg = forward_with_sparsity(model, x, cfg.sparsity_l1, cfg.sparsity_entropy)
        return loss_fn(pred, y) + cfg.sparsity * reg
    return loss_fn(model(x), y)


def _make_closure(
    model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
    kind: str = "value",
) -> Callable[[], torch.Tensor]:
    params = [p for g in opt.param_groups for p in g["params"]]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _loss(model, x, y, cfg, kind)
        loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        return loss

    return closure


class _Run:
    """One train() call: the cast data (so it is a Data itself), clock, step counter, optimizer, History."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None

    def __init__(self, model: nn.Module, data: Data, cfg: TrainConfig,
                 callback: Callback | None, progress: Progress | None, prune: Prune | None = None) -> None:
        p = next(model.parameters(), None)
        if p is None:
            raise ValueError(f"{type(model).__name__} has no parameters to train")
        self.x_val = self.y_val = None  # a validation set: evaluated, never trained on
        for name in (f"{v}_{split}" for split in splits(data) for v in ("x", "y")):
            t = getattr(data, name).to(p.device, DTYPES[cfg.dtype])  # a copy unless it already matches
            if t.ndim != 2 or not bool(torch.isfinite(t).all()):
                raise ValueError(f"data.{name} must be 2-D and finite in {cfg.dtype}; shape {tuple(t.shape)}")
            setattr(self, name, t)
        self.model, self.cfg, self.history = model, cfg, History()
        self.target_kind = target_kind(data)  # so that evaluate(model, self) sees it
        self.batches = _batches(len(self.x_train), cfg.batch_size, torch.Generator().manual_seed(cfg.seed))
        self.start, self.eval_time, self.step = time.perf_counter(), 0.0, 0
        self.last: tuple[int, float] | None = None  # (step, value) of the last finite loss
        self.opt: torch.optim.Optimizer | None = None
        self.flat: FlatStep | None = None  # a first-order optimizer on the native kernels (flat_step.py)
        self.callback, self.progress, self.prune = callback, progress, prune

    def diverge(self, why: str) -> bool:
        last = "none" if self.last is None else f"{self.last[1]:.6g} at step {self.last[0]}"
        self.history.status = "diverged"
        self.history.message = f"diverged at step {self.step}: {why}; last finite loss {last}"
        return False

    def evaluate(self) -> bool:
        t0 = time.perf_counter()
        try:
            ev = evaluate(self.model, self)
        except ValueError:
            if not any(nonfinite_inside(self.model, x) for x in (self.x_train, self.x_test)):
                raise
            ev = {"train_loss": math.nan, "test_loss": math.nan}
        finally:
            self.eval_time += time.perf_counter() - t0
        if not all(math.isfinite(v) for v in ev.values()):
            return self.diverge(f"non-finite evaluation (train {ev['train_loss']}, test {ev['test_loss']})")
        kan = kan_layers(self.model)
        lr = self.opt.param_groups[0]["lr"] if self.opt is not None else self.cfg.lr
        record = {"step": self.step, "time": t0 - self.start, **ev, "lr": float(lr),
                  "grid_size": kan[0].grid_size if kan else None}
        self.history.records.append(record)
        self.last = (self.step, ev["train_loss"])
        t1 = time.perf_counter()
        if self.callback is not None:
            self.callback(dict(record))
        # The last evaluation is never pruned: a run that got there is complete.
        reason = self.prune(dict(record)) if self.prune and self.step < self.cfg.total_steps else None
        self.eval_time += time.perf_counter() - t1
        if reason:
            self.history.status, self.history.message = "pruned", reason
            return False
        return True

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        # One optimizer step. Full-batch LBFGS on a small KAN skips autograd: the native kernels
        # give the loss (MSE, plus the sparsity term) and gradient on the optimizer's flat vector
        # (kanlab.training.native_objective). Adam, AdamW and SGD on such a KAN: the same kernels,
        # the optimizer on one flat vector (flat_step.py).
        if self.flat is not None:
            return self.flat.step(x, y, lambda: _loss(self.model, x, y, self.cfg, self.target_kind))
        opt, cfg = self.opt, self.cfg
        assert opt is not None
        closure = _make_closure(self.model, opt, x, y, cfg, self.target_kind)
        if isinstance(opt, LBFGS) and self._native():
            return lbfgs_step(opt, self.model, x, y, closure, sparsity=cfg.sparsity, l1=cfg.sparsity_l1,
                              entropy=cfg.sparsity_entropy)
        return opt.step(closure)  # type: ignore[arg-type]

    def _native(self) -> bool:
        # what the native objective computes: the MSE (plus the sparsity term), its gradient unclipped
        return self.cfg.grad_clip is None and self.target_kind == "value"

    def new_optimizer(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        """A fresh optimizer (self.opt; self.flat where flat_step applies) and its schedule."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.flat = None
        if self._native() and FlatStep.applies(self.model, params, self.cfg, self.x_train, self.y_train):
            self.flat = FlatStep(self.model, params, self.cfg)
            self.opt = self.flat.opt
        else:
            self.opt = make_optimizer(params, self.cfg)
        return make_scheduler(self.opt, self.cfg)

    def stage(self, grid_size: int | None) -> bool:
        cfg = self.cfg
        if grid_size is not None:
            refine_grids(self.model, grid_size, self.x_train)
        # refine replaced the coefficient Parameters, and each stage is a fresh fit: new optimizer.
        sched = self.new_optimizer()
        if not self.evaluate():  # step 0, or right after a refinement
            return False
        for t in range(cfg.steps):
            idx = next(self.batches)  # drawn on the CPU, so the same rows on any device
            if idx is None:
                x, y = self.x_train, self.y_train                                # (n, d), (n, t)
            else:
                idx = idx.to(self.x_train.device)
                x, y = self.x_train[idx], self.y_train[idx]                      # (b, d), (b, t)
            try:
                if (cfg.grid_update_every and t % cfg.grid_update_every == 0
                        and cfg.grid_update_start <= t < cfg.grid_update_until):
                    update_grids(self.model, x, cfg.grid_eps, cfg.grid_margin)
                out = self._step(x, y)
                loss = float(torch.as_tensor(out).detach())  # the objective before this step
            except ValueError:  # a layer's input check: divergence if NaN/inf got inside, else a real error
                if not nonfinite_inside(self.model, x):
                    raise
                return self.diverge("non-finite activations")
            if not math.isfinite(loss):
                return self.diverge(f"non-finite training loss {loss}")
            self.last, self.step = (self.step, loss), self.step + 1
            if sched is not None:
                sched.step()
            if self.progress is not None:
                self.progress(self.step, cfg.total_steps)
            if (self.step % cfg.eval_every == 0 or t == cfg.steps - 1) and not self.evaluate():
                return False
        end = self.history.records[-1]
        stage = {"grid_size": end["grid_size"], "step": self.step}
        if self.target_kind == "class":
            stage.update(train_loss=end["train_loss"], test_loss=end["test_loss"],
                         test_accuracy=end["test_accuracy"])
        else:
            stage.update(train_rmse=math.sqrt(end["train_loss"]), test_rmse=end["test_rmse"])
        self.history.stages.append(stage)
        return True


def train(
    model: nn.Module,
    data: Data,
    cfg: TrainConfig,
    *,
    callback: Callback | None = None,
    progress: Progress | None = None,
    prune: Prune | None = None,
) -> History:
    """Train model in place on data's MSE (cross-entropy for class targets); NaN/inf ends the run "diverged".

    Args:
        model: converted to cfg.dtype in place; trains on its parameters' device. Grid stages,
            grid updates and sparsity need a stack (`.layers` applied in order) or a single layer.
        data: x_train (n, d), y_train (n, t), x_test, y_test (and x_val, y_val: evaluated, never
            trained on); cast copies are used, never changed.
        cfg: the training configuration.
        callback: called with (a copy of) each evaluation record right after it is taken.
        progress: called as progress(step, cfg.total_steps) after every optimizer step.
        prune: asked with (a copy of) each evaluation record but the last; a message ends training
            there with status "pruned" (a tuning trial's pruner, see kanlab.training.trial_pruning).
    Returns:
        The History: records, stages, status/message and timings.
    """
    model.to(dtype=DTYPES[cfg.dtype])
    run = _Run(model, data, cfg, callback, progress, prune)
    for grid_size in cfg.grid_stages or (None,):
        if not run.stage(grid_size):
            break
    h = run.history
    h.wall_time, h.steps_done = time.perf_counter() - run.start, run.step
    h.time_per_step = (h.wall_time - run.eval_time) / run.step if run.step else 0.0
    return h
