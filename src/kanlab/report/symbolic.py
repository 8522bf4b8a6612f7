"""The report's section for symbolic runs: stages, pruning, the formula and the edges at each stage.

Reads a run folder's symbolic/ (written by kanlab.runs.symbolic): symbolic.json and one
`<k>-<stage>/edges.npz` per stage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from kanlab.report.parts import figure, row, run_folder, slug
from kanlab.report.plots import plot_edges
from kanlab.report.tables import fmt_sci

HEAD = ("Stage", "Widths", "What happened", "Steps so far", "Parameters", "Train RMSE", "Test RMSE")


def _stage_table(stages: Sequence[dict[str, Any]]) -> str:
    body = "".join(row((s["name"], "-".join(map(str, s["widths"])), s["note"], str(s["step"]),
                        str(s["params"]), fmt_sci(s["train_rmse"]), fmt_sci(s["test_rmse"])), 3)
                   for s in stages)
    return f'<table class="stages"><thead>{row(HEAD, 3, "th")}</thead><tbody>{body}</tbody></table>'


def _formula(summary: dict[str, Any], error: float | None) -> str:
    if summary["formula"] is None:
        return ('<p class="headline">No formula: some edges stayed splines (their best symbolic fit '
                "was below the R² threshold; see the edge choices below).</p>")
    err = "" if error is None else f" It matches the model's output to {fmt_sci(error)} on the test inputs."
    return (f'<p class="headline">Recovered formula: <code>{escape(summary["formula"])}</code>.{err}</p>'
            f'<p class="note">LaTeX: <code>{escape(summary["formula_latex"])}</code><br>'
            f'Full precision: <code>{escape(summary["exact_formula"])}</code></p>')


def _run_part(r: dict[str, Any], folder: Path, stem: Path) -> str:
    summary = json.loads((folder / "symbolic" / "symbolic.json").read_text())
    final = json.loads(r["final_json"] or "{}")
    parts = [f"<h3>Symbolic workflow: {escape(r['label'])}, seed {r['seed']}</h3>",
             _formula(summary, final.get("formula_error")), _stage_table(summary["stages"])]
    if summary["prune"] is not None:
        parts.append(f'<p class="note">Pruning: {escape(summary["prune"]["text"])}</p>')
    if summary["choices"]:
        items = "".join(f"<li><code>{escape(c)}</code></li>" for c in summary["choices"])
        parts.append(f"<details><summary>Edge choices ({len(summary['choices'])})</summary>"
                     f"<ul>{items}</ul></details>")
    figures = []
    for k, stage in enumerate(summary["stages"]):
        stage_dir = folder / "symbolic" / f"{k}-{stage['name']}"
        title = (f"after {stage['name']}: widths {list(stage['widths'])}, "
                 f"test RMSE {fmt_sci(stage['test_rmse'])}")
        png = plot_edges(stage_dir, f"{stem}-{k}-{slug(stage['name'])}", title=title)
        figures.append(figure(png, f"Stage {k}: {stage['name']}. {stage['note']}"))
    parts.append(f'<div class="plots">{"".join(figures)}</div>')
    return "\n".join(parts)


def symbolic_section(task_rows: Sequence[dict[str, Any]], db_path: Path, stem: Path) -> str:
    """HTML for every symbolic run of one task that ran to its end ("" when there is none).

    Args:
        task_rows: the store's rows of the task.
        db_path: the results database (run folders are found next to it if moved).
        stem: path stem for the plots (one per run and stage).
    """
    out = []
    for n, r in enumerate(task_rows):
        folder = run_folder(r, db_path) if r["status"] in ("finished", "no_formula") else None
        if folder is not None and (folder / "symbolic" / "symbolic.json").is_file():
            out.append(_run_part(r, folder, Path(f"{stem}-sym{n}")))
    return "\n".join(out)
