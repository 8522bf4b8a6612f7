"""Reports read run folders and the results store: plots, summary tables and a static HTML page."""

from kanlab.report.html import write_report
from kanlab.report.plots import (
    plot_curves,
    plot_edges,
    plot_fit,
    plot_image,
    plot_loss_vs_params,
    plot_run,
)
from kanlab.report.tables import fmt_pm, fmt_sci, summary_table, winner

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
