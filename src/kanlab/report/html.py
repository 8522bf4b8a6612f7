"""A single self-contained HTML report of one experiment, read from the results store and run folders.

Inline CSS, no scripts, no external resources: every plot is embedded as a base64 PNG data URI,
so the file can be mailed or opened offline. All text from configs and messages is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from kanlab.report.grid_scaling import grid_series, grid_table, plot_grid_scaling
from kanlab.report.parts import CSS, ROW_PX, figure, png_width, read_experiment, row, run_folder, slug
from kanlab.report.plots import plot_curves, plot_edges, plot_fit, plot_image, plot_loss_vs_params
from kanlab.report.symbolic import symbolic_section
from kanlab.report.tables import (
    fmt_fixed,
    fmt_params,
    fmt_pm,
    fmt_sci,
    fmt_time,
    summary_table,
    task_name,
    winner,
)


def _representative(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    done = sorted((r for r in runs if r["status"] == "finished" and r["test_loss"] is not None),
                  key=lambda r: (r["test_loss"], r["seed"]))
    return done[(len(done) - 1) // 2] if done else None  # the lower median for an even count


def _headline(task: str, win: dict[str, Any] | None) -> str:
    if win is None:
        return f"On {task}, no run finished, so there is no winner."
    best, rival = win["best"], win["rival"]
    text = (f"On {task}, the best model is {best['label']} ({best['family']}, ~{fmt_params(best['params'])} "
            f"parameters) with test MSE {fmt_pm(best['test_loss_mean'], best['test_loss_std'])}")
    if best["psnr_mean"] is not None:
        text += f" (PSNR {fmt_fixed(best['psnr_mean'], None)} dB)"
    if rival is None:
        return text + (": no other family ran on this task." if win["best_is_mlp"]
                       else ": no MLP ran on this task to compare with.")
    versus = (f"{rival['label']} ({rival['family']}, ~{fmt_params(rival['params'])} parameters, test MSE "
              f"{fmt_sci(rival['test_loss_mean'])})")
    factor = f"{win['factor']:.3g} times"
    if win["best_is_mlp"]:
        return text + f"; the best non-MLP model, {versus}, is {factor} higher."
    return text + f", {factor} lower than the best MLP, {versus}."


def _table(lines: Sequence[dict[str, Any]], best_label: str | None) -> str:
    image = any(s["psnr_mean"] is not None for s in lines)
    heads = ["Label", "Family", "Parameters", "Train MSE", "Test MSE"] + (["PSNR (dB)"] if image else [])
    heads += ["Time / step", "Total time", "Finished seeds", "Diverged / failed"]
    body = []
    for s in lines:
        cells = [s["label"], s["family"], fmt_params(s["params"])]
        cells += [fmt_pm(s[f"{k}_mean"], s[f"{k}_std"]) for k in ("train_loss", "test_loss")]
        cells += [fmt_fixed(s["psnr_mean"], s["psnr_std"])] if image else []
        cells += [fmt_time(s["time_per_step"]), fmt_time(s["total_time"]),
                  f"{s['n_finished']} / {s['n_seeds']}", f"{s['n_diverged']} / {s['n_failed']}"]
        body.append(row(cells, 2, cls="best" if s["label"] == best_label else ""))
    head = row(heads, 2, "th")
    return f'<table class="summary"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


NOTE = ("Mean ± sample std (ddof=1) over finished seeds; diverged and failed runs are left out of the means "
        "but their time counts in the total. Time / step is the median over runs.")


def _task_section(n: int, task_rows: list[dict[str, Any]], lines: list[dict[str, Any]],
                  win: dict[str, Any] | None, curves: dict[str, list[dict[str, Any]]], db_path: Path,
                  plots: Path) -> str:
    task = task_name(task_rows[0])
    stem = plots / f"t{n}-{slug(task)}"
    kind = escape(task_rows[0]["task_kind"])
    parts = [f'<h2 id="task-{n}">Task: {escape(task)} <span class="note">({kind})</span></h2>',
             f'<p class="headline">{escape(_headline(task, win))}</p>',
             _table(lines, win["best"]["label"] if win else None), f'<p class="note">{escape(NOTE)}</p>',
             _stages(task_rows, stem), symbolic_section(task_rows, db_path, stem)]
    run_curves = [(r["label"], curves[r["run_id"]]) for r in task_rows]
    curve_png = plot_curves(run_curves, f"{stem}-curves", title=f"{task}: test MSE during training")
    size_png = plot_loss_vs_params(task_rows, f"{stem}-params", title=f"{task}: final test MSE vs size")
    parts.append('<div class="plots">'
                 + figure(curve_png, "Test MSE against step; thin lines: seeds, bold line: their median.")
                 + figure(size_png, "Final test MSE against parameters; bars: std over seeds.") + "</div>")
    for m, line in enumerate(lines):
        rep = _representative([r for r in task_rows if r["label"] == line["label"]])
        parts.append(f"<h3>{escape(line['label'])}</h3>")
        folder = run_folder(rep, db_path) if rep else None
        if rep is None or folder is None:
            why = "no finished run" if rep is None else f"run folder of {rep['run_id']} not found"
            parts.append(f'<p class="note">No plots: {escape(why)}.</p>')
            continue
        label_stem = f"{stem}-l{m}-{slug(line['label'])}"
        fit = plot_image(folder, f"{label_stem}-image") or plot_fit(folder, f"{label_stem}-fit")
        edges = plot_edges(folder, f"{label_stem}-edges")
        done = line["n_finished"]
        which = "the only finished seed" if done == 1 else f"the median test MSE of {done} finished seeds"
        caption = f"Seed {rep['seed']} ({which}), run {rep['run_id']}"
        edge_caption = f"Learned edge functions of the same run ({rep['run_id']})"
        shown = [(p, c) for p, c in ((fit, caption), (edges, edge_caption)) if p]
        # side by side when both fit at >= ~70% of their size, else one per row
        together = sum(png_width(p) for p, _ in shown) <= ROW_PX
        for group in [shown] if together else [[item] for item in shown]:
            figures = "".join(figure(p, c, natural=True) for p, c in group)
            parts.append(f'<div class="plots">{figures}</div>')
    return "\n".join(parts)


def _stages(task_rows: Sequence[dict[str, Any]], stem: Path) -> str:
    """Train/test RMSE at each grid size of runs that refined their grid (the KAN paper's Fig. 2.3):
    the log-log figure and table of the medians over seeds, then each run's stages."""
    out = []
    series = grid_series(task_rows)
    if series:
        title = f"{task_name(task_rows[0])}: RMSE vs grid size"
        png = plot_grid_scaling(series, Path(f"{stem}-grid.png"), title)
        caption = ("Median over finished seeds of the RMSE at the end of each grid stage (solid: test, "
                   "dashed: train), the slope of a least-squares line through log RMSE against log G, "
                   "and dotted, G^-4 from the first grid's test RMSE (cubic splines' rate).")
        out.append(f'<h3>Grid extension: RMSE against grid size</h3><div class="plots">{figure(png, caption)}'
                   f"</div>{grid_table(series)}")
    for r in task_rows:
        stages = json.loads(r["final_json"] or "{}").get("stages") or []
        if len(stages) < 2:
            continue
        head = row(("Grid size", "Step", "Train RMSE", "Test RMSE"), 0, "th")
        body = "".join(row((str(st["grid_size"]), str(st["step"]), fmt_sci(st["train_rmse"]),
                             fmt_sci(st["test_rmse"])), 0) for st in stages)
        out.append(f"<h3>Grid extension: {escape(r['label'])}, seed {r['seed']}</h3>"
                   f'<table class="stages"><thead>{head}</thead><tbody>{body}</tbody></table>')
    return "\n".join(out)


def _failures(rows: Sequence[dict[str, Any]]) -> str:
    bad = [r for r in rows if r["status"] != "finished"]
    if not bad:
        return '<p class="note">Every run finished.</p>'
    body = "".join(
        f'<tr><td class="text">{escape(task_name(r))}</td><td class="text">{escape(r["label"])}</td>'
        f'<td class="text">{r["seed"]}</td><td class="text">{escape(r["status"])}</td>'
        f'<td class="text">{escape(str(r["steps"]))}</td>'
        f'<td class="msg">{escape(r["message"] or "(no message)")}'
        f'<br><span class="note">{escape(r["run_id"])}</span></td></tr>' for r in bad)
    head = row(("Task", "Label", "Seed", "Status", "Steps", "Message"), 6, "th")
    return (f'<div class="alert" id="failures"><h2>{len(bad)} run(s) diverged, failed or found no '
            f'formula</h2>'
            f"<table><thead>{head}</thead><tbody>{body}</tbody></table></div>")


def _configs(rows: Sequence[dict[str, Any]]) -> str:
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        runs = [r for r in rows if r["label"] == label]
        blocks = []
        for task in dict.fromkeys(r["task"] for r in runs):
            of_task = [r for r in runs if r["task"] == task]
            config = json.loads(of_task[0]["config_json"])
            config = {k: v for k, v in config.items() if k not in ("run_id", "seed")}
            config["seeds"] = sorted(r["seed"] for r in of_task)
            text = escape(json.dumps(config, indent=2))
            blocks.append(f"<h4>{escape(task_name(of_task[0]))}</h4><pre>{text}</pre>")
        summary = f"{label} ({runs[0]['family']}, {len(runs)} runs)"
        out.append(f"<details><summary>{escape(summary)}</summary>{''.join(blocks)}</details>")
    return "\n".join(out)


def write_report(db_path: Path, experiment: str, out_dir: Path, *, title: str | None = None) -> Path:
    """Write out_dir/report.html for one experiment (plots go to out_dir/plots/ and are embedded).

    Args:
        db_path: the results database.
        experiment: the experiment's name in the store.
        out_dir: output folder (created).
        title: page title (default "kanlab report: <experiment>").
    Returns:
        The path of report.html.
    """
    db_path, out_dir = Path(db_path), Path(out_dir)
    rows, curves = read_experiment(db_path, experiment)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    summary = summary_table(rows)
    wins = {w["task"]: w for w in winner(rows)}
    tasks = list(dict.fromkeys(s["task"] for s in summary))
    title = title or f"kanlab report: {experiment}"
    names = {r["task"]: task_name(r) for r in rows}
    heads = "".join(f'<p class="headline">{escape(_headline(names[t], wins.get(t)))} '
                    f'<a href="#task-{n}">Details</a></p>' for n, t in enumerate(tasks))
    sections = [_task_section(n, [r for r in rows if r["task"] == t], [s for s in summary if s["task"] == t],
                              wins.get(t), curves, db_path, plots) for n, t in enumerate(tasks)]
    versions = sorted({", ".join(f"{k} {v}" for k, v in json.loads(r["versions_json"]).items())
                       for r in rows})
    total = sum(r["wall_time"] or 0.0 for r in rows)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body><main>
<h1>{escape(title)}</h1>
<p class="sub">{len(rows)} runs, {len(tasks)} task(s), {len({r["label"] for r in rows})} model(s);
{escape(fmt_time(total))} of training in all. Does a KAN beat an MLP here, and at what cost?</p>
{heads}
{_failures(rows)}
{"".join(sections)}
<h2>Resolved configurations</h2>
{_configs(rows)}
<footer>Generated {escape(now)} from {escape(str(db_path))}, experiment {escape(experiment)}.
Versions: {escape("; ".join(versions))}</footer>
</main></body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
