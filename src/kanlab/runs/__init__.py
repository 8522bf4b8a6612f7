"""Runs: execute one experiment into its folder, the results store, the driver, executors and
clusters, and tuning.

The old module kanlab.runs (one file) is this package: its names keep working from here."""

from kanlab._lazy import lazy_names

# The public names, loaded on first use (kanlab._lazy); `X as X` marks a re-export for type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from kanlab.models.edges import EDGE_POINTS as EDGE_POINTS
    from kanlab.models.edges import edge_arrays as edge_arrays
    from kanlab.runs.driver import run_experiments as run_experiments
    from kanlab.runs.experiment import build_model as build_model
    from kanlab.runs.experiment import evaluate_run as evaluate_run
    from kanlab.runs.experiment import execute as execute
    from kanlab.runs.experiment import load_run as load_run
    from kanlab.runs.outputs import CLASS_METRICS as CLASS_METRICS
    from kanlab.runs.outputs import DTYPES as DTYPES
    from kanlab.runs.outputs import VAL_METRICS as VAL_METRICS
    from kanlab.runs.outputs import RunState as RunState
    from kanlab.runs.outputs import data_summary as data_summary
    from kanlab.runs.outputs import inside as inside
    from kanlab.runs.outputs import load_data as load_data
    from kanlab.runs.outputs import read_config as read_config
    from kanlab.runs.outputs import run_folder as run_folder
    from kanlab.runs.outputs import spec_flops as spec_flops
    from kanlab.runs.outputs import write_outputs as write_outputs
    from kanlab.runs.store import ResultsStore as ResultsStore
    from kanlab.study.experiments import expand as expand
    from kanlab.study.experiments import match_entry as match_entry
    from kanlab.study.experiments import matched_widths as matched_widths
    from kanlab.study.experiments import task_label as task_label
    from kanlab.training.threads import torch_threads as torch_threads

__all__ = ["CLASS_METRICS", "DTYPES", "EDGE_POINTS", "ResultsStore", "RunState", "VAL_METRICS",
    "build_model", "data_summary", "edge_arrays", "evaluate_run", "execute", "expand", "inside",
    "load_data", "load_run", "match_entry", "matched_widths", "read_config", "run_experiments",
    "run_folder", "spec_flops", "task_label", "torch_threads", "write_outputs"]
__getattr__, __dir__ = lazy_names(__name__)
