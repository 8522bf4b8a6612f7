"""Training: the loop (one closure step for every optimizer), its config, LBFGS, sparsity
regularisation, evaluation, the native objective and time-per-step measurement."""

from kanlab._lazy import lazy_names

TYPE_CHECKING = False  # the public names, loaded on first use (kanlab._lazy)
if TYPE_CHECKING:
    from kanlab.training.config import TrainConfig
    from kanlab.training.evaluation import Data, evaluate
    from kanlab.training.lbfgs import LBFGS
    from kanlab.training.loop import History, train, update_grids

__all__ = ["Data", "History", "LBFGS", "TrainConfig", "evaluate", "train", "update_grids"]
__getattr__, __dir__ = lazy_names(__name__)
