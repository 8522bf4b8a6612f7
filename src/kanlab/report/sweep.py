"""The sweep section of a report: statistics over seeds, paired comparisons with the MLP, scaling fits.

Read from the results store only. A run's coordinates come from the "sweep" key of its config
(see kanlab.study.sweep); runs without it (a plain study) are grouped by parameter count instead.
Losses are final test losses of finished runs (MSE, or cross-entropy for class targets); diverged and
failed runs are counted, not averaged.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from kanlab.models.spec import parse_spec
from kanlab.models.stack import count_params
from kanlab.report import scaling
from kanlab.report.pareto import PARETO_CAPTION, pareto_figure
from kanlab.report.parts import by_config, figure, left_out_note, read_experiment, table, write_page
from kanlab.report.scaling import finished
from kanlab.report.stats import ScalingFit, geometric_summary, paired_ratio, summarize, time_to_target
from kanlab.report.tables import (
    BASELINE_FAMILY,
    code_versions,
    data_version,
    fmt_params,
    fmt_sci,
    fmt_time,
    loss_name,
    targets_of,
    task_file,
    task_labels,
    with_flops,
)
from kanlab.study.config import ExperimentConfig

Row = dict[str, Any]


def _budgets(rows: Sequence[Row]) -> dict[str, int | None]:
    """Each run's budget: its sweep coordinate, else the middle of its parameter count's cluster (5%)."""
    loose = sorted((r["param_count"], r["run_id"]) for r in rows if r["param_count"] and r["budget"] is None)
    clusters: list[list[tuple[int, str]]] = []
    for count, run_id in loose:
        if clusters and count <= clusters[-1][-1][0] * 1.05:
            clusters[-1].append((count, run_id))
        else:
            clusters.append([(count, run_id)])
    middle = {run_id: round(statistics.median(c for c, _ in cluster))
              for cluster in clusters for _, run_id in cluster}
    return {r["run_id"]: r["budget"] if r["budget"] is not None else middle.get(r["run_id"]) for r in rows}


def prepare_rows(rows: Sequence[Row]) -> tuple[list[Row], list[str]]:
    """Rows with budget, depth and axes; and the axis names worth a column."""
    prepared = []
    for r in rows:
        config = json.loads(r["config_json"])
        coords = config.get("sweep") or {}
        axes = {k: v for k, v in (coords.get("axes") or {}).items() if k != "budget"}
        count = r["param_count"]
        if count is None:  # a run that failed before it built its model: count its spec instead
            try:
                count = count_params(parse_spec(config["spec"]))
            except (KeyError, ValueError):
                count = None
        match = (config.get("match") or {}).get("by", "params")
        prepared.append({**r, "param_count": count, "budget": coords.get("budget"),
                         "depth": coords.get("depth"), "axes": axes, "match": match})
    budgets = _budgets(prepared)
    for r in prepared:
        r["budget"] = budgets[r["run_id"]]
    names = sorted({k for r in prepared for k, v in r["axes"].items() if v is not None})
    return prepared, names


def fmt_budget(row: Row) -> str:
    """A cell's budget in the unit it was matched by: parameters, FLOPs or seconds per step."""
    budget = row["budget"]
    if budget is None or row.get("match", "params") == "params":
        return fmt_params(budget)
    return f"{fmt_params(budget)} FLOPs" if row["match"] == "flops" else f"{fmt_time(budget)} / step"


def _key(row: Row, names: Sequence[str]) -> tuple[Any, ...]:
    return (row["task_key"], row["label"], row["family"], row["budget"],
            *(json.dumps(row["axes"].get(k)) for k in names))


def group_cells(rows: Sequence[Row], names: Sequence[str]) -> list[list[Row]]:
    groups: dict[tuple[Any, ...], list[Row]] = {}
    order = sorted(rows, key=lambda r: (r["task_key"], r["budget"] or 0, r["label"],
                                        json.dumps(r["axes"], sort_keys=True), r["seed"]))
    for r in order:
        groups.setdefault(_key(r, names), []).append(r)
    return list(groups.values())


def _axes_text(row: Row, names: Sequence[str]) -> list[str]:
    return ["any" if row["axes"].get(k) is None else str(row["axes"][k]) for k in names]


def _sizes(runs: Sequence[Row]) -> list[str]:
    """A cell's parameters and FLOPs per sample (means) and time per step (median over runs)."""
    params = [r["param_count"] for r in runs if r["param_count"]]
    flops = [r["flops"] for r in runs if r.get("flops")]
    steps = [r["time_per_step"] for r in runs if r.get("time_per_step")]
    return [fmt_params(statistics.fmean(params) if params else None),
            fmt_params(statistics.fmean(flops) if flops else None),
            fmt_time(statistics.median(steps) if steps else None)]


def _size(runs: Sequence[Row]) -> str:
    return " / ".join(_sizes(runs))


SIZES = ["Parameters", "FLOPs / sample", "Time / step"]


