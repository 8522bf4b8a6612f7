"""TrainConfig: how a run trains, checked when it is built (kanlab.training.loop runs it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kanlab.training.lbfgs import TOLERANCE_CHANGE, TOLERANCE_GRAD

OPTIMIZERS = ("adam", "adamw", "sgd", "lbfgs")
SCHEDULES = ("constant", "cosine", "step")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimizer, schedule, batches, precision, grid stages/updates, regulariser.

    LBFGS (optimizer "lbfgs", kanlab.training.lbfgs.LBFGS): each step runs up to lbfgs_max_iter iterations,
    keeping lbfgs_history curvature pairs. Its stopping rules are relative, so they mean the same
    at every loss scale: a step ends early when the largest gradient entry has fallen to
    lbfgs_tolerance_grad times its value at the start of the grid stage, or when an iteration
    lowers the loss by at most lbfgs_tolerance_change times the loss (or moves no parameter by
    more than that fraction of the largest one). 0 and 0 run every iteration, as PyKAN's fit
    does. The defaults (0 and 1e-12) were chosen by measurement (benchmarks/README.md).

    Grid updates (KAN layers' knots moved to the quantiles of their inputs, KANLinear.update_grid)
    run before step t of each grid stage when t is a multiple of grid_update_every and
    grid_update_start <= t < grid_update_until, as PyKAN's fit schedules them. A start above 0
    keeps the first update off an untrained model, whose hidden layers' inputs still span only
    their random initial range (the kan-paper-toy preset: benchmarks/README.md).
    """

    optimizer: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    steps: int = 1000  # per grid stage
    batch_size: int | None = None  # None (or >= n) = full batch
    schedule: str = "constant"
    step_every: int = 1000  # "step" schedule
    gamma: float = 0.5  # "step" schedule
    dtype: str = "float32"
    eval_every: int = 100
    grid_update_every: int = 0  # 0 = off
    grid_update_until: int = 0
    grid_update_start: int = 0  # first step of each grid stage that may update (see below)
    grid_eps: float = 0.02
    grid_margin: float = 0.0  # grid updates: each grid covers its inputs' range widened by this fraction
    grid_stages: tuple[int, ...] = ()
    sparsity: float = 0.0  # 0 = off
    sparsity_l1: float = 1.0
    sparsity_entropy: float = 2.0
    lbfgs_max_iter: int = 20
    lbfgs_history: int = 10
    lbfgs_tolerance_grad: float = TOLERANCE_GRAD  # relative to the stage's first gradient
    lbfgs_tolerance_change: float = TOLERANCE_CHANGE  # relative to the loss and the parameters
    grad_clip: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_clip"):  # TOML has no null: presets write "none"
            if str(getattr(self, name)).lower() == "none":
                object.__setattr__(self, name, None)
        if isinstance(self.grid_stages, (list, tuple)):
            object.__setattr__(self, "grid_stages", tuple(self.grid_stages))
        for name in ("lr", "weight_decay", "momentum", "gamma", "grid_eps", "grid_margin", "sparsity",
                     "sparsity_l1", "sparsity_entropy", "grad_clip", "lbfgs_tolerance_grad",
                     "lbfgs_tolerance_change"):
            if _is_int(getattr(self, name)):  # TOML's `lr = 1` is an int
                object.__setattr__(self, name, float(getattr(self, name)))
        pos, nonneg = "an integer >= 1", "an integer >= 0"
        checks = [
            ("optimizer", self.optimizer in OPTIMIZERS, ", ".join(OPTIMIZERS)),
            ("lr", _is_num(self.lr) and self.lr > 0, "a number > 0"),
            ("weight_decay", _is_num(self.weight_decay) and self.weight_decay >= 0, "a number >= 0"),
            ("momentum", _is_num(self.momentum) and 0 <= self.momentum < 1, "a number in [0, 1)"),
            ("steps", _is_int(self.steps) and self.steps >= 0, nonneg),
            ("batch_size", self.batch_size is None or (_is_int(self.batch_size) and self.batch_size >= 1),
             f"None or {pos}"),
            ("schedule", self.schedule in SCHEDULES, ", ".join(SCHEDULES)),
            ("step_every", _is_int(self.step_every) and self.step_every >= 1, pos),
            ("gamma", _is_num(self.gamma) and 0 < self.gamma <= 1, "a number in (0, 1]"),
            ("dtype", self.dtype in DTYPES, ", ".join(DTYPES)),
            ("eval_every", _is_int(self.eval_every) and self.eval_every >= 1, pos),
            ("grid_update_every", _is_int(self.grid_update_every) and self.grid_update_every >= 0, nonneg),
            ("grid_update_until", _is_int(self.grid_update_until) and self.grid_update_until >= 0, nonneg),
            ("grid_update_start", _is_int(self.grid_update_start) and self.grid_update_start >= 0, nonneg),
            ("grid_eps", _is_num(self.grid_eps) and 0 <= self.grid_eps <= 1, "a number in [0, 1]"),
            ("grid_margin", _is_num(self.grid_margin) and self.grid_margin >= 0, "a number >= 0"),
            ("grid_stages", isinstance(self.grid_stages, tuple) and all(_is_int(g) and g >= 1 for g in
             self.grid_stages), "a tuple of integers >= 1, e.g. (3, 5, 10)"),
            ("sparsity", _is_num(self.sparsity) and self.sparsity >= 0, "a number >= 0 (0 = off)"),
            ("sparsity_l1", _is_num(self.sparsity_l1) and self.sparsity_l1 >= 0, ">= 0"),
            ("sparsity_entropy", _is_num(self.sparsity_entropy) and self.sparsity_entropy >= 0, ">= 0"),
            ("lbfgs_max_iter", _is_int(self.lbfgs_max_iter) and self.lbfgs_max_iter >= 1, pos),
            ("lbfgs_history", _is_int(self.lbfgs_history) and self.lbfgs_history >= 1, pos),
            ("lbfgs_tolerance_grad", _is_num(self.lbfgs_tolerance_grad) and self.lbfgs_tolerance_grad >= 0,
             "a number >= 0 (relative; 0 = never stop on the gradient)"),
            ("lbfgs_tolerance_change",
             _is_num(self.lbfgs_tolerance_change) and self.lbfgs_tolerance_change >= 0,
             "a number >= 0 (relative; 0 = never stop on the change)"),
            ("grad_clip", self.grad_clip is None or (_is_num(self.grad_clip) and self.grad_clip > 0),
             "None or a number > 0"),
            ("seed", _is_int(self.seed), "an integer"),
            ("weight_decay", self.optimizer != "lbfgs" or self.weight_decay == 0,
             "0 with optimizer 'lbfgs' (LBFGS has no weight decay)"),
            ("grid_update_until", self.grid_update_every == 0 or self.grid_update_until > 0,
             "an integer >= 1 when grid_update_every > 0 (updates happen while step < grid_update_until)"),
            ("grid_update_start",
             self.grid_update_every == 0 or self.grid_update_start < self.grid_update_until,
             "an integer below grid_update_until (updates happen from grid_update_start on)"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r} is invalid; allowed: {allowed}")

    @property
    def total_steps(self) -> int:
        """Optimizer steps over all grid stages: steps * max(1, len(grid_stages))."""
        return self.steps * max(1, len(self.grid_stages))
