"""Pictures of a live model, for notebooks and scripts: each function returns a matplotlib Figure.

    from kanlab import plot
    plot.edges(model, x)          # every learned edge function of every per-edge layer
    plot.fit(model, data)         # test predictions against targets (curve, maps or image)
    plot.curves(history)          # loss curves on a log axis (or {label: History})

They are the report's own pictures (`kanlab report`, `kanlab plot RUN_DIR` draw through the same
code from a run folder's arrays). None calls plt.show(): a notebook displays the returned figure,
a script saves it with fig.savefig(path). Importing this module selects matplotlib's Agg backend
only when no backend is chosen yet, so a notebook's inline backend is kept.
"""

from kanlab.report.live import curves, edges, fit

__all__ = ["curves", "edges", "fit"]
