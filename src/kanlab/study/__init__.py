"""Studies: study, sweep and tune files, sweep axes and search spaces, expanded into experiments."""

from kanlab._lazy import lazy_names

TYPE_CHECKING = False  # the public names, loaded on first use (kanlab._lazy)
if TYPE_CHECKING:
    from kanlab.study.config import (
        ExperimentConfig,
        ModelEntry,
        StudyConfig,
        load_study,
        parse_study,
        preset_names,
    )
    from kanlab.study.experiments import expand
    from kanlab.study.sweep import load_sweep
    from kanlab.study.tune_config import load_tune

__all__ = ["ExperimentConfig", "ModelEntry", "StudyConfig", "expand", "load_study", "load_sweep",
    "load_tune", "parse_study", "preset_names"]
__getattr__, __dir__ = lazy_names(__name__)
