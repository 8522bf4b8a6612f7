"""Building blocks of the HTML reports: the stylesheet, embedded figures, table rows, run folders."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from kanlab.runs.store import ResultsStore
from kanlab.study.config import ExperimentConfig

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --accent: #2f6fb3; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #f6f7f9;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.7em; margin: 0 0 4px; } h2 { margin-top: 2.2em; border-bottom: 2px solid var(--line); }
h3 { margin: 1.6em 0 0.5em; } .sub { color: var(--muted); margin: 0 0 18px; }
.headline { font-size: 1.08em; border-left: 4px solid var(--accent); background: #f0f5fb;
            padding: 10px 14px; margin: 10px 0; }
.alert { border: 2px solid var(--bad); background: #fdf0ef; padding: 10px 14px; margin: 14px 0; }
.alert h2 { margin-top: 0.2em; color: var(--bad); border: 0; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 4px; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 9px; border-bottom: 1px solid var(--line); text-align: right; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; } tbody tr:nth-child(even) { background: #fafbfc; }
th.text, td.text { text-align: left; } td.num { white-space: nowrap; }
tr.best td { font-weight: 600; background: #eaf6ea; }
td.msg { text-align: left; white-space: pre-wrap; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
         font-size: 0.85em; }
.note { color: var(--muted); font-size: 0.9em; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; flex: 1 1 480px; min-width: 0; } figure img { width: 100%; height: auto; display: block; }
th:first-child, td:first-child { min-width: 9em; }
figcaption { color: var(--muted); font-size: 0.88em; margin-top: 2px; }
details { border: 1px solid var(--line); border-radius: 4px; margin: 8px 0; padding: 6px 12px; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f4f5f7; padding: 10px; overflow-x: auto; font-size: 0.82em; }
footer { margin-top: 3em; color: var(--muted); font-size: 0.85em; }
"""

ROW_PX = 1650  # pixel width of plots that may share one ~1180 px row


def slug(text: str) -> str:
    """A file-name-safe short form of text."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:60] or "x"


def png_width(png: Path) -> int:
    """Pixel width of a PNG file, read from its header."""
    with png.open("rb") as f:
        return int.from_bytes(f.read(24)[16:20], "big")  # IHDR: width is bytes 16-20 of a PNG


def figure(png: Path | None, caption: str, *, natural: bool = False) -> str:
    """A <figure> with the PNG embedded as a data URI ("" for None).

    natural: share the row in proportion to the PNGs' pixel widths, never wider than 1:1.
    """
    if png is None:
        return ""
    raw = png.read_bytes()
    style = ""
    if natural:
        width = int.from_bytes(raw[16:20], "big")
        style = f' style="flex: {width} 1 0; max-width: {width}px"'
    data = base64.b64encode(raw).decode("ascii")
    return (f'<figure{style}><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def run_folder(row: dict[str, Any], db_path: Path) -> Path | None:
    """A store row's run folder: the recorded path, else the default layout next to the database."""
    for folder in (Path(row["run_dir"]), db_path.parent / row["experiment"] / row["run_id"]):
        if folder.is_dir():
            return folder
    return None


def row(cells: Sequence[str], n_text: int, tag: str = "td", cls: str = "") -> str:
    """A table row: the first n_text cells left-aligned text, the rest right-aligned numbers."""
    tds = "".join(f'<{tag} class="{"text" if i < n_text else "num"}">{escape(c)}</{tag}>'
                  for i, c in enumerate(cells))
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>{tds}</tr>"


Row = dict[str, Any]


def read_experiment(db_path: Path, experiment: str, runs: Sequence[ExperimentConfig] | None = None
                    ) -> tuple[list[Row], dict[str, list[Row]], int]:
    """The store rows a report of an experiment shows, each run's curve, and how many rows it leaves out.

    Args:
        db_path: the results database.
        experiment: the study's name.
        runs: the study's current expansion (what run/compare/sweep just ran, or the expansion of the
            study's file): exactly these runs are shown, or where one is missing, the latest run that
            differs from it only in its thread count. None (no file): the latest of runs that differ
            only in code version or threads (current); the report then tells configurations apart
            (by_config).
    Returns:
        (rows, curves by run_id, how many of the experiment's rows are left out).
    """
    if not db_path.is_file():  # the store would create an empty database: say what is wrong instead
        raise FileNotFoundError(f"no results database at {db_path}")
    with ResultsStore(db_path) as store:
        rows = store.runs(experiment)
        if not rows:
            known = ", ".join(store.experiments()) or "none"
            raise ValueError(f"experiment {experiment!r} has no runs in {db_path} (recorded: {known})")
        kept = current(rows) if runs is None else planned(rows, runs)
        if not kept:
            raise ValueError(f"none of the {len(rows)} runs of {experiment!r} in {db_path} is of the study "
                             "as it is now (its configuration, --set overrides, data or kanlab code changed "
                             "since they ran): run it again to get them")
        return kept, {r["run_id"]: store.curves(r["run_id"]) for r in kept}, len(rows) - len(kept)


