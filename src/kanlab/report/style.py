"""What every figure shares: style, colours, markers, saving as PNG and SVG, run titles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

DPI = 100
COLORS = [plt.get_cmap("tab10")(i) for i in range(10)]
MARKERS = {"kan": "o", "mlp": "s", "tanhquad": "^", "rbf": "D", "chebyshev": "v", "fourier": "P"}
STYLE: dict[str, Any] = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "svg.fonttype": "none", "image.interpolation": "nearest",
}


def save(fig: Figure, out: Path | str) -> Path:
    """Write <stem>.png (at DPI) and <stem>.svg for an output path stem, close fig, return the PNG."""
    stem = Path(out)
    if stem.suffix.lower() in (".png", ".svg"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.parent / f"{stem.name}.png"
    try:
        with plt.style.context(STYLE):  # some settings are read when saving (svg.fonttype: text stays text)
            fig.savefig(png, dpi=DPI)
            fig.set_layout_engine("none")  # keep the layout just computed: the SVG need not redo it
            fig.savefig(stem.parent / f"{stem.name}.svg")
    finally:
        plt.close(fig)
    return png


def read_json(run_dir: Path, name: str) -> dict[str, Any]:
    """A run folder's JSON file, or {} when it is missing."""
    path = Path(run_dir) / name
    return json.loads(path.read_text()) if path.is_file() else {}


def run_title(run_dir: Path) -> str:
    """"<label> on <task>, seed <seed>" from a run folder's config.json."""
    cfg = read_json(run_dir, "config.json")
    task = cfg.get("task", {})
    name = str(task.get("name", "?"))
    if task.get("kind", "function") != "function":
        name = Path(name).stem
    return f"{cfg.get('label', Path(run_dir).name)} on {name}, seed {cfg.get('seed', '?')}"
