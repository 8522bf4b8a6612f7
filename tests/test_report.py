"""Report tables (exact numbers), plots (sized, non-blank PNGs), the HTML page and its rendering."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest

from kanlab.report import (
    fmt_pm,
    plot_curves,
    plot_edges,
    plot_fit,
    plot_image,
    plot_loss_vs_params,
    plot_run,
    summary_table,
    winner,
    write_report,
)
from kanlab.report.style import DPI
from kanlab.report.tables import fmt_sci, fmt_time
from kanlab.runs.store import ResultsStore
from kanlab.study.config import parse_study
from kanlab.study.experiments import expand
from report_helpers import write_edges, write_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _row(label: str, family: str, seed: int, test: float | None, *, task: str = "zigzag",
         status: str = "finished", params: int = 1000, wall: float = 1.0,
         tps: float | None = 0.01) -> dict[str, Any]:
    return {"run_id": f"{task}-{label}-{seed}", "task": task, "task_key": task, "task_kind": "function",
            "label": label, "family": family, "seed": seed, "status": status, "param_count": params,
            "test_loss": test, "train_loss": None if test is None else test / 2, "psnr": None,
            "wall_time": wall, "time_per_step": tps}


def _rows() -> list[dict[str, Any]]:
    return [
        _row("KAN", "kan", 0, 1e-3, params=1010, tps=0.02),
        _row("KAN", "kan", 1, 2e-3, params=1010, tps=0.04),
        _row("KAN", "kan", 2, 4e-3, params=1010, tps=0.03),
        _row("KAN", "kan", 3, None, status="diverged", params=1010, wall=0.5, tps=0.05),
        _row("MLP", "mlp", 0, 1e-2, params=990), _row("MLP", "mlp", 1, 3e-2, params=1000),
        _row("RBF", "rbf", 0, None, status="failed", params=0, wall=0.1, tps=None),
        _row("MLP", "mlp", 0, 5e-4, task="other"), _row("KAN", "kan", 0, 2e-3, task="other"),
    ]


def test_summary_table_exact_numbers() -> None:
    table = summary_table(_rows())
    zig = [s for s in table if s["task"] == "zigzag"]
    assert [s["label"] for s in zig] == ["KAN", "MLP", "RBF"]  # by mean test loss, no finished seed last
    kan, mlp, rbf = zig
    # mean and sample std (ddof=1) over finished seeds only
    assert kan["test_loss_mean"] == pytest.approx(np.mean([1e-3, 2e-3, 4e-3]), rel=1e-12)
    assert kan["test_loss_std"] == pytest.approx(np.std([1e-3, 2e-3, 4e-3], ddof=1), rel=1e-12)
    assert kan["train_loss_mean"] == pytest.approx(np.mean([5e-4, 1e-3, 2e-3]), rel=1e-12)
    assert mlp["test_loss_std"] == pytest.approx(np.std([1e-2, 3e-2], ddof=1), rel=1e-12)
    assert (kan["n_seeds"], kan["n_finished"], kan["n_diverged"], kan["n_failed"]) == (4, 3, 1, 0)
    assert (rbf["n_finished"], rbf["n_failed"]) == (0, 1)
    assert rbf["test_loss_mean"] is None and rbf["test_loss_std"] is None
    assert kan["time_per_step"] == pytest.approx(np.median([0.02, 0.04, 0.03, 0.05]))
    assert kan["total_time"] == pytest.approx(3.5)
    assert (kan["params"], mlp["params"], rbf["params"]) == (1010, 995, None)
    assert kan["psnr_mean"] is None
    other = [s for s in table if s["task"] == "other"]
    assert [s["label"] for s in other] == ["MLP", "KAN"]
    assert other[0]["test_loss_std"] is None  # one seed: no std


def test_winner_and_factor() -> None:
    wins = {w["task"]: w for w in winner(_rows())}
    zig = wins["zigzag"]
    assert (zig["best"]["label"], zig["rival"]["label"], zig["best_is_mlp"]) == ("KAN", "MLP", False)
    assert zig["factor"] == pytest.approx(np.mean([1e-2, 3e-2]) / np.mean([1e-3, 2e-3, 4e-3]))
    other = wins["other"]  # an MLP wins: the rival is the best non-MLP, factor still >= 1
    assert (other["best"]["label"], other["rival"]["label"], other["best_is_mlp"]) == ("MLP", "KAN", True)
    assert other["factor"] == pytest.approx(4.0)
    lonely = winner([_row("KAN", "kan", 0, 1e-3, task="t")])
    assert lonely[0]["rival"] is None and lonely[0]["factor"] is None


def test_formatting() -> None:
    assert fmt_pm(1.2345e-4, 5.67e-6) == "1.23e-04 ± 5.7e-06"
    assert fmt_pm(1.2345e-4, None) == "1.23e-04"
    assert fmt_sci(None) == fmt_sci(math.nan) == "n/a"
    assert (fmt_time(0.0123), fmt_time(4.56), fmt_time(185.0)) == ("12.3 ms", "4.56 s", "3 min 05 s")


def _check_png(png: Path | None, size: tuple[float, float] | None = None) -> np.ndarray:
    assert png is not None and png.suffix == ".png" and png.stat().st_size > 0
    svg = png.with_suffix(".svg").read_text()
    pixels = mpimg.imread(png)
    # the SVG gives the figure size in points: the PNG must be exactly that many inches * DPI
    found = re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    assert found is not None
    w_pt, h_pt = (float(v) for v in found.groups())
    assert pixels.shape[:2] == (round(h_pt / 72 * DPI), round(w_pt / 72 * DPI))
    if size is not None:
        assert pixels.shape[:2] == (round(size[1] * DPI), round(size[0] * DPI))
    assert float(pixels[..., :3].std()) > 0.01
    return pixels


def test_plot_fit_and_image(tmp_path: Path) -> None:
    fn = write_run(tmp_path, "e", label="KAN", family="kan")
    img = write_run(tmp_path, "e", label="SIREN", family="mlp", task="cam.png", kind="image", test_loss=1e-3)
    _check_png(plot_fit(fn, tmp_path / "out" / "fit"), (8, 5.5))
    assert plot_image(fn, tmp_path / "out" / "none") is None
    assert plot_fit(img, tmp_path / "out" / "none") is None
    pixels = _check_png(plot_image(img, tmp_path / "out" / "image.png"), (12.8, 4.9))
    assert pixels.shape[2] in (3, 4)
    assert "PSNR 30.00 dB" in (tmp_path / "out" / "image.svg").read_text()


def test_plot_edges(tmp_path: Path) -> None:
    run = write_run(tmp_path, "e", label="KAN", family="kan", layers=((2, 3), (3, 1)))
    _check_png(plot_edges(run, tmp_path / "edges"))
    svg = (tmp_path / "edges.svg").read_text()
    assert "layer 0: 2 inputs → 3 outputs" in svg and "layer 1: 3 inputs → 1 output<" in svg
    assert "spline knots" in svg
    big = tmp_path / "big"
    big.mkdir()
    write_edges(big / "edges.npz", ((14, 13),), knots=False)
    _check_png(plot_edges(big, tmp_path / "big_edges"))
    assert "first 12 x 12 edges shown" in (tmp_path / "big_edges.svg").read_text()
    mlp = write_run(tmp_path, "e", label="MLP", family="mlp")
    assert plot_edges(mlp, tmp_path / "none") is None


def test_plots_of_a_diverged_run_and_of_2d_and_3d_inputs(tmp_path: Path) -> None:
    run = write_run(tmp_path, "e", label="KAN", family="kan", status="diverged", test_loss=math.nan)
    with np.load(run / "predictions.npz") as z:
        pred = {k: z[k] for k in z.files}
    np.savez(run / "predictions.npz", **{**pred, "y_pred": np.full_like(pred["y_pred"], np.nan)})
    write_edges(run / "edges.npz", ((1, 2),), knots=True)
    with np.load(run / "edges.npz") as z:
        edges = {k: z[k] for k in z.files}
    np.savez(run / "edges.npz", **{**edges, "layer0_y": np.full_like(edges["layer0_y"], np.nan)})
    written = plot_run(run, tmp_path / "plots")  # warnings are errors: NaNs must plot quietly
    assert [p.name for p in written] == ["fit.png", "edges.png", "curves.png"]
    assert "not finite" in (tmp_path / "plots" / "edges.svg").read_text()
    rng = np.random.default_rng(0)
    for d, size in ((2, (13, 4.4)), (3, (6, 6))):
        x = rng.uniform(-1, 1, (300, d))
        y = np.sin(x.sum(axis=1, keepdims=True))
        noisy = y + 0.05 * rng.standard_normal(y.shape)
        np.savez(run / "predictions.npz", coords_test=x, y_test=y, y_pred=noisy,
                 image_shape=np.zeros(0, dtype=int))
        _check_png(plot_fit(run, tmp_path / f"fit{d}d"), size)


def test_plot_curves_and_loss_vs_params(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "e", label=lab, family=fam, seed=s, test_loss=t, param_count=p)
            for lab, fam, p, base in (("KAN", "kan", 300, 1e-4), ("MLP", "mlp", 310, 1e-3))
            for s, t in ((0, base), (1, 2 * base))]
    with ResultsStore(tmp_path / "k.db") as store:
        ids = [store.record_run(r) for r in runs]
        curves = [(r["label"], store.curves(i)) for r, i in zip(store.runs(), ids, strict=True)]
        rows = store.runs()
    _check_png(plot_curves(curves, tmp_path / "curves"), (8, 5))
    _check_png(plot_loss_vs_params(rows, tmp_path / "params"), (7.5, 5))
    written = plot_run(runs[0], tmp_path / "run_plots")
    assert [p.name for p in written] == ["fit.png", "edges.png", "curves.png"]


class _Page(HTMLParser):
    """Collects the summary tables' body rows, img sources, src/href values and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[int] = []
        self.in_summary = self.in_body = False
        self.images: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("class") == "summary":
            self.in_summary = True
            self.tables.append(0)
        elif tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_summary and self.in_body:
            self.tables[-1] += 1
        elif tag == "img":
            self.images.append(a.get("src") or "")
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_summary = False
        elif tag == "tbody":
            self.in_body = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)


