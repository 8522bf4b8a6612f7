"""kanlab.plot on live models: the drawn numbers against edge_responses and the model's own outputs;
the run-folder pictures are the same drawing; the backend rule; `import kanlab` stays light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

import kanlab
import kanlab.report.edges
from kanlab import plot
from kanlab.layers import Dense, KANLinear
from kanlab.models.edges import edge_arrays
from kanlab.models.spec import parse_spec
from kanlab.models.stack import build
from kanlab.report import use_agg_unless_set
from kanlab.tasks import TaskConfig, make_dataset
from kanlab.training.loop import History

SPECS = {  # every family with per-edge functions, and a stack that mixes them with an MLP
    "kan": "kan:2-3-2:g=4", "rbf": "rbf:2-3-2", "chebyshev": "chebyshev:2-3-2", "fourier": "fourier:2-3-2",
    "tanhquad": "tanhquad:2-3-2", "mixed": "kan:2-3:g=3+mlp:3-4:act=tanh+chebyshev:4-2",
}


def _collection(ax: matplotlib.axes.Axes, label: str) -> LineCollection:
    (found,) = [c for c in ax.collections if c.get_label() == label]
    assert isinstance(found, LineCollection)
    return found


def _amplitude_texts(ax: matplotlib.axes.Axes) -> list[str]:
    # every text of a layer's axes but the "in i" / "out o" headers: the amplitudes, output-major
    return [t.get_text() for t in ax.texts if not t.get_text().startswith(("in ", "out "))]


@pytest.mark.parametrize("name", list(SPECS))
@torch.no_grad()
def test_edges_draws_every_edge_response_of_every_edge_layer(name: str) -> None:
    torch.manual_seed(3)
    model = build(parse_spec(SPECS[name])).double()
    x = torch.rand(80, 2, dtype=torch.float64) * 3 - 1.5
    fig = plot.edges(model, x.numpy())  # arrays are cast to the model's dtype
    assert isinstance(fig, Figure)
    # The reference: each layer's input by running the layers by hand, its responses from edge_responses.
    inputs, h = [], x
    for layer in model.layers:
        inputs.append(h)
        h = layer(h)
    edge_layers = [n for n, layer in enumerate(model.layers) if not isinstance(layer, Dense)]
    titles = [t.get_text() for t in fig.texts if t.get_text().startswith("layer ")]
    assert [t.split(":")[0] for t in titles] == [f"layer {n}" for n in edge_layers]
    assert len(fig.axes) == len(edge_layers)
    for ax, n in zip(fig.axes, edge_layers, strict=True):
        layer, h = model.layers[n], inputs[n]
        lo, hi = h.min(0).values.numpy(), h.max(0).values.numpy()
        segments = _collection(ax, "edge curves").get_segments()
        n_out, n_in = layer.out_features, layer.in_features
        assert len(segments) == n_out * n_in
        amplitudes = []
        for k, seg in enumerate(segments):
            o, i = divmod(k, n_in)  # output-major, as documented
            u, v = seg[:, 0], seg[:, 1]
            assert i < u.min() and u.max() < i + 1  # inside its column's cell
            assert n_out - 1 - o < v.min() and v.max() < n_out - o  # and its row's (row 0 on top)
            xs = lo[i] + (hi[i] - lo[i]) * (u - u[0]) / (u[-1] - u[0])  # the cell spans the input's range
            np.testing.assert_allclose(np.diff(xs), (hi[i] - lo[i]) / (len(xs) - 1), rtol=1e-9)
            probe = torch.tensor(np.repeat(xs[:, None], n_in, axis=1))                # (P, i)
            ref = layer.edge_responses(probe)[:, o, i].detach().numpy()                # (P,)
            amplitudes.append(f"{np.ptp(ref):.2g}")
            # drawn = offset + gain * response: affine in the reference, with a positive gain
            design = np.column_stack([np.ones_like(ref), ref])
            (offset, gain), *_ = np.linalg.lstsq(design, v, rcond=None)
            assert gain > 0
            np.testing.assert_allclose(offset + gain * ref, v, rtol=0, atol=1e-9)
            if isinstance(layer, KANLinear) and o == 0:  # knot ticks sit at the grid's knots in range
                ticks = [s[0, 0] for s in _collection(ax, "knots").get_segments()
                         if i < s[0, 0] < i + 1 and n_out - 1 < s[0, 1] < n_out]  # cell (0, i)
                knots = lo[i] + (hi[i] - lo[i]) * (np.array(ticks) - u[0]) / (u[-1] - u[0])
                grid = layer.grid[i].numpy()
                np.testing.assert_allclose(knots, grid[(grid >= lo[i]) & (grid <= hi[i])], atol=1e-9)
        assert _amplitude_texts(ax) == amplitudes


def test_edges_of_a_run_folder_are_the_live_models_drawing(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    model = build(parse_spec(SPECS["mixed"])).double()
    x = torch.rand(50, 2, dtype=torch.float64)
    np.savez(tmp_path / "edges.npz", **edge_arrays(model, x))  # what a run folder holds
    saved: list[Figure] = []
    monkeypatch.setattr(kanlab.report.edges, "save", lambda fig, out: saved.append(fig) or Path(out))
    kanlab.report.edges.plot_edges(tmp_path, tmp_path / "edges", title="learned edge functions")
    live = plot.edges(model, x)
    for a, b in zip(saved[0].axes, live.axes, strict=True):
        for ca, cb in zip(a.collections, b.collections, strict=True):
            for sa, sb in zip(ca.get_segments(), cb.get_segments(), strict=True):  # type: ignore[attr-defined]
                np.testing.assert_array_equal(sa, sb)
        assert [t.get_text() for t in a.texts] == [t.get_text() for t in b.texts]


def test_edges_of_a_model_without_edge_layers_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Stack has no per-edge layers"):
        plot.edges(kanlab.MLP([1, 4, 1]), torch.rand(10, 1))


@torch.no_grad()
def test_fit_draws_the_models_predictions_of_1d_2d_and_image_tasks() -> None:
    torch.manual_seed(0)
    model = kanlab.KAN([1, 3, 1], grid_size=4).double()
    x = torch.rand(40, dtype=torch.float64) * 2 - 1  # unsorted, 1-D: one column
    y = torch.sin(3 * x)
    fig = plot.fit(model, (x, y))
    ax, ax_err = fig.axes[:2]
    order = np.argsort(x.numpy())
    pred = model(x[:, None])[:, 0].numpy()
    target_line, pred_line = ax.get_lines()
    np.testing.assert_array_equal(target_line.get_xdata(), x.numpy()[order])
    np.testing.assert_array_equal(target_line.get_ydata(), y.numpy()[order])
    np.testing.assert_allclose(pred_line.get_ydata(), pred[order], rtol=1e-12)
    np.testing.assert_allclose(ax_err.get_lines()[0].get_ydata(), (pred - y.numpy())[order], rtol=1e-12)
    assert f"{np.mean((pred - y.numpy()) ** 2):.2e}".split("e")[0] in ax.get_title()

    data = make_dataset(TaskConfig(kind="function", name="exp_sin", n_train=30, n_test=60), torch.float64)
    model2 = kanlab.KAN([2, 2, 1], grid_size=3).double()
    fig = plot.fit(model2, data)
    panels = [next(c for c in a.collections if isinstance(c, PathCollection)) for a in fig.axes[:3]]
    truth, guess = data.y_test[:, 0].numpy(), model2(data.x_test)[:, 0].numpy()
    for panel, expected in zip(panels, (truth, guess, np.abs(guess - truth)), strict=True):
        np.testing.assert_allclose(panel.get_offsets(), data.coords_test.numpy(), rtol=1e-12)
        np.testing.assert_allclose(panel.get_array(), expected, rtol=1e-12)

    image = make_dataset(TaskConfig(kind="image", name="camera", image_size=8), torch.float32)
    mlp = kanlab.MLP([2, 5, 1])
    fig = plot.fit(mlp, image, title="SIREN")
    target, recon, error = (a.get_images()[0].get_array() for a in fig.axes[:3])
    out = mlp(image.x_test).reshape(8, 8).numpy()
    np.testing.assert_allclose(target, image.y_test.reshape(8, 8).numpy(), rtol=1e-6)
    np.testing.assert_allclose(recon, out, rtol=1e-6)
    np.testing.assert_allclose(error, np.abs(out - image.y_test.reshape(8, 8).numpy()), rtol=1e-5)
    assert fig.texts[0].get_text().startswith("SIREN: PSNR")


def test_fit_refuses_class_targets() -> None:
    data = make_dataset(TaskConfig(kind="dataset", name="iris"), torch.float32)
    with pytest.raises(ValueError, match="confusion matrix"):
        plot.fit(kanlab.MLP([4, 3]), data)


def test_curves_draws_the_records_on_a_log_axis_with_refinements_dotted() -> None:
    records = [{"step": s, "train_loss": 0.5 / (s + 1), "test_loss": 1.0 / (s + 1), "grid_size": g}
               for s, g in ((0, 3), (10, 3), (20, 6), (30, 6))]
    fig = plot.curves(History(records=records))
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    train, test = lines["train"], lines["test"]
    verticals = [line for name, line in lines.items() if name.startswith("_")]
    np.testing.assert_array_equal(train.get_xdata(), [0, 10, 20, 30])
    np.testing.assert_array_equal(train.get_ydata(), [0.5 / (s + 1) for s in (0, 10, 20, 30)])
    np.testing.assert_array_equal(test.get_ydata(), [1.0 / (s + 1) for s in (0, 10, 20, 30)])
    assert [v.get_xdata()[0] for v in verticals] == [20, 20]  # the refinement 3 -> 6, per curve
    other = History(records=[{**r, "test_loss": 2 * r["test_loss"]} for r in records])
    fig = plot.curves({"KAN": History(records=records), "MLP": other})
    kan, mlp = (line for line in fig.axes[0].get_lines() if line.get_label() in ("KAN", "MLP"))
    np.testing.assert_array_equal(mlp.get_ydata(), 2 * kan.get_ydata())
    assert [line.get_label() for line in plot.curves([other]).axes[0].get_lines()][:1] == ["run 0"]
    with pytest.raises(TypeError, match="not a History: b"):
        plot.curves({"a": other, "b": records})  # type: ignore[dict-item]


def test_kanlab_fit_takes_arrays_and_matches_one_sgd_step_by_hand() -> None:
    layer = Dense(1, 1, "identity", dtype=torch.float64)
    w, b = layer.weight.item(), layer.bias.item()  # type: ignore[union-attr]
    x = np.linspace(-1, 1, 9)
    y = 0.3 * x**2 + 1
    h = kanlab.fit(layer, (x, y), optimizer="sgd", momentum=0.0, lr=0.1, steps=1, dtype="float64")
    r = w * x + b - y
    assert h.records[0]["train_loss"] == pytest.approx(np.mean(r**2), rel=1e-12)
    assert layer.weight.item() == pytest.approx(w - 0.1 * 2 * np.mean(r * x), rel=1e-12)
    assert layer.bias.item() == pytest.approx(b - 0.1 * 2 * np.mean(r), rel=1e-12)  # type: ignore[union-attr]
    # (x_train, y_train, x_test, y_test): the test loss is on the test rows only
    x_test, y_test = np.array([2.0, 3.0]), np.array([0.0, 1.0])
    h = kanlab.fit(layer, (x, y, x_test, y_test), optimizer="sgd", lr=0.05, steps=2, dtype="float64")
    w, b = layer.weight.item(), layer.bias.item()  # type: ignore[union-attr]
    assert h.records[-1]["test_loss"] == pytest.approx(np.mean((w * x_test + b - y_test) ** 2), rel=1e-12)


def test_kanlab_fit_checks_its_options_and_data() -> None:
    model = kanlab.KAN([1, 2, 1])
    x, y = torch.rand(8, 1), torch.rand(8, 1)
    hint = r"unknown option\(s\) 'stpes' \(did you mean 'steps' for 'stpes'\?\)"
    allowed = r"; allowed \(a study's \[train\] keys\): optimizer, lr, .*grid_stages"
    with pytest.raises(TypeError, match=hint + allowed):
        kanlab.fit(model, (x, y), stpes=10)
    with pytest.raises(ValueError, match=r"TrainConfig.lr=-1.0 is invalid"):
        kanlab.fit(model, (x, y), lr=-1.0)
    with pytest.raises(ValueError, match="train inputs have 8 rows but targets 7"):
        kanlab.fit(model, (x, y[:7]), steps=1)
    with pytest.raises(TypeError, match="got tuple of 3 items"):
        kanlab.fit(model, (x, y, x), steps=1)  # type: ignore[arg-type]


def test_public_names() -> None:
    from kanlab.runs.experiment import load_run
    from kanlab.training.quickfit import fit

    assert kanlab.fit is fit and kanlab.load_run is load_run and kanlab.plot is plot
    assert {"fit", "load_run", "plot"} <= set(dir(kanlab))


def test_import_kanlab_imports_no_matplotlib() -> None:
    code = "import sys, kanlab; dir(kanlab); print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('matplotlib', 'torch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_agg_is_selected_only_when_no_backend_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    params = matplotlib.rcParams
    before = dict.__getitem__(params, "backend")
    try:
        matplotlib.use("svg")  # a chosen backend (a notebook's inline one is chosen the same way) stays
        use_agg_unless_set()
        assert matplotlib.get_backend() == "svg"
        dict.__setitem__(params, "backend", matplotlib.rcsetup._auto_backend_sentinel)  # none chosen
        use_agg_unless_set()
        assert matplotlib.get_backend().lower() == "agg"
    finally:
        matplotlib.use(before)


@pytest.mark.slow
@pytest.mark.parametrize(("env", "setup", "expected"), [
    (None, "", "agg"), ("pdf", "", "pdf"), (None, "import matplotlib; matplotlib.use('svg'); ", "svg")])
def test_importing_kanlab_plot_keeps_a_chosen_backend(env: str | None, setup: str, expected: str) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    if env is not None:
        environ["MPLBACKEND"] = env
    code = setup + "import kanlab.plot, matplotlib; print(matplotlib.get_backend())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=environ)
    assert out.stdout.strip().lower() == expected
