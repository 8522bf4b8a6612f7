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

from kanlab.report.classes import class_balance, plot_confusion
from kanlab.report.grid_scaling import grid_series, grid_table, plot_grid_scaling
from kanlab.report.pareto import PARETO_CAPTION, pareto_figure
from kanlab.report.parts import (
    CSS,
    ROW_PX,
    by_config,
    figure,
    left_out_note,
    png_width,
    read_experiment,
    row,
    run_folder,
    slug,
)
from kanlab.report.plots import plot_curves, plot_edges, plot_fit, plot_image, plot_loss_vs_params
from kanlab.report.symbolic import symbolic_section
from kanlab.report.tables import (
    code_versions,
    data_version,
    fmt_fixed,
    fmt_flops,
    fmt_params,
    fmt_pm,
    fmt_sci,
    fmt_time,
    loss_name,
    summary_table,
    targets_of,
    task_file,
    task_labels,
    task_name,
    winner,
    with_flops,
)
from kanlab.report.verdict import verdict_table
from kanlab.study.config import ExperimentConfig


def _representative(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    done = sorted((r for r in runs if r["status"] == "finished" and r["test_loss"] is not None),
                  key=lambda r: (r["test_loss"], r["seed"]))
    return done[(len(done) - 1) // 2] if done else None  # the lower median for an even count


def _accuracy(line: dict[str, Any]) -> str:
    acc = line.get("test_accuracy_mean")
    return "" if acc is None else f", accuracy {acc:.1%}"


def _headline(task: str, win: dict[str, Any] | None, kind: str = "value") -> str:
    if win is None:
        return f"On {task}, no run finished, so there is no winner."
    best, rival, loss = win["best"], win["rival"], loss_name(kind)
    text = (f"On {task}, the best model is {best['label']} ({best['family']}, ~{fmt_params(best['params'])} "
            f"parameters) with test {loss} {fmt_pm(best['test_loss_mean'], best['test_loss_std'])}"
            + _accuracy(best))
    if best["psnr_mean"] is not None:
        text += f" (PSNR {fmt_fixed(best['psnr_mean'], None)} dB)"
    if rival is None:
        return text + (": no other family ran on this task." if win["best_is_mlp"]
                       else ": no MLP ran on this task to compare with.")
    versus = (f"{rival['label']} ({rival['family']}, ~{fmt_params(rival['params'])} parameters, test {loss} "
              f"{fmt_sci(rival['test_loss_mean'])}{_accuracy(rival)})")
    factor = f"{win['factor']:.3g} times"
    if win["best_is_mlp"]:
        return text + f"; the best non-MLP model, {versus}, is {factor} higher."
    return text + f", {factor} lower than the best MLP, {versus}."


def _table(lines: Sequence[dict[str, Any]], best_label: str | None, kind: str = "value") -> str:
    image = any(s["psnr_mean"] is not None for s in lines)
    loss = loss_name(kind)
    heads = ["Label", "Family", "Parameters", "FLOPs / sample", f"Train {loss}", f"Test {loss}"]
    heads += ["PSNR (dB)"] if image else []
    heads += ["Test accuracy", "Test macro-F1"] if kind == "class" else []
    heads += ["Time / step", "Total time", "Finished seeds", "Diverged / failed"]
    body = []
    for s in lines:
        cells = [s["label"], s["family"], fmt_params(s["params"]), fmt_flops(s["flops"], s["flops_local"])]
        cells += [fmt_pm(s[f"{k}_mean"], s[f"{k}_std"]) for k in ("train_loss", "test_loss")]
        cells += [fmt_fixed(s["psnr_mean"], s["psnr_std"])] if image else []
        if kind == "class":
            cells += [fmt_fixed(None if s[f"{k}_mean"] is None else 100 * s[f"{k}_mean"],
                                None if s[f"{k}_std"] is None else 100 * s[f"{k}_std"], 1) + " %"
                      for k in ("test_accuracy", "test_macro_f1")]
        cells += [fmt_time(s["time_per_step"]), fmt_time(s["total_time"]),
                  f"{s['n_finished']} / {s['n_seeds']}", f"{s['n_diverged']} / {s['n_failed']}"]
        body.append(row(cells, 2, cls="best" if s["label"] == best_label else ""))
    head = row(heads, 2, "th")
    return f'<table class="summary"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


NOTE = ("Mean ± sample std (ddof=1) over finished seeds; diverged and failed runs are left out of the means "
        "but their time counts in the total. Time / step is the median over runs. FLOPs / sample: forward "
        "multiply-adds of the weighted sums (a B-spline KAN by its dense evaluation, every basis; in "
        "brackets by its local support, the order + 1 nonzero bases), basis values and activations not "
        "counted.")


def _task_section(n: int, task: str, task_rows: list[dict[str, Any]], lines: list[dict[str, Any]],
                  win: dict[str, Any] | None, curves: dict[str, list[dict[str, Any]]], db_path: Path,
                  plots: Path) -> str:
    stem = plots / f"t{n}-{slug(task)}"
    kind, targets = task_rows[0]["task_kind"], targets_of(task_rows[0])
    version = data_version(task_rows[0])  # one per task: the data is part of the task's key
    data = kind if version is None else f"{kind}: {task_file(task_rows[0])}, {version}"
    about = escape(f"{data}; {code_versions(task_rows)}")  # the data and the code that made the numbers
    loss = f"test {loss_name(targets)}"
    parts = [f'<h2 id="task-{n}">Task: {escape(task)} <span class="note">({about})</span></h2>',
             f'<p class="headline">{escape(_headline(task, win, targets))}</p>',
             "<h3>Verdict: does a KAN beat the MLP here, and at what cost?</h3>", verdict_table(task_rows),
             "<h3>Every model in detail</h3>",
             _table(lines, win["best"]["label"] if win else None, targets),
             f'<p class="note">{escape(NOTE)}</p>',
             class_balance(task_rows), _stages(task_rows, stem), symbolic_section(task_rows, db_path, stem)]
    run_curves = [(r["label"], curves[r["run_id"]]) for r in task_rows]
    curve_png = plot_curves(run_curves, f"{stem}-curves", title=f"{task}: {loss} during training",
                            ylabel=loss)
    size_png = plot_loss_vs_params(task_rows, f"{stem}-params", title=f"{task}: final {loss} vs size",
                                   ylabel=f"final {loss}")
    pareto_png = pareto_figure(task_rows, f"{stem}-pareto", loss_name=loss,
                               title=f"{task}: final {loss} against parameters, FLOPs and time per step")
    parts.append('<div class="plots">'
                 + figure(curve_png, f"The {loss} against step; thin lines: seeds, bold line: their median.")
                 + figure(size_png, f"Final {loss} against parameters; bars: std over seeds.") + "</div>"
                 + '<div class="plots">'
                 + figure(pareto_png, PARETO_CAPTION)
                 + "</div>")
    for m, line in enumerate(lines):
        rep = _representative([r for r in task_rows if r["label"] == line["label"]])
        parts.append(f"<h3>{escape(line['label'])}</h3>")
        folder = run_folder(rep, db_path) if rep else None
        if rep is None or folder is None:
            why = "no finished run" if rep is None else f"run folder of {rep['run_id']} not found"
            parts.append(f'<p class="note">No plots: {escape(why)}.</p>')
            continue
        label_stem = f"{stem}-l{m}-{slug(line['label'])}"
        fit = (plot_image(folder, f"{label_stem}-image") or plot_confusion(folder, f"{label_stem}-confusion")
               or plot_fit(folder, f"{label_stem}-fit"))
        edges = plot_edges(folder, f"{label_stem}-edges")
        done = line["n_finished"]
        which = "the only finished seed" if done == 1 else f"the median {loss} of {done} finished seeds"
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
        keys = ("train_rmse", "test_rmse") if "train_rmse" in stages[0] else ("train_loss", "test_loss")
        names = ("Train RMSE", "Test RMSE") if keys[0] == "train_rmse" else ("Train loss", "Test loss")
        head = row(("Grid size", "Step", *names), 0, "th")
        body = "".join(row((str(st["grid_size"]), str(st["step"]), fmt_sci(st[keys[0]]),
                             fmt_sci(st[keys[1]])), 0) for st in stages)
        out.append(f"<h3>Grid extension: {escape(r['label'])}, seed {r['seed']}</h3>"
                   f'<table class="stages"><thead>{head}</thead><tbody>{body}</tbody></table>')
    return "\n".join(out)


def _failures(rows: Sequence[dict[str, Any]]) -> str:
    bad = [r for r in rows if r["status"] != "finished"]
    if not bad:
        return '<p class="note">Every run finished.</p>'
    names = task_labels(rows)
    body = "".join(
        f'<tr><td class="text">{escape(names[r["task_key"]])}</td><td class="text">{escape(r["label"])}</td>'
        f'<td class="text">{r["seed"]}</td><td class="text">{escape(r["status"])}</td>'
        f'<td class="text">{escape(str(r["steps"]))}</td>'
        f'<td class="msg">{escape(r["message"] or "(no message)")}'
        f'<br><span class="note">{escape(r["run_id"])}</span></td></tr>' for r in bad)
    head = row(("Task", "Label", "Seed", "Status", "Steps", "Message"), 6, "th")
    return (f'<div class="alert" id="failures"><h2>{len(bad)} run(s) diverged, failed or found no '
            f'formula</h2>'
            f"<table><thead>{head}</thead><tbody>{body}</tbody></table></div>")


def _configs(rows: Sequence[dict[str, Any]]) -> str:
    out, names = [], task_labels(rows)
    for label in dict.fromkeys(r["label"] for r in rows):
        runs = [r for r in rows if r["label"] == label]
        blocks = []
        for task in dict.fromkeys(r["task_key"] for r in runs):
            of_task = [r for r in runs if r["task_key"] == task]
            config = json.loads(of_task[0]["config_json"])
            config = {k: v for k, v in config.items() if k not in ("run_id", "seed")}
            config["seeds"] = sorted(r["seed"] for r in of_task)
            text = escape(json.dumps(config, indent=2))
            blocks.append(f"<h4>{escape(names[task])}</h4><pre>{text}</pre>")
        summary = f"{label} ({runs[0]['family']}, {len(runs)} runs)"
        out.append(f"<details><summary>{escape(summary)}</summary>{''.join(blocks)}</details>")
    return "\n".join(out)


def write_report(db_path: Path, experiment: str, out_dir: Path, *, title: str | None = None,
                 runs: Sequence[ExperimentConfig] | None = None) -> Path:
    """Write out_dir/report.html for one experiment (plots go to out_dir/plots/ and are embedded).

    Args:
        db_path: the results database.
        experiment: the experiment's name in the store.
        out_dir: output folder (created).
        title: page title (default "kanlab report: <experiment>").
        runs: the study's current expansion, the runs shown (None: every configuration recorded,
            apart; see kanlab.report.parts.read_experiment).
    Returns:
        The path of report.html.
    """
    db_path, out_dir = Path(db_path), Path(out_dir)
    rows, curves, left_out = read_experiment(db_path, experiment, runs)
    rows = with_flops(rows if runs is not None else by_config(rows))  # by label: configurations apart
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    summary = summary_table(rows)
    wins = {w["task_key"]: w for w in winner(rows)}
    tasks = list(dict.fromkeys(s["task_key"] for s in summary))  # two different tasks never share a key
    title = title or f"kanlab report: {experiment}"
    names = task_labels(rows)
    kinds = {r["task_key"]: targets_of(r) for r in rows}
    heads = "".join(f'<p class="headline">{escape(_headline(names[t], wins.get(t), kinds[t]))} '
                    f'<a href="#task-{n}">Details</a></p>' for n, t in enumerate(tasks))
    sections = [_task_section(n, names[t], [r for r in rows if r["task_key"] == t],
                              [s for s in summary if s["task_key"] == t], wins.get(t), curves, db_path, plots)
                for n, t in enumerate(tasks)]
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
{left_out_note(left_out, planned=runs is not None)}
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