LOSSES = {"KAN": (1e-4, 3e-4), "MLP tanh": (2e-3, 4e-3), "RBF-KAN": (5e-4, math.nan)}
FAMILIES = {"KAN": "kan", "MLP tanh": "mlp", "RBF-KAN": "rbf"}
PARAMS = {"KAN": 1210, "MLP tanh": 1185, "RBF-KAN": 1203}
DIVERGED = "loss became nan at step 12 <lr too high>"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    with ResultsStore(root / "kanlab.db") as store:
        for task, kind in (("zigzag", "function"), ("images/cam.png", "image")):
            for label, losses in LOSSES.items():
                for seed, loss in enumerate(losses):
                    bad = not math.isfinite(loss)
                    store.record_run(write_run(
                        root, "blog", label=label, family=FAMILIES[label], seed=seed, task=task, kind=kind,
                        test_loss=loss, status="diverged" if bad else "finished",
                        message=DIVERGED if bad else None, param_count=PARAMS[label]))
    return write_report(root / "kanlab.db", "blog", root / "report")


def test_report_html(report: Path) -> None:
    page = _Page()
    source = report.read_text()
    page.feed(source)
    text = unescape("".join(page.text))
    assert page.tables == [3, 3]
    for label, losses in LOSSES.items():
        done = [x for x in losses if math.isfinite(x)]
        std = float(np.std(done, ddof=1)) if len(done) > 1 else None
        assert fmt_pm(float(np.mean(done)), std) in text, label
    assert DIVERGED in text and "2 run(s) diverged, failed or found no formula" in text
    assert "<lr too high>" not in source  # escaped
    assert "On zigzag, the best model is KAN" in text and "times lower than the best MLP, MLP tanh" in text
    # The verdict table per task: the MLP's loss over KAN's, paired by seed: sqrt(20 x 13.3) = 16.3.
    assert text.count("Verdict: does a KAN beat the MLP here, and at what cost?") == 2
    assert text.count("16.3x lower loss than MLP tanh") == 2
    assert len(page.images) == 2 * (3 + 3 + 2)  # per task: curves, params, costs, 3 fits/images, 2 edge grids
    # FLOPs per sample from each spec (family:1-3-1): KAN 6 edges x (5 + 3 + 1 base), local (3 + 1 + 1)
    assert "FLOPs / sample" in text and "54 (local 30)" in text
    assert '<td class="text">mlp</td><td class="num">1,185</td><td class="num">6</td>' in source
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert not [v for v in page.links if re.match(r"\s*https?:", v, re.I)]
    assert "http://" not in source and "https://" not in source  # nothing to fetch, not even a link
    assert source.count("<details>") == 3
    first_config = unescape(source.split("<pre>", 1)[1].split("</pre>", 1)[0])
    assert json.loads(first_config)["seeds"] == [0, 1]


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


