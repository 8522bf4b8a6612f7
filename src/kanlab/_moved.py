"""kanlab 0.1's flat module paths (`kanlab.train`, `kanlab.symbolic_workflow`, ...), kept importable.

Issue 17 moved the top-level modules into subpackages. For one release, importing an old path
gives its new module's names, with a FutureWarning naming the new path; `kanlab.models`,
`kanlab.symbolic` and `kanlab.runs` became packages of the same name and need no alias.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from importlib.machinery import ModuleSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType
    from typing import Any

MOVED = {"kanlab.budget": "kanlab.models.budget", "kanlab.clusters": "kanlab.runs.clusters",
    "kanlab.code_version": "kanlab.study.code_version", "kanlab.config": "kanlab.study.config",
    "kanlab.driver": "kanlab.runs.driver", "kanlab.encodings": "kanlab.tasks.encodings",
    "kanlab.evaluation": "kanlab.training.evaluation", "kanlab.executors": "kanlab.runs.executors",
    "kanlab.formula": "kanlab.symbolic.formulas", "kanlab.interrupts": "kanlab.runs.interrupts",
    "kanlab.layers._compiled": "kanlab.layers.kan._compiled",
    "kanlab.layers._fast": "kanlab.layers.kan._fast",
    "kanlab.layers._fast_dense": "kanlab.layers.kan._fast_dense",
    "kanlab.layers._fast_gather": "kanlab.layers.kan._fast_gather",
    "kanlab.layers._native": "kanlab.layers.kan._native",
    "kanlab.layers._native_gather": "kanlab.layers.kan._native_gather",
    "kanlab.layers.bspline": "kanlab.layers.kan.layer", "kanlab.modelspec": "kanlab.models.spec",
    "kanlab.native_objective": "kanlab.training.native_objective", "kanlab.optim": "kanlab.training.lbfgs",
    "kanlab.polish": "kanlab.symbolic.polish", "kanlab.prune": "kanlab.symbolic.pruning",
    "kanlab.quickfit": "kanlab.training.quickfit",
    "kanlab.regularization": "kanlab.training.regularization",
    "kanlab.search_space": "kanlab.study.search_space", "kanlab.snap": "kanlab.symbolic.snap",
    "kanlab.stats": "kanlab.report.stats", "kanlab.store": "kanlab.runs.store",
    "kanlab.sweep": "kanlab.study.sweep", "kanlab.sweep_axes": "kanlab.study.axes",
    "kanlab.symbolic_layer": "kanlab.symbolic.layer", "kanlab.symbolic_run": "kanlab.runs.symbolic",
    "kanlab.symbolic_workflow": "kanlab.symbolic.workflow", "kanlab.symlib": "kanlab.symbolic.library",
    "kanlab.timing": "kanlab.training.timing", "kanlab.train": "kanlab.training.loop",
    "kanlab.trainconfig": "kanlab.training.config",
    "kanlab.trial_pruning": "kanlab.training.trial_pruning", "kanlab.tune": "kanlab.runs.tune",
    "kanlab.tune_config": "kanlab.study.tune_config"}


class OldPaths:
    """A sys.meta_path finder that answers for the old paths only, after every real module."""

    def find_spec(self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
                  ) -> ModuleSpec | None:
        # a loader by protocol (create_module, exec_module): importlib.abc would cost an import
        return ModuleSpec(name, self) if name in MOVED else None  # type: ignore[arg-type]

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # a plain module, filled by exec_module

    def exec_module(self, module: ModuleType) -> None:
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} moved to {new}: import it from there (the old path goes in a "
                      "later release)", FutureWarning, stacklevel=2)
        real = importlib.import_module(new)

        def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's own name
            return getattr(real, name)

        vars(module)["__getattr__"] = __getattr__  # PEP 562: the module's names are the new module's


def install() -> None:
    """Put the finder on sys.meta_path once (last: real modules always win)."""
    if not any(isinstance(finder, OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(OldPaths())
