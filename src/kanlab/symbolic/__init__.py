"""The KAN paper's symbolic regression: the function library, per-edge fits, the symbolic layer,
snapping, pruning, the formula, constant polishing and the workflow that chains them."""

from kanlab._lazy import lazy_names

TYPE_CHECKING = False  # the public names, loaded on first use (kanlab._lazy)
if TYPE_CHECKING:
    from kanlab.symbolic.config import LIBRARY, SymbolicConfig
    from kanlab.symbolic.fit import EdgeFit, fit_function, suggest
    from kanlab.symbolic.formulas import formula
    from kanlab.symbolic.layer import SymbolicKANLinear
    from kanlab.symbolic.polish import polish_constants
    from kanlab.symbolic.pruning import PruneReport, prune
    from kanlab.symbolic.snap import auto_fix, fix_edge, symbolize
    from kanlab.symbolic.workflow import WorkflowResult, symbolic_workflow

__all__ = ["EdgeFit", "LIBRARY", "PruneReport", "SymbolicConfig", "SymbolicKANLinear", "WorkflowResult",
    "auto_fix", "fit_function", "fix_edge", "formula", "polish_constants", "prune", "suggest",
    "symbolic_workflow", "symbolize"]
__getattr__, __dir__ = lazy_names(__name__)
