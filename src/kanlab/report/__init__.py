"""Reports read run folders and the results store: plots, summary tables and a static HTML page."""

import matplotlib


def use_agg_unless_set() -> None:
    """Select matplotlib's Agg backend unless one is already chosen (MPLBACKEND, matplotlib.use, a
    notebook's inline backend): reports render in workers and CI with no display."""
    try:
        chosen = matplotlib.get_backend(auto_select=False)  # type: ignore[call-arg, unused-ignore]
    except TypeError:  # matplotlib < 3.10 has no auto_select
        chosen = matplotlib.rcParams._get_backend_or_none()  # type: ignore[attr-defined, unused-ignore]
    if chosen is None:
        matplotlib.use("Agg")


use_agg_unless_set()  # before any submodule imports pyplot

from kanlab.report.html import write_report  # noqa: E402
from kanlab.report.plots import (  # noqa: E402
    plot_curves,
    plot_edges,
    plot_fit,
    plot_image,
    plot_loss_vs_params,
    plot_run,
)
from kanlab.report.tables import fmt_pm, fmt_sci, summary_table, winner  # noqa: E402

__all__ = [
    "fmt_pm",
    "fmt_sci",
    "plot_curves",
    "plot_edges",
    "plot_fit",
    "plot_image",
    "plot_loss_vs_params",
    "plot_run",
    "summary_table",
    "winner",
    "write_report",
]
