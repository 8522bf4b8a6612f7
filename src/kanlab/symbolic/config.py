"""SymbolicConfig: the settings of the symbolic workflow, and the training config of each stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kanlab.symbolic import library as symlib
from kanlab.training.config import TrainConfig

LIBRARY = ("x", "x^2", "x^3", "x^4", "exp", "log", "sqrt", "tanh", "sin", "abs", "0")


@dataclass(frozen=True)
class SymbolicConfig:
    """Settings of symbolic_workflow; the TrainConfig of each stage is derived from them.

    Attributes:
        steps: LBFGS steps of each spline training stage (train, retrain, refine).
        sparsity, sparsity_l1, sparsity_entropy: the first stage's regulariser (TrainConfig's).
        grid_update_every: grid updates in the spline stages (every k steps, first half only; 0 = off).
        prune_threshold: node score threshold of prune (None skips pruning).
        refine_grid: grid size to refine to before fixing (None skips).
        library: symlib names auto-fix chooses from.
        r2_threshold: R^2 an edge's best fit needs to be fixed.
        final_steps: LBFGS steps on the symbolic constants, in float64.
        polish: then Levenberg-Marquardt on them to machine precision (polish.polish_constants).
        precision: decimal places of the printed formula.
        seed: TrainConfig.seed of every stage.
    """

    steps: int = 50
    sparsity: float = 2e-2
    sparsity_l1: float = 1.0
    sparsity_entropy: float = 2.0
    grid_update_every: int = 10
    prune_threshold: float | None = 1e-2
    refine_grid: int | None = 10
    library: tuple[str, ...] = LIBRARY
    r2_threshold: float = 0.9
    final_steps: int = 50
    polish: bool = True
    precision: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("prune_threshold", "refine_grid"):  # TOML has no null: presets write "none"
            if str(getattr(self, name)).lower() == "none":
                object.__setattr__(self, name, None)
        object.__setattr__(self, "library", symlib.check_names(list(self.library)))
        for name in ("steps", "final_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"SymbolicConfig.{name} must be an integer >= 0, got {v!r}")
        if isinstance(self.precision, bool) or not isinstance(self.precision, int) or self.precision < 0:
            raise ValueError(f"SymbolicConfig.precision must be an integer >= 0, got {self.precision!r}")

    def stage(self, steps: int, *, grid_updates: bool = False, **changes: Any) -> TrainConfig:
        """The TrainConfig of one stage: full-batch LBFGS in float64 with `changes`.

        Args:
            steps: optimizer steps.
            grid_updates: move each KAN layer's knots to its inputs every grid_update_every
                steps during the first half of the stage (the spline stages: the inputs of
                later layers drift as earlier layers train).
            changes: further TrainConfig fields.
        """
        if grid_updates and self.grid_update_every:
            changes = {"grid_update_every": self.grid_update_every, "grid_update_until": max(1, steps // 2),
                       **changes}
        return TrainConfig(optimizer="lbfgs", lr=1.0, steps=steps, dtype="float64",
                           eval_every=max(1, steps), seed=self.seed, **changes)
