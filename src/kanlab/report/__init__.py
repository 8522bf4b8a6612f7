"""Reports read run folders and the results store: plots, summary tables and a static HTML page."""

import matplotlib

matplotlib.use("Agg")  # before any submodule imports pyplot: reports render in workers and CI, no display

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
