"""The CLI end to end on the smoke preset: run folders, database, report, resume, bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from kanlab.cli import main
from kanlab.runs.experiment import load_run

SMALL = ["--set", "train.steps=20", "--set", "train.eval_every=10"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    assert main(["compare", "smoke", "--root", str(root), *SMALL]) == 0
    return root


def rows(root: Path) -> list[dict]:  # type: ignore[type-arg]
    con = sqlite3.connect(root / "kanlab.db")
    con.row_factory = sqlite3.Row
    out = [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY run_id")]
    con.close()
    return out


def test_compare_smoke_writes_runs_database_and_report(smoke: Path, capsys: pytest.CaptureFixture) -> None:
    runs = rows(smoke)
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}
    assert {r["family"] for r in runs} == {"kan", "mlp"}
    for r in runs:
        folder = Path(r["run_dir"])
        final = json.loads((folder / "final.json").read_text())
        assert r["test_loss"] == pytest.approx(final["test_loss"]) and final["steps"] == 20
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == [0, 10, 20]
        assert (folder / "plots").is_dir() and any((folder / "plots").glob("*.png"))
        # The checkpoint reloads (weights_only) into a model that reproduces the saved predictions.
        exp, model = load_run(folder)
        pred = np.load(folder / "predictions.npz")
        with torch.no_grad():
            from kanlab.tasks import make_dataset

            data = make_dataset(exp.task)
            np.testing.assert_allclose(model(data.x_test).numpy(), pred["y_pred"], rtol=1e-6, atol=1e-7)
    report = smoke / "smoke" / "report.html"
    assert report.is_file() and "zigzag" in report.read_text()


def test_rerun_resumes_without_redoing_finished_runs(smoke: Path, capsys: pytest.CaptureFixture) -> None:
    stamps = {r["run_id"]: Path(r["run_dir"], "final.json").stat().st_mtime_ns for r in rows(smoke)}
    assert main(["run", "smoke", "--root", str(smoke), *SMALL]) == 0
    after = {r["run_id"]: Path(r["run_dir"], "final.json").stat().st_mtime_ns for r in rows(smoke)}
    assert after == stamps and len(rows(smoke)) == 4


def test_eval_reloads_the_checkpoint(smoke: Path, capsys: pytest.CaptureFixture) -> None:
    run = rows(smoke)[0]
    capsys.readouterr()
    assert main(["eval", run["run_dir"]]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_loss"] == pytest.approx(run["test_loss"], rel=1e-5)


def test_same_config_and_seed_give_identical_curves(tmp_path: Path) -> None:
    losses = []
    for name in ("a", "b"):
        root = tmp_path / name
        assert main(["run", "smoke", "--no-plots", "--root", str(root), *SMALL]) == 0
        losses.append([(r["run_id"], r["test_loss"], r["train_loss"]) for r in rows(root)])
    assert losses[0] == losses[1]


def test_a_diverging_run_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    code = main(["compare", "smoke", "--root", str(tmp_path), *SMALL, "--set", "models.1.train={lr=1e8}",
                 "--set", "train.optimizer=sgd"])
    assert code == 0
    statuses = {(r["family"], r["status"]) for r in rows(tmp_path)}
    assert ("mlp", "diverged") in statuses and ("kan", "finished") in statuses
    assert "diverged" in (tmp_path / "smoke" / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-preset"], "unknown preset 'no-such-preset'; presets: "),
        (["run", "smoke", "--set", "train.bogus=1"], "unknown key(s) bogus in train"),
        (["run", "smoke", "--set", "tasks.1.name=/no/such/image.png"], "/no/such/image.png"),
        (["eval", "/no/such/run"], "/no/such/run"),
        (["plot", "/no/such/run"], "/no/such/run is not a run folder"),  # printed nothing, exit 0
        (["run", "smoke", "--set", "tasks=5"], "tasks must be a list of tables ([[tasks]] entries), got 5"),
        (["run", "smoke", "--set", "models=[1]"], "models.0 must be a table of key = value pairs, got 1"),
        (["run", "smoke", "--set", "tasks.0.train=3"], "tasks.0.train must be a table"),
        (["run", "smoke", "--set", "budget=big"], "budget must be a whole number >= 1 (e.g. 2, 300 or 1e4), "
                                                  "got 'big'"),
        (["run", "smoke", "--set", "models.1.budget=0"], "models.1.budget must be a whole number >= 1"),
        (["run", "smoke", "--set", "models.0.depth=[2]"], "models.0.depth must be a whole number >= 1"),
        (["run", "smoke", "--set", "models.0.family=0"], "models.0.family must be a family name"),
        (["run", "smoke", "--set", "models.0.options.grid_size=big"],
         "options {'grid_size': 'big'} of family 'kan': grid_size must be an integer >= 1, got 'big'"),
        (["run", "smoke", "--set", "symbolic=5"], "symbolic must be a table of key = value pairs, got 5"),
        (["run", "smoke", "--set", "models.1.label=\"KAN (PyKAN tricks)\""],
         "models.1 has the label 'KAN (PyKAN tricks)' of models.0: give each model its own label"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    assert main([*args, *(["--root", str(tmp_path)] if args[0] == "run" else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kanlab: error: ") and message in err and err.count("\n") == 1, err
    assert not list(tmp_path.glob("*/*"))  # nothing written


@pytest.mark.parametrize("name", ["../../escaped", "/abs/path", "..", ".", "a/b", "my study", ""])
def test_a_study_name_cannot_write_outside_the_root(name: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    # "../../escaped", "/abs/path" and ".." wrote run folders and report.html outside --root.
    root = tmp_path / "a" / "b" / "runs"
    code = main(["compare", "smoke", "--root", str(root), "--set", f"name={json.dumps(name)}", *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"study name {name!r} is not allowed: use 1-100 letters, digits, '.', '_' or '-'" in err
    assert [p for p in tmp_path.rglob("*")] == []  # nothing written anywhere


def test_an_experiment_recorded_under_an_unsafe_name_is_not_reported_outside_the_root(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # A database written before names were checked may hold such an experiment: its report would
    # go to ROOT/../outside.
    from kanlab.runs.store import ResultsStore
    from report_helpers import write_run

    root = tmp_path / "runs"
    with ResultsStore(root / "kanlab.db") as store:
        store.record_run(write_run(tmp_path / "elsewhere", "x", label="MLP", family="mlp"))
        store._connection().execute("UPDATE runs SET experiment = '../outside'").connection.commit()
    assert main(["report", "../outside", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "not a folder inside the results root" in err and err.count("\n") == 1
    assert not (tmp_path / "outside").exists()


def broken(folder: Path, dest: Path, how: str) -> Path:
    """A copy of a run folder with model.pt or config.json spoilt in one way."""
    import shutil

    shutil.copytree(folder, dest)
    ckpt, config = dest / "model.pt", dest / "config.json"
    if how == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:500])
    elif how == "mismatched":  # another run's weights
        shutil.copy(next(folder.parent.glob("zigzag-mlp-*")) / "model.pt", ckpt)
    elif how == "malicious":
        torch.save({"x": Evil()}, ckpt)
    elif how == "missing-keys":
        config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items()
                                      if k not in ("task", "train")}))
    elif how == "bad-json":
        config.write_text("{")
    return dest


class Evil:
    """Unpickling this would create a file (os.system): weights_only must refuse it unrun."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {EVIDENCE}",)


