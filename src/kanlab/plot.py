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

import sys

from kanlab.report.live import curves, edges, fit

__all__ = ["curves", "edges", "fit"]


def _show_figures_inline() -> None:
    """In an IPython kernel on an inline backend, load that backend so that a returned Figure displays.

    The figures here are not pyplot's, so nothing else imports the backend module, and it is its
    import that registers IPython's PNG display of Figures: without this a cell shows `<Figure ...>`.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None or ipython.get_ipython() is None:
        return
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    if "inline" in backend:
        plt.switch_backend(backend)


_show_figures_inline()
