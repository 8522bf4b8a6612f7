"""The verdict of one task in one table: does each model beat the MLP here, and at what cost?

One row per model (label) over its finished seeds: parameters, FLOPs per sample, time per step,
the test loss's geometric mean with its 95% interval (t on the log loss, as the sweep report),
accuracy for class tasks, and the loss ratio to the MLP with its 95% interval, paired by seed. The
MLP is the best model of family "mlp" on the task (lowest geometric mean); every other model,
another MLP included, is compared with it. The same rows give the HTML table of the study and
tune reports and the Markdown table that benchmarks/fair_quick.py writes for the README.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from html import escape
from typing import Any

from kanlab.report.parts import table
from kanlab.report.scaling import finished
from kanlab.report.stats import geometric_summary, paired_ratio
from kanlab.report.tables import (
    BASELINE_FAMILY,
    fmt_flops,
    fmt_params,
    fmt_sci,
    fmt_time,
    loss_name,
    targets_of,
)

Row = dict[str, Any]
NOTE = ("Test loss: geometric mean over the finished seeds, with the 95% t-interval of the mean log loss. "
        "Ratio: the model's test loss over the MLP's, paired by seed (geometric mean of the ratios, 95% "
        "t-interval); below 1 the model has the lower loss, and the verdict names a winner only when the "
        "interval excludes 1. The MLP is the family-\"mlp\" model with the lowest geometric mean. Parameters "
        "and FLOPs per sample (forward multiply-adds; a B-spline KAN's local-support count in brackets) are "
        "means over the seeds, time per step their median.")


def verdict_rows(rows: Sequence[Row]) -> list[Row]:
    """One line per label of one task's store rows, best (lowest geometric-mean test loss) first.

    Args:
        rows: store rows of one task (ResultsStore.runs, with flops filled: tables.with_flops).
    Returns:
        Lines with label, family, params, flops, flops_local, time_per_step, n, finished, loss (a
        stats.Summary of the geometric mean or None), accuracy (mean, class tasks), baseline (the
        MLP's label or None), ratio (a stats.Paired against it or None; None for the MLP itself)
        and verdict (text).
    """
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(str(r["label"]), []).append(r)
    lines = []
    for label, runs in groups.items():
        done = [r for r in runs if finished(r)]
        params = [r["param_count"] for r in runs if r.get("param_count")]
        flops = [r["flops"] for r in runs if r.get("flops")]
        local = [r["flops_local"] for r in runs if r.get("flops_local")]
        steps = [r["time_per_step"] for r in runs if r.get("time_per_step")]
        accuracy = [r["test_accuracy"] for r in done if r.get("test_accuracy") is not None]
        lines.append({
            "label": label, "family": runs[0]["family"], "runs": runs, "n": len(runs), "finished": len(done),
            "params": statistics.fmean(params) if params else None,
            "flops": statistics.fmean(flops) if flops else None,
            "flops_local": statistics.fmean(local) if local else None,
            "time_per_step": statistics.median(steps) if steps else None,
            "loss": geometric_summary([r["test_loss"] for r in done]) if done else None,
            "accuracy": statistics.fmean(accuracy) if accuracy else None,
        })
    lines.sort(key=lambda s: (s["loss"] is None, s["loss"].mean if s["loss"] else 0.0, s["label"]))
    mlps = [s for s in lines if s["family"] == BASELINE_FAMILY and s["loss"] is not None]
    base = mlps[0] if mlps else None
    for s in lines:
        s["baseline"], s["ratio"], s["verdict"] = (base["label"] if base else None), None, "n/a"
        if base is None:
            s["verdict"] = f"no {BASELINE_FAMILY} finished"
        elif s is base:
            s["verdict"] = "the MLP"
        else:
            s["ratio"], s["verdict"] = _compare(s["runs"], base["runs"], base["label"])
    return lines


def _compare(runs: Sequence[Row], base: Sequence[Row], name: str) -> tuple[Any, str]:
    by_seed = {r["seed"]: r["test_loss"] for r in base if finished(r)}
    pairs = [(r["test_loss"], by_seed[r["seed"]]) for r in runs if finished(r) and r["seed"] in by_seed]
    if not pairs:
        return None, "no finished pairs"
    p = paired_ratio([a for a, _ in pairs], [b for _, b in pairs])
    if p.n < 2:
        return p, "one pair: no interval"
    if p.winner is None:
        return p, f"no clear difference from {name}"
    return p, (f"{1 / p.ratio:.3g}x lower loss than {name}" if p.winner == "a"
               else f"{p.ratio:.3g}x higher loss than {name}")


def _interval(low: float, high: float) -> str:
    return "n/a" if math.isnan(low) else f"[{fmt_sci(low)}, {fmt_sci(high)}]"


def _cells(s: Row, classes: bool) -> list[str]:
    loss, ratio = s["loss"], s["ratio"]
    cells = [s["label"], s["family"], fmt_params(s["params"]), fmt_flops(s["flops"], s["flops_local"]),
             fmt_time(s["time_per_step"]), f"{s['finished']} / {s['n']}",
             fmt_sci(loss.mean if loss else None), _interval(loss.low, loss.high) if loss else "n/a"]
    if classes:
        cells.append("n/a" if s["accuracy"] is None else f"{s['accuracy']:.1%}")
    if ratio is None:
        cells += ["1" if s["verdict"] == "the MLP" else "n/a", "n/a"]
    else:
        interval = "n/a" if math.isnan(ratio.low) else f"[{ratio.low:.3g}, {ratio.high:.3g}]"
        cells += [f"{ratio.ratio:.3g}", interval]
    return [*cells, s["verdict"]]


def _head(rows: Sequence[Row], lines: Sequence[Row]) -> tuple[list[str], bool]:
    kind = targets_of(rows[0])
    base = next((s["baseline"] for s in lines if s["baseline"]), None)
    head = ["Model", "Family", "Parameters", "FLOPs / sample", "Time / step", "Finished",
            f"Test {loss_name(kind)}", "95% CI"]
    head += ["Test accuracy"] if kind == "class" else []
    head += [f"Ratio to {base or 'the MLP'}", "95% CI", "Verdict"]
    return head, kind == "class"


def verdict_table(rows: Sequence[Row]) -> str:
    """The verdict of one task's runs as an HTML table (see the module docstring), with its note."""
    lines = verdict_rows(rows)
    if not lines:
        return '<p class="note">No runs.</p>'
    head, classes = _head(rows, lines)
    return table(head, [_cells(s, classes) for s in lines], 2) + f'<p class="note">{escape(NOTE)}</p>'


def verdict_markdown(rows: Sequence[Row]) -> str:
    """The same table in Markdown (a README's copy of a report)."""
    lines = verdict_rows(rows)
    head, classes = _head(rows, lines)
    body = [_cells(s, classes) for s in lines]
    align = ["---" if i < 2 or i == len(head) - 1 else "---:" for i in range(len(head))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [head, align, *body])