CHECK = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message || e.type)); }, true);
(function () { var err = console.error; console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " ")); err.apply(console, arguments); }; })();
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  var out = document.createElement("pre"); out.id = "kanlab-check";
  out.textContent = JSON.stringify({images: imgs.length, broken: broken, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.browser
def test_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("headless Chromium not installed (/usr/bin/chromium or chromium on PATH)")
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
    copy = report.with_name("report-check.html")  # the check script goes into a copy, never the report
    copy.write_text(report.read_text().replace("<head>", "<head>" + CHECK, 1))
    dom = subprocess.run([*base, f"--user-data-dir={tmp_path / 'p1'}", "--virtual-time-budget=5000",
                          "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="kanlab-check">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-2000:]
    result = json.loads(unescape(found.group(1)))
    page = _Page()
    page.feed(report.read_text())  # the browser must see every image the HTML holds, and draw each one
    assert len(page.images) >= 10
    assert result == {"images": len(page.images), "broken": 0, "errors": []}
    assert "Uncaught" not in dom.stderr
    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--user-data-dir={tmp_path / 'p2'}", f"--screenshot={shot}",
                    "--window-size=1280,2000", report.as_uri()], capture_output=True, text=True, timeout=120)
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (2000, 1280) and float(pixels[..., :3].std()) > 0.01
    if os.environ.get("KANLAB_SCREENSHOT_DIR"):
        target = Path(os.environ["KANLAB_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / "report.png")


def three_data_tasks(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A study of three CSV tasks (two files of one name in two folders) run into tmp_path/runs."""
    from kanlab.runs.driver import run_experiments
    from kanlab.study.config import parse_study
    from kanlab.study.experiments import expand

    files = []
    for name, fn in (("a/one.csv", np.sin), ("b/two.csv", np.cos), ("c/two.csv", np.square)):
        path = tmp_path / name
        path.parent.mkdir()
        xs = np.linspace(-1, 1, 30)
        path.write_text("x,y\n" + "".join(f"{float(x)!r},{float(fn(x))!r}\n" for x in xs))
        files.append(path)
    study = parse_study({"name": "two", "seeds": [0, 1], "train": {"steps": 3, "eval_every": 3},
                         "tasks": [{"kind": "data", "path": str(p), "targets": ["y"]} for p in files],
                         "models": [{"family": "mlp", "spec": "mlp:1-4-1"}]})
    db = tmp_path / "runs" / "kanlab.db"
    run_experiments(expand(study), tmp_path / "runs", db)
    return db, files


def test_data_tasks_are_grouped_apart_with_their_own_numbers(tmp_path: Path) -> None:
    # Both were named "zigzag" (TaskConfig's default name), and the summary averaged over both files.
    from kanlab.report.tables import task_labels

    db, files = three_data_tasks(tmp_path)
    with ResultsStore(db) as store:
        rows = store.runs()
    labels = task_labels(rows)
    path_of = {r["task_key"]: json.loads(r["config_json"])["task"]["path"] for r in rows}
    assert sorted(labels[k] for k in path_of) == ["one", f"two (path={files[1]})", f"two (path={files[2]})"]
    lines = summary_table(rows)
    assert len(lines) == 3 and {path_of[s["task_key"]] for s in lines} == set(map(str, files))
    for line in lines:
        losses = [r["test_loss"] for r in rows if path_of[r["task_key"]] == path_of[line["task_key"]]]
        assert len(losses) == 2 and line["test_loss_mean"] == pytest.approx(np.mean(losses), rel=1e-12)


def test_runs_on_another_thread_count_supersede_the_earlier_rows_in_reports(tmp_path: Path) -> None:
    # The thread count is part of a run's identity: a study run by `kanlab run` (its threads) and
    # then by `kanlab sweep` (one), or run again after upgrading, gets a second run of each
    # configuration; a report averaging both would count each seed twice.
    from kanlab.report.parts import by_config, left_out_note, read_experiment
    from kanlab.runs.driver import run_experiments

    db = tmp_path / "kanlab.db"
    ids, plans = [], []
    for threads, steps in ((2, 2), (1, 2), (1, 3)):  # the last: another configuration, shown apart
        plans.append(expand(parse_study(tiny_study(steps=steps)), threads=threads))
        run_experiments(plans[-1], tmp_path, db)
        ids += sorted(e.run_id for e in plans[-1])
    with ResultsStore(db) as store:
        assert len(store.runs()) == 6  # the earlier rows stay in the database
    rows, curves, left_out = read_experiment(db, "s")  # no file: every configuration, apart
    assert sorted(r["run_id"] for r in rows) == sorted(curves) == sorted(ids[2:]) and left_out == 2
    assert sorted({r["label"] for r in by_config(rows)}) == ["MLP (train.steps=2)", "MLP (train.steps=3)"]
    # The study's file as it ran on 2 threads (`kanlab report FILE` plans on this process's count):
    # the 1-thread runs of that configuration, the latest, stand in for the 2-thread ones.
    rows, _, left_out = read_experiment(db, "s", replace_threads(plans[0], 2))
    assert sorted(r["run_id"] for r in rows) == sorted(e.run_id for e in plans[0]) and left_out == 4
    rows, _, left_out = read_experiment(db, "s", replace_threads(plans[0], 3))
    assert sorted(r["run_id"] for r in rows) == sorted(e.run_id for e in plans[1]) and left_out == 4
    assert "Not shown: 2 other run(s) of this study in the database: later runs of the same" in (
        left_out_note(2, planned=False))
    assert left_out_note(0, planned=True) == ""


def tiny_study(**train: Any) -> dict[str, Any]:
    return {"name": "s", "seeds": [0, 1], "train": {"steps": 2, "eval_every": 1, **train},
            "tasks": [{"name": "zigzag", "n_train": 16, "n_test": 8}],
            "models": [{"label": "MLP", "family": "mlp", "spec": "mlp:1-3-1"}]}


def replace_threads(exps: list[Any], threads: int) -> list[Any]:
    from dataclasses import replace

    return [replace(e, threads=threads) for e in exps]


def final_losses(rows: list[dict[str, Any]]) -> list[float]:
    """The test losses of rows read from their run folders' final.json (not from the database)."""
    return [json.loads((Path(r["run_dir"]) / "final.json").read_text())["test_loss"] for r in rows]


def test_without_its_file_a_report_tells_configurations_apart_but_not_a_sweeps_points() -> None:
    from kanlab.report.parts import by_config

    def row(run_id: str, lr: float, spec: str, sweep: dict[str, Any] | None) -> dict[str, Any]:
        config = {"label": "KAN", "spec": spec, "seed": 0, "train": {"lr": lr, "seed": 0},
                  **({"sweep": sweep} if sweep else {})}
        return {"run_id": run_id, "task_key": "t", "label": "KAN", "config_json": json.dumps(config)}

    def budget(r: dict[str, Any]) -> Any:  # the sweep report's cells: budget (and axes)
        return json.loads(r["config_json"])["sweep"]["budget"]

    points = [row("a", 0.1, "kan:1-2-1", {"budget": 10}), row("b", 0.1, "kan:1-5-1", {"budget": 30})]
    assert [r["label"] for r in by_config(points, budget)] == ["KAN", "KAN"]  # two budgets: two cells
    edited = [*points, row("c", 0.3, "kan:1-5-1", {"budget": 30})]  # one budget, two learning rates
    assert [r["label"] for r in by_config(edited, budget)] == [
        "KAN", "KAN (train.lr=0.1)", "KAN (train.lr=0.3)"]
    study = [row("d", 0.1, "kan:1-2-1", None), row("e", 0.1, "kan:1-3-1", None)]
    assert [r["label"] for r in by_config(study)] == ["KAN (spec=kan:1-2-1)", "KAN (spec=kan:1-3-1)"]


def test_a_report_shows_only_the_runs_of_the_study_as_it_is_now(tmp_path: Path) -> None:
    # Edit a study's lr and rerun it under its name: the report averaged the old runs and the new
    # ones of each label together (they share label and task key).
    from kanlab.report.parts import by_config, read_experiment
    from kanlab.runs.driver import run_experiments

    db = tmp_path / "kanlab.db"
    plans = {lr: expand(parse_study(tiny_study(lr=lr)), threads=1) for lr in (0.01, 0.3)}
    folders = {lr: run_experiments(exps, tmp_path, db) for lr, exps in plans.items()}
    rows, curves, left_out = read_experiment(db, "s", plans[0.3])
    assert sorted(r["run_dir"] for r in rows) == sorted(map(str, folders[0.3])) and left_out == 2
    new = [json.loads((f / "final.json").read_text())["test_loss"] for f in folders[0.3]]
    old = [json.loads((f / "final.json").read_text())["test_loss"] for f in folders[0.01]]
    assert abs(np.mean(new) - np.mean(old)) > 1e-6  # the two configurations give other numbers
    (line,) = summary_table(rows)
    assert line["label"] == "MLP" and line["test_loss_mean"] == pytest.approx(np.mean(new), rel=1e-12)
    # Without the file (`kanlab report s`): both configurations, apart, each with its own numbers.
    rows, _, left_out = read_experiment(db, "s")
    rows = by_config(rows)  # as the study report does
    lines = {s["label"]: s for s in summary_table(rows)}
    assert sorted(lines) == ["MLP (train.lr=0.01)", "MLP (train.lr=0.3)"] and left_out == 0
    for lr in plans:
        of = [r for r in rows if r["label"] == f"MLP (train.lr={lr})"]
        assert lines[f"MLP (train.lr={lr})"]["test_loss_mean"] == pytest.approx(np.mean(final_losses(of)))
        assert sorted(final_losses(of)) == sorted(new if lr == 0.3 else old)
    with pytest.raises(ValueError, match=r"none of the 4 runs of 's' in .* is of the study as it is now"):
        read_experiment(db, "s", expand(parse_study(tiny_study(lr=0.2)), threads=1))


@pytest.mark.slow  # the report draws a dozen plots
def test_two_data_tasks_get_two_sections_with_their_own_numbers(tmp_path: Path) -> None:
    # The report said "1 task(s), Task: zigzag" and averaged over both files.
    db, files = three_data_tasks(tmp_path)
    html = unescape(write_report(db, "two", tmp_path / "report").read_text())
    assert "6 runs, 3 task(s), 1 model(s)" in html
    with ResultsStore(db) as store:
        rows = store.runs()
    sections = html.split('<h2 id="task-')[1:]
    titles = sorted(s.split("</h2>", 1)[0].split(">", 1)[1] for s in sections)
    from kanlab.study.code_version import code_version

    note = '<span class="note">(data: {}, sha256 {}; code ' + code_version()[:12] + ")</span>"
    assert titles == [f"Task: one {note.format(files[0], sha(files[0]))}",
                      f"Task: two (path={files[1]}) {note.format(files[1], sha(files[1]))}",
                      f"Task: two (path={files[2]}) {note.format(files[2], sha(files[2]))}"]
    for path in files:  # each section's mean test MSE is that file's runs' own
        losses = [r["test_loss"] for r in rows if json.loads(r["config_json"])["task"]["path"] == str(path)]
        (section,) = [s for s in sections if f"(data: {path}," in s.split("</h2>", 1)[0]]
        table = section.split('<table class="summary">', 1)[1].split("</table>", 1)[0]
        assert len(losses) == 2 and fmt_pm(float(np.mean(losses)), float(np.std(losses, ddof=1))) in table


def sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _grid_rows() -> list[dict[str, Any]]:
    # Three seeds of one label with grid stages, a diverged run and a one-stage run that must not count.
    rng = np.random.default_rng(7)
    rows = []
    for seed in range(3):
        stages = [{"grid_size": g, "step": 200 * (n + 1),
                   "train_rmse": float(0.5 * g**-3.1 * rng.uniform(0.5, 2)),
                   "test_rmse": float(g**-2.7 * rng.uniform(0.5, 2))}
                  for n, g in enumerate((3, 5, 10, 20, 50))]
        rows.append({"label": "KAN", "seed": seed, "status": "finished",
                     "final_json": json.dumps({"stages": stages})})
    bad = [{"grid_size": g, "step": 1, "train_rmse": 9.0, "test_rmse": 9.0} for g in (3, 5)]
    rows.append({"label": "KAN", "seed": 9, "status": "diverged", "final_json": json.dumps({"stages": bad})})
    rows.append({"label": "MLP", "seed": 0, "status": "finished",
                 "final_json": json.dumps({"stages": bad[:1]})})
    return rows


def test_grid_scaling_plots_the_stored_medians_their_fitted_slope_and_g_minus_4() -> None:
    import matplotlib.pyplot as plt

    from kanlab.report.grid_scaling import draw, grid_series

    rows = _grid_rows()
    (series,) = grid_series(rows)  # the diverged run and the one-stage MLP are left out
    grids = np.array([3, 5, 10, 20, 50], dtype=float)
    stages = [json.loads(r["final_json"])["stages"] for r in rows[:3]]
    want = {w: np.median([[st[f"{w}_rmse"] for st in s] for s in stages], axis=0) for w in ("train", "test")}
    fig, ax = plt.subplots()
    draw(ax, [series])
    lines = {line.get_gid(): line for line in ax.get_lines()}
    for which in ("train", "test"):
        line = lines[f"KAN|{which}"]
        np.testing.assert_array_equal(line.get_xdata(), grids)
        np.testing.assert_allclose(line.get_ydata(), want[which], rtol=1e-15)
        slope = np.polyfit(np.log(grids), np.log(want[which]), 1)[0]  # independent least squares
        assert f"slope {slope:.2f}" in line.get_label()
        assert series.slope(which) == pytest.approx(slope, rel=1e-12)
    theory = lines["KAN|theory"]
    np.testing.assert_allclose(theory.get_ydata(), want["test"][0] * (grids / 3) ** -4.0, rtol=1e-12)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    plt.close(fig)
