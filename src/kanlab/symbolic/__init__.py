"""The KAN paper's symbolic regression: the function library, per-edge fits, the symbolic layer,
snapping, pruning, the formula, constant polishing and the workflow that chains them."""

from kanlab._lazy import lazy_names

# The public names, loaded on first use (kanlab._lazy); `X as X` marks a re-export for type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from kanlab.symbolic.config import LIBRARY as LIBRARY
    from kanlab.symbolic.config import SymbolicConfig as SymbolicConfig
    from kanlab.symbolic.fit import EdgeFit as EdgeFit
    from kanlab.symbolic.fit import fit_function as fit_function
    from kanlab.symbolic.fit import suggest as suggest
    from kanlab.symbolic.formulas import formula as formula
    from kanlab.symbolic.layer import SymbolicKANLinear as SymbolicKANLinear
    from kanlab.symbolic.polish import polish_constants as polish_constants
    from kanlab.symbolic.pruning import PruneReport as PruneReport
    from kanlab.symbolic.pruning import prune as prune
    from kanlab.symbolic.snap import auto_fix as auto_fix
    from kanlab.symbolic.snap import fix_edge as fix_edge
    from kanlab.symbolic.snap import symbolize as symbolize
    from kanlab.symbolic.workflow import WorkflowResult as WorkflowResult
    from kanlab.symbolic.workflow import symbolic_workflow as symbolic_workflow

__all__ = ["EdgeFit", "LIBRARY", "PruneReport", "SymbolicConfig", "SymbolicKANLinear", "WorkflowResult",
    "auto_fix", "fit_function", "fix_edge", "formula", "polish_constants", "prune", "suggest",
    "symbolic_workflow", "symbolize"]
__getattr__, __dir__ = lazy_names(__name__)