def cell_table(cells: list[list[Row]], names: Sequence[str]) -> str:
    body = []
    for runs in cells:
        done = [r["test_loss"] for r in runs if finished(r)]
        s, g = (summarize(done), geometric_summary(done)) if done else (None, None)
        body.append([runs[0]["label"], fmt_budget(runs[0]), *_axes_text(runs[0], names), *_sizes(runs),
                     f"{len(done)} / {len(runs)}",
                     fmt_sci(s.mean if s else None), fmt_sci(s.std if s else None, 2),
                     fmt_sci(g.mean if g else None),
                     f"{fmt_sci(g.low)} to {fmt_sci(g.high)}" if g and g.n > 1 else "n/a"])
    loss = f"Test {loss_name(targets_of(cells[0][0]))}" if cells else "Test loss"
    head = ["Label", "Budget", *names, *SIZES, "Finished", f"{loss} mean", "Std", "Geometric mean",
            "95% CI (t on log)"]
    return table(head, body, 2 + len(names))


def _comparable(a: Row, b: Row, names: Sequence[str]) -> bool:
    # Same task and budget; an axis counts only where it changes both runs (it is None otherwise).
    return a["task_key"] == b["task_key"] and a["budget"] == b["budget"] and all(
        a["axes"].get(k) == b["axes"].get(k) for k in names
        if a["axes"].get(k) is not None and b["axes"].get(k) is not None)


def _same_loss(base: list[Row], fit: tuple[ScalingFit, float, float] | None) -> str:
    # Parameters the challenger's fitted curve needs for the baseline's (geometric mean) loss, as a
    # multiple of the baseline's parameters: the founding question, "the same loss at half the size?".
    losses = [r["test_loss"] for r in base if finished(r)]
    params = [r["param_count"] for r in base if finished(r) and r["param_count"]]
    if fit is None or not losses or not params or not fit[0].exponent > 0:
        return "n/a"
    target = math.exp(statistics.fmean(math.log(v) for v in losses))
    needed = (fit[0].coefficient / target) ** (1 / fit[0].exponent)
    if not fit[1] / 10 <= needed <= fit[2] * 10:  # a flat fit sends this anywhere: do not print it
        return "beyond the fit"
    inside = fit[1] <= needed <= fit[2]
    return f"{needed / statistics.fmean(params):.2g}x" + ("" if inside else " (extrap.)")


def paired_table(cells: list[list[Row]], names: Sequence[str],
                  fits: dict[str, tuple[ScalingFit, float, float]]) -> str:
    body = []
    for base in (c for c in cells if c[0]["family"] == BASELINE_FAMILY):
        for other in (c for c in cells if c[0]["family"] != BASELINE_FAMILY):
            if not _comparable(other[0], base[0], names):
                continue
            by_seed = {r["seed"]: r for r in base if finished(r)}
            pairs = [(r["test_loss"], by_seed[r["seed"]]["test_loss"]) for r in other
                     if finished(r) and r["seed"] in by_seed]
            a, b = other[0]["label"], base[0]["label"]
            same = _same_loss(base, fits.get(scaling.series_name(other[0], names)))
            first = [fmt_budget(base[0]), a, b, *_axes_text(other[0], names), _size(other), _size(base)]
            if not pairs:
                body.append([*first, "no finished pairs", "0", "n/a", "n/a", "n/a", "n/a", same])
                continue
            p = paired_ratio([x for x, _ in pairs], [y for _, y in pairs])
            if p.winner is None:
                verdict = "no clear winner at 95%" if p.n > 1 else "one pair: no test"
            else:
                lower, factor = (a, 1 / p.ratio) if p.winner == "a" else (b, p.ratio)
                verdict = f"{lower} lower, {factor:.3g}x"
            body.append([*first, verdict, str(p.n), f"{p.ratio:.3g}", f"{p.low:.3g} to {p.high:.3g}",
                         f"{p.boot_low:.3g} to {p.boot_high:.3g}", f"{p.p_value:.2g}", same])
    if not body:
        return f'<p class="note">No {BASELINE_FAMILY} runs and other runs at the same budget to compare.</p>'
    head = ["Budget", "Model", "vs", *names, "Model: params / FLOPs / step", f"{BASELINE_FAMILY}: the same",
            "Verdict", "Pairs", "Loss ratio", "95% CI (t)", "95% CI (bootstrap)", "p",
            "Size for the same loss"]
    return table(head, body, 6 + len(names))


def _target_table(cells: list[list[Row]], names: Sequence[str], curves: dict[str, list[Row]]) -> str:
    body = []
    for budget in dict.fromkeys(c[0]["budget"] for c in cells):
        group = [c for c in cells if c[0]["budget"] == budget]
        medians = [statistics.median(r["test_loss"] for r in c if finished(r))
                   for c in group if any(finished(r) for r in c)]
        if not medians:
            continue
        target = max(medians)  # the loss every cell's median run reaches by the end
        for c in group:
            times = [time_to_target([p["time"] for p in curves.get(r["run_id"], [])],
                                    [p["test_loss"] for p in curves.get(r["run_id"], [])], target)
                     for r in c if finished(r)]
            reached = [t for t in times if t is not None]
            body.append([fmt_budget(c[0]), c[0]["label"], *_axes_text(c[0], names), *_sizes(c),
                         fmt_sci(target),
                         fmt_time(statistics.median(reached)) if reached else "not reached",
                         f"{len(reached)} / {len(c)}"])
    loss = loss_name(targets_of(cells[0][0])) if cells else "loss"
    head = ["Budget", "Label", *names, *SIZES, f"Target {loss}", "Median time", "Reached"]
    return table(head, body, 2 + len(names))


