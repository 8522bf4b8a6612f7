"""Tasks against independent references: formulas by hand, skimage's own images, files we write."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from skimage.color import rgb2gray
from skimage.transform import resize
from skimage.util import img_as_float

from kanlab.tasks import FUNCTIONS, IMAGES, Dataset, TaskConfig, make_dataset, psnr
from kanlab.tasks.encodings import EncodingConfig, encode
from kanlab.tasks.functions import FUNCTION_REGISTRY

PI, E = math.pi, math.e
# name -> [(point, value)], each value worked out by hand from the published formula
REFERENCES: dict[str, list[tuple[tuple[float, ...], float]]] = {
    "zigzag": [((-1.0,), -0.5), ((0.5,), 1.25), ((2.0,), 2.0), ((-0.2,), 0.1)],
    "sin": [((0.5,), 1.0), ((-1 / 6,), -0.5)],
    "j0": [((0.0,), 1.0), ((0.1,), 0.22389077914123567), ((2.404825557695773 / 20,), 0.0)],
    "step": [((-0.1,), 0.0), ((0.0,), 1.0), ((0.3,), 1.0)],
    "xy": [((0.5, -0.4), -0.2)],
    "exp_sin": [((0.5, 0.5), math.exp(1.25)), ((0.0, 1.0), E)],
    "exp_sin_4d": [((0.5, 0.5, 0.0, 1.0), math.exp(0.5)), ((0.0,) * 4, 1.0)],
    "exp_sin_sq_100": [((1.0,) * 100, E), ((1.0, 0.0) * 50, math.exp(0.5))],
    "sin_plus_sq": [((PI / 2, 2.0), 5.0)],
    "feynman_I_6_2a": [((2.0,), math.exp(-2) / math.sqrt(2 * PI))],
    "feynman_I_6_2": [((2.0, 2.0), math.exp(-0.5) / (2 * math.sqrt(2 * PI)))],
    "feynman_I_10_7": [((2.0, 1.8, 3.0), 2.5)],
    "feynman_I_12_11": [((2.0, 1.0, 3.0, 1.0, PI / 2), 8.0)],
    "feynman_I_13_12": [((2.0, 3.0, 4.0, 2.0, 1.5), 2.25)],
    "feynman_I_18_4": [((1.0, 3.0, 2.0, 4.0), 3.5)],
    "feynman_I_26_2": [((0.5, PI / 2), PI / 6)],
    "feynman_I_29_16": [((3.0, 4.0, 2.0, 2.0 - PI / 2), 5.0)],
    "feynman_II_6_15a": [((1.0, 4 * PI, 1.0, 3.0, 4.0, 2.0), 30.0)],
    "feynman_III_17_37": [((2.0, 3.0, PI), -4.0)],
}


def tensors(ds: Dataset) -> dict[str, torch.Tensor]:
    return {f.name: getattr(ds, f.name) for f in fields(ds)
            if f.name[:2] in ("x_", "y_", "co") and getattr(ds, f.name) is not None}


# ---------------------------------------------------------------- functions


def test_every_function_has_a_reference() -> None:
    assert set(REFERENCES) == set(FUNCTIONS)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_function_matches_hand_computed_values(name: str) -> None:
    f = FUNCTION_REGISTRY[name]
    points = np.array([p for p, _ in REFERENCES[name]])
    assert f(points).tolist() == pytest.approx([v for _, v in REFERENCES[name]], abs=1e-12)


def test_feynman_variables_and_ranges_follow_the_ai_feynman_table() -> None:
    assert FUNCTION_REGISTRY["feynman_I_12_11"].variables == ("q", "Ef", "B", "v", "theta")
    assert FUNCTION_REGISTRY["feynman_I_10_7"].ranges == ((1, 5), (1, 2), (3, 10))
    assert FUNCTION_REGISTRY["feynman_I_6_2a"].ranges == ((1, 3),)
    assert FUNCTION_REGISTRY["exp_sin_sq_100"].dim == 100


def test_zigzag_dataset_targets_description_and_range() -> None:
    ds = make_dataset(TaskConfig(n_train=500, n_test=300), dtype=torch.float64)
    assert ds.description == "zigzag x + frac(|1.5x|) on [-2, 2]"
    for c, y in ((ds.coords_train, ds.y_train), (ds.coords_test, ds.y_test)):
        a = torch.abs(1.5 * c)
        assert torch.allclose(y, c + a - torch.floor(a), atol=1e-12)
        assert -2.0 <= c.min().item() < -1.9 and 1.9 < c.max().item() <= 2.0
    assert ds.x_train.shape == (500, 1) and ds.y_test.shape == (300, 1)
    assert (ds.in_dim, ds.out_dim, ds.input_names, ds.target_names) == (1, 1, ("x",), ("zigzag",))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_natural_ranges_respected(name: str) -> None:
    ds = make_dataset(TaskConfig(name=name, n_train=200, n_test=50), dtype=torch.float64)
    ranges = torch.tensor(FUNCTION_REGISTRY[name].ranges, dtype=torch.float64)     # (d, 2)
    lo, hi = ranges[:, 0], ranges[:, 1]
    for c in (ds.coords_train, ds.coords_test):
        assert bool(((c >= lo) & (c <= hi)).all())
    assert torch.isfinite(ds.y_train).all()


def test_input_range_override_applies_to_every_variable() -> None:
    ds = make_dataset(TaskConfig(name="xy", input_range=(0.5, 3.0), n_train=400))
    assert ds.coords_train.min() >= 0.5 and ds.coords_train.max() <= 3.0
    assert ds.coords_train.max() > 2.8
    assert torch.allclose(ds.y_train[:, 0], ds.coords_train.prod(dim=1))
    assert ds.description.endswith("on [0.5, 3]^2")


def test_range_where_function_is_not_finite_raises() -> None:
    with pytest.raises(ValueError, match="feynman_I_10_7.*not finite"):
        make_dataset(TaskConfig(name="feynman_I_10_7", input_range=(1.0, 5.0)))


def test_same_config_identical_tensors_and_seed_changes_them() -> None:
    cfg = TaskConfig(name="exp_sin", noise=0.1, encoding=EncodingConfig(kind="gaussian"))
    a, b = make_dataset(cfg), make_dataset(cfg)
    torch.manual_seed(99)  # the global RNG must not matter
    c = make_dataset(cfg)
    for key, t in tensors(a).items():
        assert torch.equal(t, tensors(b)[key]) and torch.equal(t, tensors(c)[key]), key
    other = make_dataset(TaskConfig(name="exp_sin", noise=0.1, seed=1))
    assert not torch.equal(a.coords_train, other.coords_train)
    assert not torch.equal(a.coords_test, other.coords_test)


def test_noise_on_train_only_with_right_std() -> None:
    clean = make_dataset(TaskConfig(name="sin", n_train=20000, n_test=500), dtype=torch.float64)
    noisy = make_dataset(TaskConfig(name="sin", n_train=20000, n_test=500, noise=0.1), torch.float64)
    assert torch.equal(clean.coords_train, noisy.coords_train)
    assert torch.equal(clean.y_test, noisy.y_test)
    residual = noisy.y_train - torch.sin(math.pi * noisy.coords_train)
    assert residual.std().item() == pytest.approx(0.1, rel=0.05)
    assert abs(residual.mean().item()) < 0.005
    assert torch.allclose(clean.y_train, torch.sin(math.pi * clean.coords_train), atol=1e-12)


def test_grid_sampling_1d_and_2d() -> None:
    ds = make_dataset(TaskConfig(n_train=5, sampling="grid"), dtype=torch.float64)
    assert ds.coords_train[:, 0].tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    ds = make_dataset(TaskConfig(name="xy", n_train=9, sampling="grid"), dtype=torch.float64)
    want = [[a, b] for a in (-1.0, 0.0, 1.0) for b in (-1.0, 0.0, 1.0)]
    assert ds.coords_train.tolist() == want
    assert ds.coords_test.shape == (1000, 2)  # the test set stays random


def test_encoding_and_dtype_are_applied() -> None:
    enc = EncodingConfig(kind="pow2", channels=4)
    ds = make_dataset(TaskConfig(name="xy", encoding=enc), dtype=torch.float64)
    assert ds.x_train.dtype == torch.float64 and ds.in_dim == 8
    assert torch.equal(ds.x_train, encode(ds.coords_train, enc))
    assert make_dataset(TaskConfig(n_train=3, n_test=3)).y_train.dtype == torch.float32
    with pytest.raises(ValueError, match="floating-point"):
        make_dataset(TaskConfig(), dtype=torch.int64)


# ---------------------------------------------------------------- images


def test_bundled_image_matches_skimage_resized_grayscale() -> None:
    ds = make_dataset(TaskConfig(kind="image", name="astronaut", image_size=32))
    want = resize(rgb2gray(skdata.astronaut()), (32, 32), anti_aliasing=True)
    assert ds.image_shape == (32, 32)
    np.testing.assert_allclose(ds.y_test.reshape(ds.image_shape).numpy(), want, atol=1e-6)
    assert torch.equal(ds.y_train, ds.y_test)  # every pixel, same order


def test_non_square_image_keeps_aspect_and_gray_image_scales() -> None:
    ds = make_dataset(TaskConfig(kind="image", name="chelsea", image_size=64))
    assert ds.image_shape == (43, 64)  # 300x451 -> round(300 * 64 / 451) = 43
    want = resize(rgb2gray(skdata.chelsea()), (43, 64), anti_aliasing=True)
    np.testing.assert_allclose(ds.y_test.reshape(43, 64).numpy(), want, atol=1e-6)
    full = make_dataset(TaskConfig(kind="image", name="microaneurysms", image_size=None))
    want = skdata.microaneurysms() / 255.0
    np.testing.assert_allclose(full.y_test.reshape(102, 102).numpy(), want, atol=1e-7)


def test_pixel_coordinates_corners_and_spacing() -> None:
    ds = make_dataset(TaskConfig(kind="image", name="camera", image_size=16), dtype=torch.float64)
    c, (h, w) = ds.coords_test, ds.image_shape or (0, 0)
    assert c.min() == -1.0 and c.max() == 1.0
    assert [c[0].tolist(), c[w - 1].tolist(), c[-w].tolist(), c[-1].tolist()] == [
        [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]
    ]
    r, col = 5, 9
    assert c[r * w + col].tolist() == pytest.approx([-1 + 2 * col / (w - 1), -1 + 2 * r / (h - 1)])
    assert ds.input_names == ("x", "y") and h == w == 16


def test_image_trains_on_every_pixel_whatever_n_train() -> None:
    cfg = TaskConfig(kind="image", name="camera", image_size=16, n_train=10, noise=0.05)
    ds = make_dataset(cfg, dtype=torch.float64)
    assert ds.y_train.shape == ds.y_test.shape == (256, 1)
    assert torch.equal(ds.coords_train, ds.coords_test)
    residual = ds.y_train - ds.y_test  # noise on the train targets only
    assert 0.03 < residual.std().item() < 0.07


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I;16"])
def test_user_png_round_trip(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    arr: np.ndarray
    if mode == "I;16":
        arr = rng.integers(0, 65536, (12, 20), dtype=np.uint16)
        want = arr / 65535.0
    else:
        arr = rng.integers(0, 256, (12, 20, len(mode)), dtype=np.uint8).squeeze()
        want = arr / 255.0 if mode == "L" else rgb2gray(img_as_float(arr[..., :3]))
    path = tmp_path / "pic.png"
    Image.fromarray(arr).save(path)
    ds = make_dataset(TaskConfig(kind="image", name=str(path), image_size=None), torch.float64)
    np.testing.assert_allclose(ds.y_test.reshape(12, 20).numpy(), want, atol=1e-12)


def test_missing_and_unreadable_images(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match=r"nope\.png.*camera"):
        make_dataset(TaskConfig(kind="image", name=missing))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"bad\.png.*camera"):
        make_dataset(TaskConfig(kind="image", name=str(bad)))
    with pytest.raises(ValueError, match="bundled image.*camera"):
        TaskConfig(kind="image", name="lena")
    assert "camera" in IMAGES and "brain" not in IMAGES  # brain needs a download


def test_psnr_closed_form() -> None:
    assert psnr(0.01) == pytest.approx(20.0)
    assert psnr(1e-4, peak=255.0) == pytest.approx(10 * math.log10(255.0**2 / 1e-4))
    assert psnr(0.0) == math.inf
    with pytest.raises(ValueError, match="mse"):
        psnr(-1.0)
    with pytest.raises(ValueError, match="peak"):
        psnr(0.1, peak=0.0)


# ---------------------------------------------------------------- user data


def write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> str:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return str(path)


def test_csv_round_trip_and_split(tmp_path: Path) -> None:
    rows = [[i, i * 0.5, f"id{i}", i + 2 * i * 0.5] for i in range(40)]
    path = write_csv(tmp_path / "d.csv", ["a", "b", "name", "y"], rows)
    cfg = TaskConfig(kind="data", path=path, inputs=("a", "b"), targets=("y",), standardize="none")
    ds = make_dataset(cfg, dtype=torch.float64)
    assert (ds.x_train.shape, ds.x_test.shape) == ((32, 2), (8, 2))  # test_fraction 0.2
    all_a = sorted(torch.cat([ds.coords_train[:, 0], ds.coords_test[:, 0]]).tolist())
    assert all_a == [float(i) for i in range(40)]
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert torch.equal(y[:, 0], x[:, 0] + 2 * x[:, 1])
    assert torch.equal(make_dataset(cfg, torch.float64).x_test, ds.x_test)
    other = make_dataset(TaskConfig(kind="data", path=path, inputs=("a", "b"), targets=("y",), seed=5))
    assert not torch.equal(other.x_test, ds.x_test)


def test_npz_with_default_inputs(tmp_path: Path) -> None:
    u, v = np.linspace(0, 1, 10), np.arange(10.0)
    np.savez(tmp_path / "d.npz", u=u, v=v, t=u * v)
    cfg = TaskConfig(kind="data", path=str(tmp_path / "d.npz"), targets=("t",), standardize="none")
    ds = make_dataset(cfg, torch.float64)
    assert ds.input_names == ("u", "v") and ds.target_names == ("t",)
    assert torch.equal(ds.y_train[:, 0], ds.x_train[:, 0] * ds.x_train[:, 1])


@pytest.mark.parametrize(
    ("cells", "fragment"),
    [
        (["1", "nan"], r"column 'y'.*non-finite.*row 2"),
        (["1", "inf"], r"column 'y'.*non-finite.*row 2"),
        (["1", "abc"], r"column 'y' is not numeric.*row 2.*abc"),
        (["1", ""], r"column 'y' is not numeric.*row 2"),
    ],
)
def test_bad_csv_values_name_column_and_row(tmp_path: Path, cells: list[str], fragment: str) -> None:
    rows = [["0", "0"], ["1", "1"], cells, ["3", "3"]]
    path = write_csv(tmp_path / "bad.csv", ["x", "y"], rows)
    with pytest.raises(ValueError, match=fragment):
        make_dataset(TaskConfig(kind="data", path=path, targets=("y",)))


def test_data_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        make_dataset(TaskConfig(kind="data", path=str(tmp_path / "missing.csv"), targets=("y",)))
    path = write_csv(tmp_path / "d.csv", ["x", "y"], [[1, 2], [3, 4], [5, 6]])
    with pytest.raises(ValueError, match=r"unknown column 'z'; available columns: x, y"):
        make_dataset(TaskConfig(kind="data", path=path, targets=("z",)))
    ragged = write_csv(tmp_path / "r.csv", ["x", "y"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="row 1 has 1 fields"):
        make_dataset(TaskConfig(kind="data", path=ragged, targets=("y",)))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match=r"junk\.npz"):
        make_dataset(TaskConfig(kind="data", path=str(tmp_path / "junk.npz"), targets=("y",)))
    one = write_csv(tmp_path / "one.csv", ["x", "y"], [[1, 2]])
    with pytest.raises(ValueError, match="1 data rows"):
        make_dataset(TaskConfig(kind="data", path=one, targets=("y",)))
    np.savez(tmp_path / "s.npz", x=np.arange(3.0), y=np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="column 'y' is not numeric"):
        make_dataset(TaskConfig(kind="data", path=str(tmp_path / "s.npz"), targets=("y",)))


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "audio"}, r"function.*'audio'"),
        ({"name": "zigzag2"}, r"'zigzag2'.*zigzag"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": -1}, "n_test"),
        ({"seed": -1}, "seed"),
        ({"noise": -0.1}, "noise"),
        ({"sampling": "sobol"}, r"grid.*'sobol'"),
        ({"sampling": "grid", "name": "exp_sin_4d"}, "1D/2D"),
        ({"sampling": "grid", "name": "xy", "n_train": 1000}, r"square.*961 or 1024"),
        ({"input_range": (1.0, 1.0)}, "input_range"),
        ({"input_range": (0.0, math.inf)}, "input_range"),
        ({"image_size": 0}, "image_size"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"encoding": "pow2"}, "EncodingConfig"),
        ({"inputs": "x"}, "inputs"),
        ({"inputs": ("x",), "targets": ("x",)}, "both inputs and targets"),
        ({"kind": "data"}, r"path.*\.csv"),
        ({"kind": "data", "path": "d.txt"}, "'d.txt'"),
        ({"kind": "data", "path": "d.csv"}, "targets"),
    ],
)
def test_bad_task_config_raises_naming_problem(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        TaskConfig(**kwargs)


def test_lists_from_toml_become_tuples() -> None:
    from_toml: dict[str, Any] = {"input_range": [-1, 1], "targets": ["y"], "inputs": ["x"]}
    cfg = TaskConfig(**from_toml)
    assert cfg.input_range == (-1, 1) and cfg.targets == ("y",) and cfg.inputs == ("x",)
    assert hash(cfg) == hash(TaskConfig(input_range=(-1, 1), targets=("y",), inputs=("x",)))


# ---------------------------------------------------------------- functions given as formulas
def test_a_formula_task_samples_its_function() -> None:
    cfg = TaskConfig(kind="function", name="x_sin_y", expression="x1*sin(x2) + exp(-x1^2) - pi/e",
                     n_train=300, n_test=100, input_range=(-2.0, 2.0))
    ds = make_dataset(cfg, dtype=torch.float64)
    for c, y in ((ds.coords_train, ds.y_train), (ds.coords_test, ds.y_test)):
        want = c[:, 0] * torch.sin(c[:, 1]) + torch.exp(-c[:, 0] ** 2) - math.pi / math.e
        torch.testing.assert_close(y[:, 0], want, rtol=1e-14, atol=1e-14)
        assert -2.0 <= c.min() < -1.9 and 1.9 < c.max() <= 2.0
    assert ds.input_names == ("x1", "x2") and ds.target_names == ("x_sin_y",)
    assert ds.description == "x_sin_y x1*sin(x2) + exp(-x1^2) - pi/e on [-2, 2]^2"
    # named variables, in the order given; a variable the formula ignores is still an input
    cfg = TaskConfig(kind="function", name="f", expression="sqrt(abs(b)) * a", inputs=("a", "b", "c"),
                     n_train=50, n_test=10)
    named = make_dataset(cfg, dtype=torch.float64)
    c = named.coords_train
    torch.testing.assert_close(named.y_train[:, 0], c[:, 1].abs().sqrt() * c[:, 0], rtol=1e-14, atol=0)
    assert named.input_names == ("a", "b", "c")


@pytest.mark.parametrize(("expression", "match"), [
    ("__import__('os').system('true')", "not allowed"),
    ("x1.real", "not allowed"),
    ("(lambda: 1)()", "not allowed"),
    ("exp(x1, x2)", "not allowed"),
    ("[x1][0]", "not allowed"),
    ("x1 + y", "name the variables x1, x2"),
    ("x1 +", "cannot parse"),
])
def test_a_formula_runs_nothing_but_arithmetic(expression: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TaskConfig(kind="function", name="f", expression=expression)


def test_a_formula_tasks_name_is_safe_in_paths_and_its_text_is_in_the_run_id() -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        TaskConfig(kind="function", name="../escaped", expression="x1")
    from kanlab.study.config import parse_study
    from kanlab.study.experiments import expand

    def run_id(expression: str) -> str:
        study = parse_study({"tasks": [{"kind": "function", "name": "mine", "expression": expression}],
                             "models": [{"spec": "kan:2-3-1"}]})
        return expand(study)[0].run_id

    assert run_id("x1 + x2").startswith("mine-kan-") and run_id("x1 + x2") != run_id("x1 - x2")
