"""The verdict table: geometric means, intervals and paired ratios against scipy, the MLP it compares with."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from kanlab.report.verdict import verdict_markdown, verdict_rows, verdict_table

LOSSES = {  # label -> (family, test loss per seed; nan: diverged)
    "KAN": ("kan", [1.0e-4, 1.5e-4, 1.2e-4]),
    "MLP tanh": ("mlp", [2.0e-3, 4.0e-3, 3.0e-3]),
    "SIREN": ("mlp", [5.0e-3, 7.0e-3, 6.5e-3]),
    "TQ": ("tanhquad", [2.1e-3, math.nan, 2.9e-3]),
}


def runs(kind: str = "function", accuracy: bool = False) -> list[dict[str, Any]]:
    out = []
    for label, (family, losses) in LOSSES.items():
        for seed, loss in enumerate(losses):
            task = {"kind": kind, "name": "zigzag" if kind == "function" else "digits"}
            out.append({"label": label, "family": family, "seed": seed, "task": task["name"],
                        "status": "finished" if math.isfinite(loss) else "diverged", "test_loss": loss,
                        "param_count": 1000 + seed, "flops": 900,
                        "flops_local": 500 if family == "kan" else 900,
                        "time_per_step": 0.001 * (seed + 1), "test_accuracy": 0.9 if accuracy else None,
                        "config_json": json.dumps({"task": task}), "run_id": f"{label}-{seed}"})
    return out


def geometric(values: list[float]) -> tuple[float, float, float]:
    logs = np.log(values)
    low, high = stats.t.interval(0.95, len(logs) - 1, loc=logs.mean(), scale=stats.sem(logs))
    return math.exp(logs.mean()), math.exp(low), math.exp(high)


def test_each_model_has_its_geometric_mean_interval_and_ratio_to_the_best_mlp() -> None:
    lines = {s["label"]: s for s in verdict_rows(runs())}
    assert [s["label"] for s in verdict_rows(runs())] == ["KAN", "TQ", "MLP tanh", "SIREN"]  # by loss
    for label, (_, losses) in LOSSES.items():
        done = [v for v in losses if math.isfinite(v)]
        mean, low, high = geometric(done)
        loss = lines[label]["loss"]
        assert (loss.mean, loss.low, loss.high) == pytest.approx((mean, low, high), rel=1e-12)
        assert lines[label]["baseline"] == "MLP tanh"  # the better of the two MLPs
    assert lines["MLP tanh"]["ratio"] is None and lines["MLP tanh"]["verdict"] == "the MLP"
    base = np.array(LOSSES["MLP tanh"][1])
    for label in ("KAN", "SIREN", "TQ"):
        own = np.array(LOSSES[label][1])
        keep = np.isfinite(own)  # paired by seed: TQ's diverged seed 1 drops out with its MLP partner
        d = np.log(own[keep]) - np.log(base[keep])
        low, high = stats.t.interval(0.95, d.size - 1, loc=d.mean(), scale=stats.sem(d))
        ratio = lines[label]["ratio"]
        assert ratio.n == keep.sum()
        assert (ratio.ratio, ratio.low, ratio.high) == pytest.approx(
            (math.exp(d.mean()), math.exp(low), math.exp(high)), rel=1e-9)
    assert lines["KAN"]["verdict"] == f"{1 / lines['KAN']['ratio'].ratio:.3g}x lower loss than MLP tanh"
    assert lines["SIREN"]["verdict"] == f"{lines['SIREN']['ratio'].ratio:.3g}x higher loss than MLP tanh"
    assert lines["TQ"]["verdict"] == "no clear difference from MLP tanh"
    assert lines["TQ"]["finished"] == 2 and lines["TQ"]["n"] == 3
    kan = lines["KAN"]
    assert (kan["params"], kan["flops"], kan["flops_local"], kan["time_per_step"]) == (1001, 900, 500, 0.002)


def test_the_table_shows_costs_losses_intervals_and_the_verdict_in_one_row_per_model() -> None:
    text = verdict_markdown(runs())
    head, align, *body = text.splitlines()
    assert head == ("| Model | Family | Parameters | FLOPs / sample | Time / step | Finished | Test MSE | "
                    "95% CI | Ratio to MLP tanh | 95% CI | Verdict |")
    assert align.count("---:") == 8 and len(body) == 4
    kan = body[0].split(" | ")
    mean, low, high = geometric(LOSSES["KAN"][1])
    assert kan[:8] == ["| KAN", "kan", "1,001", "900 (local 500)", "2 ms", "3 / 3", f"{mean:.2e}",
                       f"[{low:.2e}, {high:.2e}]"]
    assert body[2].split(" | ")[8:10] == ["1", "n/a"]  # the MLP itself
    html = verdict_table(runs("dataset", accuracy=True))
    assert "Test cross-entropy" in html and "Test accuracy" in html and "90.0%" in html


def test_without_an_mlp_there_is_no_ratio() -> None:
    rows = [r for r in runs() if r["family"] != "mlp"]
    lines = verdict_rows(rows)
    assert all(s["ratio"] is None and s["verdict"] == "no mlp finished" for s in lines)
    assert "Ratio to the MLP" in verdict_markdown(rows)