def sweep_section(db_path: Path, experiment: str, out_dir: Path,
                  runs: Sequence[ExperimentConfig] | None = None) -> str:
    """The sweep statistics of one experiment as an HTML fragment (plots embedded, also saved in out_dir).

    Args:
        db_path: the results database.
        experiment: the experiment's name in the store.
        out_dir: folder for the plot PNGs (created).
        runs: the sweep's current expansion, the runs shown (None: see kanlab.report.parts.read_experiment).
    Returns:
        HTML: per task, cell statistics, paired comparisons, scaling fits and time to target.
    """
    db_path = Path(db_path)
    raw, curves, left_out = read_experiment(db_path, experiment, runs)
    rows, names = prepare_rows(with_flops(raw))
    if runs is None:  # configurations apart within a cell (a sweep's points differ by design)
        rows = by_config(rows, cell=lambda r: [r["budget"], r["axes"]])
    parts = [f'<section class="sweep"><h2>Sweep statistics: {escape(experiment)}</h2>',
             left_out_note(left_out, planned=runs is not None),
             f'<p class="note">{len(rows)} runs, {sum(finished(r) for r in rows)} finished with a finite '
             "loss. "
             "Cells are (task, model, budget, axes) over seeds; statistics use finished runs only. "
             "A cell's interval is the t-interval of its mean log loss, mapped back (it brackets the "
             "geometric mean and stays positive). "
             "Loss ratios are geometric means of model / baseline test MSE over runs paired by seed "
             "(below 1: the model wins); p is a two-sided paired t-test on log losses; the bootstrap "
             "interval resamples the pairs (10,000 resamples, seed 0). 'Size for the same loss': the "
             "parameters at which the model's fitted scaling curve reaches the baseline's loss, as a "
             "multiple of the baseline's parameters (extrap.: outside the fitted range). "
             "An axis shown as 'any' does not change that model.</p>"]
    labels = task_labels(rows)
    for n, task in enumerate(dict.fromkeys(r["task_key"] for r in rows)):  # two tasks never share a key
        task_rows = [r for r in rows if r["task_key"] == task]
        cells = group_cells(task_rows, names)
        task_fits = scaling.fits(task_rows, names)
        png = Path(out_dir) / "plots" / f"sweep-scaling-{n}.png"
        plot, fit_table = scaling.scaling_figure(task_rows, names, task_fits, png)
        version = data_version(task_rows[0])  # one per task: the data is part of the task's key
        data = "" if version is None else f"{task_file(task_rows[0])}, {version}; "
        title = f"{labels[task]} ({data}{code_versions(task_rows)})"
        name = escape(title)
        loss = f"test {loss_name(targets_of(task_rows[0]))}"
        pareto = pareto_figure(task_rows, Path(out_dir) / "plots" / f"sweep-pareto-{n}", loss_name=loss,
                               title=f"{labels[task]}: final {loss} against parameters, FLOPs and "
                                     "time per step")
        parts += [f"<h3>{name}: {loss} over seeds</h3>", cell_table(cells, names),
                  f"<h3>{name}: paired comparison with the {BASELINE_FAMILY} at each budget</h3>",
                  paired_table(cells, names, task_fits), f"<h3>{name}: scaling</h3>", plot, fit_table,
                  f"<h3>{name}: loss against cost</h3>",
                  '<div class="plots">' + figure(pareto, PARETO_CAPTION) + "</div>",
                  f"<h3>{name}: time to a target loss</h3>",
                  '<p class="note">Target: per budget, the highest median final test loss of any cell, so '
                  "the median run of every cell reaches it; time is wall time from the start of training "
                  "(evaluations included), the median over runs that reach it.</p>",
                  _target_table(cells, names, curves)]
    parts.append("</section>")
    return "\n".join(parts)


def write_sweep_report(db_path: Path, experiment: str, out_dir: Path,
                       runs: Sequence[ExperimentConfig] | None = None) -> Path:
    """Write out_dir/report.html: a self-contained page holding the sweep section.

    Args:
        db_path: the results database.
        experiment: the experiment's name in the store.
        out_dir: output folder (created).
        runs: the sweep's current expansion, the runs shown (None: see kanlab.report.parts.read_experiment).
    Returns:
        The path of report.html.
    """
    section = sweep_section(db_path, experiment, out_dir, runs)
    return write_page(out_dir, f"kanlab sweep: {experiment}", section)
