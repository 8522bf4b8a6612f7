"""Summaries of the results store's rows: one line per (task, label), the winner, number formatting.

Means and standard deviations are over the *finished* seeds of a group; diverged and failed
runs are counted, and their time is charged to the group, but their losses are left out.
Standard deviations are sample deviations (numpy ddof=1) and None for fewer than two seeds.
The loss is the MSE for value targets and the cross-entropy for class targets (task_kind
"dataset" or "data" with target_kind "class"), whose accuracy and macro-F1 are summarised too.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

BASELINE_FAMILY = "mlp"
CLASS_KEYS = ("test_accuracy", "test_macro_f1")


def targets_of(row: dict[str, Any]) -> str:
    """"class" or "value": a store row's target kind, from its config."""
    task = json.loads(row.get("config_json") or "{}").get("task", {})
    if task.get("target_kind") is not None:
        return str(task["target_kind"])
    if task.get("kind") == "dataset":
        from kanlab.tasks import DATASETS

        return DATASETS.get(str(task.get("name")), ("value",))[0]
    return "value"


def loss_name(kind: str) -> str:
    """What the loss of a target kind is called in tables and plots."""
    return "cross-entropy" if kind == "class" else "MSE"


def with_flops(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with flops and flops_local filled from their spec where the store has none (older runs)."""
    from kanlab.models.spec import parse_spec
    from kanlab.models.stack import count_flops

    out = []
    for row in rows:
        row = dict(row)
        if row.get("flops") is None:
            try:
                cfg = parse_spec(json.loads(row["config_json"])["spec"])
                row["flops"], row["flops_local"] = count_flops(cfg), count_flops(cfg, local=True)
            except (KeyError, ValueError):
                pass
        out.append(row)
    return out


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_std(values: Iterable[Any]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) of the finite values.

    Args:
        values: numbers; None, nan and inf are skipped.
    Returns:
        (mean, std): mean None without values, std None with fewer than two.
    """
    xs = _finite(values)
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def task_name(row: dict[str, Any]) -> str:
    """Short display name of a row's task (an image path shortened to its file stem)."""
    name = str(row["task"])
    return name if row.get("task_kind", "function") == "function" else Path(name).stem


def task_file(row: dict[str, Any]) -> str | None:
    """The file a row's task reads (a data task's path, an image file), None for none."""
    if row.get("task_kind") == "data":
        task = json.loads(row["config_json"])["task"] if row.get("config_json") else {}
        return str(task.get("path", row["task"]))
    if row.get("task_kind") == "image" and Path(str(row["task"])).suffix:
        return str(row["task"])
    return None


def data_version(row: dict[str, Any]) -> str | None:
    """Which bytes of its file a row's task read ("sha256 <first 12 hex digits>"), or that this is
    unknown; None for a task that reads no file (a function, a bundled image)."""
    if row.get("data_hash"):
        return f"sha256 {row['data_hash'][:12]}"
    return None if task_file(row) is None else "not recorded (run before kanlab hashed input files)"


def code_versions(rows: Sequence[dict[str, Any]]) -> str:
    """Which kanlab code computed the rows ("code <first 12 hex digits of its SHA-256>", several joined
    by commas, "not recorded" for runs of a kanlab before it was)."""
    found = sorted({str(r.get("code_version") or "") for r in rows})
    return "code " + ", ".join(v[:12] if v else "not recorded" for v in found)


def task_labels(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """A display name per task key: the task's name, followed by what sets it apart (fields of its
    config, its data version) where several tasks share that name."""
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(str(row["task_key"]), row)
    named: dict[str, list[str]] = {}
    for key, row in first.items():
        named.setdefault(task_name(row), []).append(key)
    out = {}
    for name, keys in named.items():
        if len(keys) == 1:
            out[keys[0]] = name
            continue
        fields = {key: _task_fields(first[key]) for key in keys}
        differ = sorted({f for v in fields.values() for f in v
                         if len({json.dumps(fields[k].get(f)) for k in keys}) > 1})
        differ = [f for f in differ if f != "data"] or differ  # the data version: where nothing else differs
        for key in keys:
            shown = [f"{f}={fields[key].get(f)}" if f != "data" else str(fields[key][f]) for f in differ]
            out[key] = f"{name} ({', '.join(shown) or key})"
    return out


def _task_fields(row: dict[str, Any]) -> dict[str, Any]:
    # The task's config flattened to dotted keys, plus its data version.
    task = json.loads(row["config_json"])["task"] if row.get("config_json") else {}
    flat: dict[str, Any] = {}
    for key, value in task.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    flat["data"] = data_version(row)
    return flat


def summary_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group store rows by (task key, label) into one summary line each.

    Args:
        rows: dicts as returned by ResultsStore.runs().
    Returns:
        Lines with task_key (the group: see store.task_key), task (its name), task_kind, label,
        family, params, flops and flops_local (means), train_loss/test_loss/psnr/test_accuracy/
        test_macro_f1 _mean and _std (finished seeds; None where a run lacks the key),
        time_per_step (median), total_time (sum of wall times), n_seeds, n_finished, n_diverged,
        n_failed and run_ids; sorted by task, then mean test loss (groups without a finished seed
        last), then label.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row["task_key"]), str(row["label"])), []).append(row)
    table = []
    for (group, label), runs in groups.items():
        done = [r for r in runs if r["status"] == "finished"]
        params = _finite(r.get("param_count") for r in runs if r.get("param_count"))
        step_times = _finite(r.get("time_per_step") for r in runs)
        flops = _finite(r.get("flops") for r in runs)
        local = _finite(r.get("flops_local") for r in runs)
        line: dict[str, Any] = {
            "task_key": group, "task": str(runs[0]["task"]),
            "task_kind": runs[0].get("task_kind", "function"), "label": label, "family": runs[0]["family"],
            "params": round(statistics.fmean(params)) if params else None,
            "flops": round(statistics.fmean(flops)) if flops else None,
            "flops_local": round(statistics.fmean(local)) if local else None,
            "time_per_step": statistics.median(step_times) if step_times else None,
            "total_time": sum(_finite(r.get("wall_time") for r in runs)),
            "n_seeds": len(runs), "n_finished": len(done),
            "n_diverged": sum(r["status"] == "diverged" for r in runs),
            "n_failed": sum(r["status"] == "failed" for r in runs),
            "run_ids": [r["run_id"] for r in runs],
        }
        for key in ("train_loss", "test_loss", "psnr", *CLASS_KEYS):
            line[f"{key}_mean"], line[f"{key}_std"] = mean_std(r.get(key) for r in done)
        table.append(line)
    table.sort(key=lambda s: (s["task"], s["task_key"], s["test_loss_mean"] is None,
                              s["test_loss_mean"] or 0.0, s["label"]))
    return table


