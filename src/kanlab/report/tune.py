"""The tune report: the search (trials per model, best value against trial) and the verdict.

Reads the tune's manifest (`<root>/<name>/tune.json`, written by kanlab.runs.tune) and the results
store. The verdict is the sweep report's statistics (kanlab.report.sweep) over the verdict runs
only: each model's best configuration retrained on seeds the search never used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from kanlab.report.parts import figure, table, write_page
from kanlab.report.style import COLORS, MARKERS, STYLE, save
from kanlab.report.sweep import cell_table, group_cells, paired_table, prepare_rows
from kanlab.report.tables import BASELINE_FAMILY, fmt_sci, fmt_time, with_flops
from kanlab.report.verdict import verdict_table
from kanlab.runs.store import ResultsStore

Row = dict[str, Any]
STATUSES = ("finished", "pruned", "diverged", "failed")


def trial_rows(store: ResultsStore, manifest: Mapping[str, Any]) -> dict[str, list[Row]]:
    """The recorded trial runs of each study in a manifest, by study name, in trial order."""
    out: dict[str, list[Row]] = {s["name"]: [] for s in manifest["studies"]}
    metric = manifest["settings"]["metric"]
    for row in store.runs(manifest["search_experiment"]):
        trial = json.loads(row["config_json"]).get("trial") or {}
        if trial.get("study") in out:
            value = json.loads(row["final_json"]).get(metric)
            out[trial["study"]].append({**row, "trial": trial["number"], "params": trial["params"],
                                        "value": value})
    return {name: sorted(rows, key=lambda r: r["trial"]) for name, rows in out.items()}


def _params_text(params: Mapping[str, Any] | None) -> str:
    if not params:
        return "n/a"
    return ", ".join(f"{k}={fmt_sci(v) if isinstance(v, float) else v}" for k, v in sorted(params.items()))


def best_so_far(rows: Sequence[Row], minimize: bool) -> list[tuple[float, float]]:
    """(trial, best finished value up to it) for each trial from the first finished one on."""
    out: list[tuple[float, float]] = []
    best = None
    for r in rows:
        v = r["value"]
        if r["status"] == "finished" and v is not None and math.isfinite(v):
            best = v if best is None or (v < best if minimize else v > best) else best
        if best is not None:
            out.append((r["trial"], best))
    return out


def search_figure(studies: Sequence[Mapping[str, Any]], rows: Mapping[str, list[Row]], metric: str,
                  minimize: bool, png: Path) -> Path:
    """Each finished trial's metric against its number, and each model's best so far (a step line)."""
    with plt.style.context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
        for n, study in enumerate(studies):
            runs, color = rows[study["name"]], COLORS[n % len(COLORS)]
            done = [r for r in runs if r["status"] == "finished" and r["value"] is not None]
            ax.scatter([r["trial"] for r in done], [r["value"] for r in done], color=color, s=18, alpha=0.6,
                       marker=MARKERS.get(study["family"], "o"))
            line = best_so_far(runs, minimize)
            if line:  # held half a trial past the last one, so that its value shows as a step too
                line.append((line[-1][0] + 0.5, line[-1][1]))
            ax.step([x for x, _ in line], [y for _, y in line], where="post", color=color, lw=1.6,
                    label=study["label"])
        positive = all(r["value"] > 0 for rs in rows.values() for r in rs if r["value"] is not None)
        ax.set(xlabel="trial", ylabel=metric, yscale="log" if positive else "linear",
               title=f"{studies[0]['task']}: {metric} of each finished trial, and the best so far")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        return save(fig, png)


def _search_table(studies: Sequence[Mapping[str, Any]], rows: Mapping[str, list[Row]], budget: str) -> str:
    body = []
    for study in studies:
        runs = rows[study["name"]]
        counts = [str(sum(r["status"] == s for r in runs)) for s in STATUSES]
        seconds = sum(r["wall_time"] or 0.0 for r in runs)
        best = study["best"]
        body.append([study["label"], study["family"], f"{len(runs)} ({budget})", *counts, fmt_time(seconds),
                     fmt_sci(best["value"]) if best else "n/a", str(best["number"]) if best else "n/a",
                     _params_text(best["params"] if best else None)])
    head = ["Model", "Family", "Trials (budget)", *(s.capitalize() for s in STATUSES), "Training time",
            "Best value", "Best trial", "Best configuration"]
    return table(head, body, 2)


def _space_table(studies: Sequence[Mapping[str, Any]]) -> str:
    body = [[s["label"], "; ".join(f"{k}: {v}" for k, v in s["space"]["search"].items()) or "nothing",
             _params_text(s["space"]["fixed"]) if s["space"]["fixed"] else "", json.dumps(s["pruner"])]
            for s in studies]
    return table(["Model", "Searched", "Fixed by [search]", "Pruner"], body, 4)


def _verdict(db_path: Path, manifest: Mapping[str, Any], task: str) -> str:
    studies = [s for s in manifest["studies"] if s["task"] == task]
    ids = {run_id for s in studies for run_id in s["verdict_runs"]}
    with ResultsStore(db_path) as store:
        rows = [r for r in store.runs(manifest["name"]) if r["run_id"] in ids]
    if not rows:
        return '<p class="note">No verdict runs: no model finished a trial.</p>'
    prepared, names = prepare_rows(with_flops(rows))
    cells = group_cells(prepared, names)
    return (verdict_table(prepared) + "<details><summary>Each model over the seeds, and paired with each "
            f"{BASELINE_FAMILY}</summary>" + cell_table(cells, names)
            + f"<h4>Paired comparison with the {BASELINE_FAMILY}, by seed</h4>"
            + paired_table(cells, names, {}) + "</details>")


def tune_section(db_path: Path, manifest_path: Path, out_dir: Path) -> str:
    """The tune's search and verdict as an HTML fragment (plots embedded, also saved in out_dir)."""
    manifest = json.loads(Path(manifest_path).read_text())
    settings = manifest["settings"]
    metric, minimize = settings["metric"], manifest["direction"] == "minimize"
    with ResultsStore(db_path) as store:
        rows = trial_rows(store, manifest)
    budget, seed = escape(str(settings["per_family"])), settings.get("seed", 0)
    startup, per_round = settings.get("startup_trials", 5), settings.get("trials_per_round", 2)
    pruner = escape(str(settings.get("pruner", {}).get("kind", "median")))
    if metric.startswith("val_"):
        held = settings.get("validation") or "its own share"
        data = (f"Trials are ranked on a validation set that each task holds out of its training data "
                f"({held}, unless the task sets its own val_fraction: a function draws points of its own, an "
                "image holds pixels out of training, a table training rows, stratified by class), never on "
                "the test set. The verdict runs give the validation data back to training and are judged on "
                "the test set alone.")
    else:
        data = (f"Trials are ranked by {escape(metric)}, not on a validation set: the data that ranked the "
                "trials also judges the winners.")
    note = (
        f"Every model gets the same search budget on every task ({budget}): Optuna's TPE sampler (seed "
        f"{seed}, {startup} random trials first, {per_round} trials per round) ranks trials by "
        f"{escape(metric)} ({'lower' if minimize else 'higher'} is better), and the {pruner} pruner stops "
        f"trials early on the same metric's curve against the finished trials of earlier rounds. {data} "
        f"Trials train on seed(s) {settings.get('search_seeds', [0])}. Each model's best trial (its model "
        f"and training settings) is then retrained on seeds {manifest['seeds']}, which the search never "
        "used, and only those runs make the verdict. Widths are matched to each model's budget (by its "
        "match: parameters, FLOPs or time per step) at each trial's depth and options, so every trial of a "
        "model has the same size."
    )
    parts = [f'<section class="tune"><h2>Tuning: {escape(manifest["name"])}</h2>',
             f'<p class="note">{note}</p>']
    for n, task in enumerate(dict.fromkeys(s["task"] for s in manifest["studies"])):
        studies = [s for s in manifest["studies"] if s["task"] == task]
        png = search_figure(studies, rows, metric, minimize, Path(out_dir) / "plots" / f"tune-search-{n}")
        caption = "Each finished trial's value (dots) and each model's best so far (lines), by trial number."
        parts += [f"<h3>{escape(task)}: the search</h3>",
                  _search_table(studies, rows, settings["per_family"]),
                  '<div class="plots">' + figure(png, caption) + "</div>",
                  "<details><summary>Search spaces</summary>" + _space_table(studies) + "</details>",
                  f"<h3>{escape(task)}: the verdict (best configurations, fresh seeds)</h3>",
                  _verdict(Path(db_path), manifest, task)]
    parts.append("</section>")
    return "\n".join(parts)


def write_tune_report(db_path: Path, manifest_path: Path, out_dir: Path) -> Path:
    """Write out_dir/report.html: a self-contained page holding the tune section.

    Args:
        db_path: the results database.
        manifest_path: the tune's tune.json.
        out_dir: output folder (created).
    Returns:
        The path of report.html.
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    name = json.loads(Path(manifest_path).read_text())["name"]
    return write_page(Path(out_dir), f"kanlab tune: {name}", tune_section(Path(db_path), Path(manifest_path),
                                                                          Path(out_dir)))