EVIDENCE = Path("/tmp/kanlab-test-unpickled")


@pytest.mark.parametrize(("how", "message"), [
    ("truncated", "model.pt is not a kanlab checkpoint (truncated or not a torch file: "),
    ("mismatched", "model.pt does not fit this run's model 'kan:"),
    ("malicious", "model.pt is not a kanlab checkpoint: refused to unpickle it, as it holds more than "
                  "tensors (nothing in it was run)"),
    ("missing-keys", "config.json: not a kanlab run config: missing key(s) task, train"),
    ("bad-json", "config.json is not valid JSON"),
])
def test_eval_of_a_broken_run_exits_2_with_one_line(how: str, message: str, smoke: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    # Each of these printed a raw traceback (or "error: 'task'").
    EVIDENCE.unlink(missing_ok=True)
    kan = next((smoke / "smoke").glob("zigzag-kan-*"))
    folder = broken(kan, tmp_path / "copy", how)
    assert main(["eval", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kanlab: error: {folder}/") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err and "weights_only` set to `False" not in err
    assert not EVIDENCE.exists()


def test_kan_paper_toy_reports_rmse_at_each_grid_size(tmp_path: Path) -> None:
    args = ["compare", "kan-paper-toy", "--root", str(tmp_path), "--set", "train.steps=3",
            "--set", "train.lbfgs_max_iter=5", "--set", "train.grid_stages=[3, 6, 12]",
            "--set", "tasks.0.n_train=200", "--set", "tasks.0.n_test=200", "--set", "seeds=[0]",
            "--set", "train.grid_update_every=0", "--set", "models.1.train.grid_stages=[3, 6, 12]"]
    assert main(args) == 0
    runs = rows(tmp_path)
    assert sorted(r["label"] for r in runs) == ["KAN [2, 1, 1]", "KAN [2, 5, 1]"]
    html = (tmp_path / "kan-paper-toy" / "report.html").read_text().replace('<td class="num">', "<td>")
    assert "Grid extension: RMSE against grid size" in html
    from kanlab.report.tables import fmt_sci

    for run in runs:
        stages = json.loads(run["final_json"])["stages"]
        assert [s["grid_size"] for s in stages] == [3, 6, 12]
        # Refining preserves the function (without grid updates, which refit it), so each stage
        # starts where the last ended and LBFGS in float64 only improves from there.
        train_rmse = [s["train_rmse"] for s in stages]
        assert all(b <= a * (1 + 1e-9) for a, b in zip(train_rmse, train_rmse[1:], strict=False))
        for s in stages:  # one seed: the medians in the grid table are the run's own numbers
            assert f"<td>{fmt_sci(s['test_rmse'])}</td>" in html


def test_ctrl_c_mid_study_keeps_finished_runs_and_a_rerun_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import kanlab.runs.experiment

    real, calls = kanlab.runs.experiment.train, []

    def interrupted_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(kanlab.runs.experiment, "train", interrupted_second)
    assert main(["run", "smoke", "--root", str(tmp_path), *SMALL]) == 130
    assert "interrupted; finished runs are saved" in capsys.readouterr().err
    first = rows(tmp_path)
    assert len(first) == 1 and first[0]["status"] == "finished"
    stamp = (Path(first[0]["run_dir"]) / "final.json").stat().st_mtime_ns
    monkeypatch.setattr(kanlab.runs.experiment, "train", real)
    assert main(["run", "smoke", "--root", str(tmp_path), *SMALL]) == 0
    again = rows(tmp_path)
    assert len(again) == 4 and {r["status"] for r in again} == {"finished"}
    assert (Path(first[0]["run_dir"]) / "final.json").stat().st_mtime_ns == stamp  # not redone
    assert not list(Path(first[0]["run_dir"]).parent.glob(".tmp-*"))


def test_every_command_names_the_modules_it_loads_under_ctrl_c_protection() -> None:
    from argparse import _SubParsersAction

    from kanlab._cli_parser import build_parser
    from kanlab.cli import HEAVY

    (sub,) = [a for a in build_parser()._actions if isinstance(a, _SubParsersAction)]
    assert set(sub.choices) == set(HEAVY)


@pytest.mark.slow  # four reports with their plots
def test_a_rerun_of_an_edited_study_reports_its_new_runs_alone(tmp_path: Path) -> None:
    # Edit a study's lr and rerun it under its name: the report averaged the old runs with the new.
    from html import unescape

    from kanlab.report.tables import fmt_pm
    from kanlab.runs.store import ResultsStore

    study, root = tmp_path / "s.toml", tmp_path / "runs"

    def write(lr: float) -> None:
        study.write_text(f'name = "s"\nseeds = [0, 1]\n[train]\nsteps = 3\neval_every = 1\nlr = {lr}\n'
                         '[[tasks]]\nname = "zigzag"\nn_train = 16\nn_test = 8\n'
                         '[[models]]\nlabel = "MLP"\nfamily = "mlp"\nspec = "mlp:1-3-1"\n')

    def summary(*argv: str) -> str:
        assert main([*argv, "--root", str(root)]) == 0
        html = unescape((root / "s" / "report.html").read_text())
        return html.split('<table class="summary">', 1)[1].split("</table>", 1)[0]

    write(0.01)
    summary("compare", str(study))
    write(0.3)
    table = summary("compare", str(study))
    with ResultsStore(root / "kanlab.db") as store:
        rows = store.runs("s")
    losses = {lr: [json.loads((Path(r["run_dir"]) / "final.json").read_text())["test_loss"] for r in rows
                   if json.loads(r["config_json"])["train"]["lr"] == lr] for lr in (0.01, 0.3)}
    shown = {lr: fmt_pm(float(np.mean(v)), float(np.std(v, ddof=1))) for lr, v in losses.items()}
    assert len(losses[0.3]) == len(losses[0.01]) == 2 and shown[0.3] != shown[0.01]
    assert shown[0.3] in table and shown[0.01] not in table
    html = unescape((root / "s" / "report.html").read_text())
    assert "2 runs, 1 task(s), 1 model(s)" in html and "Not shown: 2 other run(s) of this study" in html
    assert table == summary("report", str(study))  # the file as it is now: the same runs
    old = summary("report", str(study), "--set", "train.lr=0.01")  # as it ran with an override
    assert shown[0.01] in old and shown[0.3] not in old
    both = summary("report", "s")  # no file: both configurations, apart
    assert "MLP (train.lr=0.01)" in both and "MLP (train.lr=0.3)" in both
    assert shown[0.01] in both and shown[0.3] in both


# The child: the `kanlab` console script's entry point, with a Ctrl-C sent to itself exactly when
# the named module starts loading (argparse: while kanlab.cli loads; gettext: while the arguments
# are parsed; torch: while the command's modules load).
CTRL_C_AT = """
import builtins, os, signal, sys
from importlib.metadata import entry_points
(script,) = entry_points(group="console_scripts", name="kanlab")
real, at = builtins.__import__, sys.argv[1]
def hook(name, *args, **kwargs):
    if name == at and not getattr(hook, "sent", False):
        hook.sent = True
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = hook
for name in list(sys.modules):  # as in a fresh `kanlab` process: only Python's start-up loaded
    if name.split(".")[0] in ("argparse", "gettext", "kanlab"):
        del sys.modules[name]
sys.argv = ["kanlab", "run", "smoke", "--root", sys.argv[2]]
sys.exit(script.load()())
"""


@pytest.mark.parametrize("module", ["argparse", "gettext", "torch"])
def test_a_ctrl_c_while_the_command_starts_says_interrupted_and_exits_130(module: str,
                                                                         tmp_path: Path) -> None:
    # A Ctrl-C in the first ~100 ms (while kanlab.cli imported argparse, or while parsing the
    # arguments) printed a KeyboardInterrupt traceback.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", CTRL_C_AT, module, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stderr, done.stdout) == (130, "kanlab: interrupted\n", "")
    assert list(tmp_path.iterdir()) == []  # nothing written
