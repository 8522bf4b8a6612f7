"""The report's parts for classification: the class balance of the split and a confusion matrix."""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from kanlab.report.parts import table
from kanlab.report.style import STYLE, run_title, save


def class_balance(task_rows: Sequence[dict[str, Any]]) -> str:
    """Rows per class in the training and test splits, their shares, and what always guessing the
    most common training class would score on the test set (the accuracy to beat)."""
    data = next((d for r in task_rows if (d := json.loads(r["final_json"] or "{}").get("data", {}))
                 .get("classes")), None)
    if data is None:
        return ""
    names, train, test = data["classes"], data["train_counts"], data["test_counts"]
    n_train, n_test = sum(train), sum(test)
    val = data.get("val_counts")  # a validation split, carved out of the training rows
    body = [[name, str(a), f"{a / n_train:.1%}", str(b), f"{b / n_test:.1%}"]
            for name, a, b in zip(names, train, test, strict=True)]
    if val:
        body = [[*cells, str(v), f"{v / sum(val):.1%}"] for cells, v in zip(body, val, strict=True)]
    majority = int(np.argmax(train))
    imbalance = max(train) / max(min(train), 1)
    split = data.get("split", {})
    note = (f"{len(names)} classes; the largest training class has {imbalance:.2g}x the rows of the "
            "smallest. "
            f"Always answering the most common training class ({names[majority]}) scores accuracy "
            f"{test[majority] / n_test:.1%} on the test set. Split: seed {split.get('seed', '?')}, "
            f"test fraction {split.get('test_fraction', '?')}, "
            + (f"validation fraction {split.get('val_fraction', '?')} of the training rows, " if val else "")
            + f"{'stratified by class' if split.get('stratified') else 'not stratified'}; inputs "
            f"standardised on the training rows ({split.get('standardize', '?')}).")
    head = ["Class", "Train rows", "Share", "Test rows", "Share"]
    head += ["Validation rows", "Share"] if val else []
    return ("<h3>Classes</h3>" + table(head, body, 1)
            + f'<p class="note">{escape(note)}</p>')


def confusion(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts of rows by true class (row) and predicted class (column)."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (true, pred), 1)
    return counts


def plot_confusion(run_dir: Path, out: Path | str) -> Path | None:
    """Confusion matrix of a classification run on its test set (rows: true class, columns: predicted).

    Args:
        run_dir: run folder with predictions.npz of a class task.
        out: output path stem.
    Returns:
        The PNG path, or None for other tasks or a run without predictions.
    """
    path = Path(run_dir) / "predictions.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        if "target_kind" not in z.files or str(z["target_kind"]) != "class":
            return None
        names, onehot, logits = z["target_names"].tolist(), z["y_test"], z["y_pred"]
    n = len(names)
    true, pred = onehot.argmax(1), np.nan_to_num(logits, nan=-np.inf).argmax(1)
    counts = confusion(true, pred, n)
    with plt.style.context(STYLE):
        side = min(9.0, 2.5 + 0.45 * n)
        fig, ax = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
        shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if shares[i, j] > 0.6 else "0.1")
        ax.set_xticks(range(n), names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
        ax.set_yticks(range(n), names)
        ax.grid(False)
        ax.set(xlabel="predicted class", ylabel="true class",
               title=f"{run_title(run_dir)}: test accuracy {float(np.mean(true == pred)):.1%}")
        fig.colorbar(im, ax=ax, shrink=0.85, label="share of the true class")
        return save(fig, out)