# The fields of a run's identity (config.json also holds annotations: sweep coordinates, a tune's best).
IDENTITY = tuple(f.name for f in dataclasses.fields(ExperimentConfig) if f.name != "match")


def _identity(config: dict[str, Any], *, without: tuple[str, ...] = ()) -> str:
    return json.dumps({k: v for k, v in config.items() if k in IDENTITY and k not in without}, sort_keys=True)


def _config(row: Row) -> dict[str, Any]:
    return json.loads(row["config_json"]) if row.get("config_json") else {"run_id": row["run_id"]}


def planned(rows: Sequence[Row], runs: Sequence[ExperimentConfig]) -> list[Row]:
    """The rows of a study's expansion: each planned run's own row, else (a `kanlab report FILE` of a
    study run on another thread count, as by `kanlab sweep`) the latest row differing only in threads."""
    ids = {e.run_id for e in runs}
    wanted = {_identity(e.to_dict(), without=("threads",)) for e in runs}
    exact = [r for r in rows if r["run_id"] in ids]
    have = {_identity(_config(r), without=("threads",)) for r in exact}
    others = [r for r in rows if r["run_id"] not in ids
              and _identity(_config(r), without=("threads",)) in wanted - have]
    kept = {r["run_id"] for r in exact + current(others, without=("threads",))}
    return [r for r in rows if r["run_id"] in kept]  # in the store's order


def current(rows: Sequence[Row], without: tuple[str, ...] = ("threads", "code_version")) -> list[Row]:
    """Of runs that differ only in the fields `without` (their thread count and code version), the latest.

    Both are part of a run's identity, so a study run on another count (by `kanlab sweep` after
    `kanlab run`) or again after upgrading kanlab gives new runs of the same configuration; the
    earlier rows stay in the database, but a report that averaged both would count each seed twice.
    """
    latest: dict[str, Row] = {}
    for r in sorted(rows, key=lambda r: (r["created"], r["run_id"])):
        latest[_identity(_config(r), without=without) if r.get("config_json") else r["run_id"]] = r
    kept = {r["run_id"] for r in latest.values()}
    return [r for r in rows if r["run_id"] in kept]  # in the store's order


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _settings(row: Row) -> dict[str, Any]:
    """A row's identity, flat ("train.lr"), less its seed: what its runs of other seeds share."""
    flat = _flat(json.loads(_identity(_config(row))))
    return {k: v for k, v in flat.items() if k not in ("seed", "train.seed")}


def by_config(rows: Sequence[Row], cell: Callable[[Row], Any] = lambda r: None) -> list[Row]:
    """Rows whose label several configurations share within a task and cell (a study edited and rerun
    under its name), each relabelled with what sets its configuration apart, e.g. "KAN
    (train.lr=0.1)": a report averages the runs of a label (in a cell), and must never average
    different configurations as one model.

    Args:
        rows: store rows.
        cell: what else the report groups by (the sweep report: budget and axes, whose points
            differ in their configurations by design); JSON-ready.
    """
    settings = {r["run_id"]: _settings(r) for r in rows}

    def group(r: Row) -> tuple[str, str, str]:
        return r["task_key"], r["label"], json.dumps(cell(r), sort_keys=True)

    groups: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for r in rows:
        config = settings[r["run_id"]]
        groups.setdefault(group(r), {})[json.dumps(config, sort_keys=True)] = config
    out = []
    for r in rows:
        configs = groups[group(r)]
        if len(configs) < 2:
            out.append(r)
            continue
        keys = sorted({k for c in configs.values() for k in c})
        differ = [k for k in keys if len({json.dumps(c.get(k)) for c in configs.values()}) > 1]
        own = settings[r["run_id"]]
        out.append({**r, "label": f"{r['label']} ({', '.join(f'{k}={_short(own.get(k))}' for k in differ)})"})
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if isinstance(value, str) and len(text) == 64 else text  # a SHA-256: its first 12


def left_out_note(count: int, *, planned: bool) -> str:
    """A note saying how many of the study's rows the report leaves out, and why ("" for none)."""
    if not count:
        return ""
    why = ("they are not runs of the study as it is now (an earlier configuration, data, kanlab code "
           "or thread count)" if planned else
           "later runs of the same configuration on another kanlab code version or number of threads "
           "replaced them")
    return (f'<p class="note">Not shown: {count} other run(s) of this study in the database: {why}. They '
            "stay in the database.</p>")


def write_page(out_dir: Path, title: str, body: str) -> Path:
    """out_dir/report.html: a self-contained page with the stylesheet, the title and an HTML body."""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head>\n<body><main><h1>{escape(title)}</h1>\n{body}\n</main></body></html>\n")
    path = Path(out_dir) / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def table(head: Sequence[str], body: Sequence[Sequence[str]], n_text: int) -> str:
    """An HTML table; the first n_text columns are text (left-aligned), the rest numbers."""
    return (f"<table><thead>{row(head, n_text, 'th')}</thead><tbody>"
            + "".join(row(cells, n_text) for cells in body) + "</tbody></table>")