def winner(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The headline per task: the label with the lowest mean test loss, and its rival.

    The rival is the best MLP (family "mlp"), or the best non-MLP when an MLP wins, so the
    factor always answers "does a KAN beat an MLP here".

    Args:
        rows: dicts as returned by ResultsStore.runs() (summarised with summary_table).
    Returns:
        Per task (in summary_table order): task_key, task, best (its summary line), rival (a summary
        line or None when the task has no such model), factor = rival loss / best loss (>= 1; None
        without a rival), best_is_mlp.
    """
    by_task: dict[str, list[dict[str, Any]]] = {}
    for line in summary_table(rows):
        if line["test_loss_mean"] is not None:
            by_task.setdefault(line["task_key"], []).append(line)
    out = []
    for key, lines in by_task.items():
        best = min(lines, key=lambda s: s["test_loss_mean"])
        best_is_mlp = best["family"] == BASELINE_FAMILY
        rivals = [s for s in lines if s is not best and (s["family"] == BASELINE_FAMILY) != best_is_mlp]
        rival = min(rivals, key=lambda s: s["test_loss_mean"]) if rivals else None
        factor, low = None, best["test_loss_mean"]
        if rival is not None:
            factor = math.inf if low == 0 else rival["test_loss_mean"] / low
        out.append({"task_key": key, "task": lines[0]["task"], "best": best, "rival": rival, "factor": factor,
                    "best_is_mlp": best_is_mlp})
    return out


def fmt_sci(x: float | None, digits: int = 3) -> str:
    """A number in scientific notation with `digits` significant digits ("n/a" for None/nan).

    Args:
        x: the number.
        digits: significant digits (>= 1).
    Returns:
        E.g. "1.23e-04".
    """
    if x is None or math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{max(digits, 1) - 1}e}"


def fmt_pm(mean: float | None, std: float | None, digits: int = 3) -> str:
    """"mean ± std" in scientific notation; the std with two significant digits, omitted if None.

    Args:
        mean: the mean.
        std: the standard deviation (None: only the mean is shown).
        digits: significant digits of the mean.
    Returns:
        E.g. "1.23e-04 ± 4.5e-06".
    """
    text = fmt_sci(mean, digits)
    return text if std is None or mean is None else f"{text} ± {fmt_sci(std, 2)}"


def fmt_fixed(mean: float | None, std: float | None, decimals: int = 2) -> str:
    """"mean ± std" in fixed notation (for PSNR in dB); "n/a" for a missing mean."""
    if mean is None or not math.isfinite(mean):
        return fmt_sci(mean)
    text = f"{mean:.{decimals}f}"
    return text if std is None else f"{text} ± {std:.{decimals}f}"


def fmt_time(seconds: float | None) -> str:
    """A duration with a readable unit: "850 us", "12.3 ms", "4.56 s", "3 min 05 s", "2 h 07 min"."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def fmt_params(n: float | None) -> str:
    """A parameter count with thousands separators ("n/a" for None)."""
    return "n/a" if n is None else f"{round(n):,}"


def fmt_flops(flops: float | None, local: float | None) -> str:
    """FLOPs per sample, with the local-support count in brackets where it differs (B-spline KANs)."""
    text = fmt_params(flops)
    return text if local is None or local == flops else f"{text} (local {fmt_params(local)})"


def fmt_factor(factor: float | None) -> str:
    """A ratio such as 12.3 as "12.3x" (three significant digits)."""
    if factor is None:
        return "n/a"
    return "inf x" if math.isinf(factor) else f"{factor:.3g}x"
