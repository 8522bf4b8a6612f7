"""Runs: execute one experiment into its folder, the results store, the driver, executors and
clusters, and tuning.

The old module kanlab.runs (one file) is this package: its names keep working from here."""

from kanlab._lazy import lazy_names

TYPE_CHECKING = False  # the public names, loaded on first use (kanlab._lazy)
if TYPE_CHECKING:
    from kanlab.models.edges import EDGE_POINTS, edge_arrays
    from kanlab.runs.driver import run_experiments
    from kanlab.runs.experiment import build_model, evaluate_run, execute, load_run
    from kanlab.runs.outputs import (
        CLASS_METRICS,
        DTYPES,
        VAL_METRICS,
        RunState,
        data_summary,
        inside,
        load_data,
        read_config,
        run_folder,
        spec_flops,
        write_outputs,
    )
    from kanlab.runs.store import ResultsStore
    from kanlab.study.experiments import expand, match_entry, matched_widths, task_label
    from kanlab.training.threads import torch_threads

__all__ = ["CLASS_METRICS", "DTYPES", "EDGE_POINTS", "ResultsStore", "RunState", "VAL_METRICS",
    "build_model", "data_summary", "edge_arrays", "evaluate_run", "execute", "expand", "inside",
    "load_data", "load_run", "match_entry", "matched_widths", "read_config", "run_experiments",
    "run_folder", "spec_flops", "task_label", "torch_threads", "write_outputs"]
__getattr__, __dir__ = lazy_names(__name__)
