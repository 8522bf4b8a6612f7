"""Studies: study, sweep and tune files, sweep axes and search spaces, expanded into experiments."""

from kanlab._lazy import lazy_names

# The public names, loaded on first use (kanlab._lazy); `X as X` marks a re-export for type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from kanlab.study.config import ExperimentConfig as ExperimentConfig
    from kanlab.study.config import ModelEntry as ModelEntry
    from kanlab.study.config import StudyConfig as StudyConfig
    from kanlab.study.config import load_study as load_study
    from kanlab.study.config import parse_study as parse_study
    from kanlab.study.config import preset_names as preset_names
    from kanlab.study.experiments import expand as expand
    from kanlab.study.sweep import load_sweep as load_sweep
    from kanlab.study.tune_config import load_tune as load_tune

__all__ = ["ExperimentConfig", "ModelEntry", "StudyConfig", "expand", "load_study", "load_sweep",
    "load_tune", "parse_study", "preset_names"]
__getattr__, __dir__ = lazy_names(__name__)
