"""Training: the loop (one closure step for every optimizer), its config, LBFGS, sparsity
regularisation, evaluation, the native objective and time-per-step measurement."""

from kanlab._lazy import lazy_names

# The public names, loaded on first use (kanlab._lazy); `X as X` marks a re-export for type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from kanlab.training.config import TrainConfig as TrainConfig
    from kanlab.training.evaluation import Data as Data
    from kanlab.training.evaluation import evaluate as evaluate
    from kanlab.training.lbfgs import LBFGS as LBFGS
    from kanlab.training.loop import History as History
    from kanlab.training.loop import train as train
    from kanlab.training.loop import update_grids as update_grids

__all__ = ["Data", "History", "LBFGS", "TrainConfig", "evaluate", "train", "update_grids"]
__getattr__, __dir__ = lazy_names(__name__)
