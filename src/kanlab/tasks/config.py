"""TaskConfig: what a task is (its kind, name or file, sizes, sampling, noise, encoding, splits),
checked when it is made, with an error naming the field and what it may hold."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from kanlab.tasks.data import DATA_SUFFIXES
from kanlab.tasks.datasets import DATASETS
from kanlab.tasks.encodings import EncodingConfig
from kanlab.tasks.functions import FUNCTIONS, SAMPLINGS, TargetFunction, expression_function, get_function
from kanlab.tasks.image import IMAGE_SUFFIXES, IMAGES
from kanlab.tasks.tabular import STANDARDIZE, TARGET_KINDS

TASK_KINDS = ("function", "image", "data", "dataset")
TABULAR_ONLY = ("target_kind", "standardize")  # fields only the table kinds (data, dataset) use


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_names(name: str, value: tuple[str, ...]) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name} must be non-empty strings, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{name} must not repeat a column, got {value!r}")


@dataclass(frozen=True)
class TaskConfig:
    """What to learn and how it is sampled; fields a kind does not use are ignored by it.

    Fields by kind:
        function: name (a FUNCTIONS entry, default "zigzag"), n_train, n_test, input_range (None:
            the function's natural range, else one (lo, hi) for every variable), sampling of the train set
            ("random", or "grid" for 1D/2D with a square n_train in 2D; the test set is always
            random). Or any function as a formula: expression (e.g. "x1*sin(x2) + exp(-x1^2)",
            see tasks.expression_function), name its label, inputs its variable names in
            order (() = x1..xd), input_range (None: (-1, 1)).
        image: name (an IMAGES entry or an image file path), image_size (longest side after an
            aspect-preserving resize, None = full size); train and test are every pixel.
        data: path (.csv or .npz), inputs (() = every non-target column), targets, test_fraction,
            target_kind ("value", the default, or "class": one target column of labels, names
            or whole numbers), standardize; name (default: the file's name without its suffix)
            labels it in reports.
        dataset: name (a DATASETS entry: digits, breast_cancer, wine, iris are "class", diabetes
            is "value"; target_kind, if given, must agree), test_fraction, standardize.
        data and dataset: standardize ("inputs", the default: inputs standardised with the
            training rows' mean and std; "inputs+targets" also value targets; "none"); the
            split is seeded by seed and stratified by class for class targets
            (kanlab.tasks.tabular).
        all: noise (std of Gaussian noise added to the train and validation targets, never the
            test targets; value targets), encoding of the inputs, seed, val_fraction (0, the
            default: no validation set; in (0, 1): a validation set for choosing between runs,
            never trained on and never a test point: functions draw max(1, round(val_fraction *
            n_train)) points of their own, images hold that share of the pixels out of training,
            tables that share of the training rows, stratified by class).
    """

    kind: str = "function"
    name: str = ""  # filled in by kind: see __post_init__
    n_train: int = 1000
    n_test: int = 1000
    input_range: tuple[float, float] | None = None
    noise: float = 0.0
    sampling: str = "random"
    image_size: int | None = 64
    path: str = ""
    inputs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    test_fraction: float = 0.2
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    seed: int = 0
    target_kind: str | None = None  # None: the kind's own (value; a dataset's own kind)
    standardize: str = "inputs"
    val_fraction: float = 0.0
    expression: str = ""

    def __post_init__(self) -> None:
        # TOML and JSON give lists; the config stays hashable with tuples
        for key in ("input_range", "inputs", "targets"):
            if isinstance(getattr(self, key), list):
                object.__setattr__(self, key, tuple(getattr(self, key)))
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task kind must be one of {TASK_KINDS}, got {self.kind!r}")
        if not isinstance(self.name, str):
            raise ValueError(f"a task's name must be a string, got {self.name!r}")
        if not self.name and self.kind != "image":
            # a data task is named after its file: "zigzag" for every one of them merged two data
            # tasks into one in reports
            default = "zigzag" if self.kind == "function" else Path(str(self.path)).stem
            object.__setattr__(self, "name", default)
        _check_int("n_train", self.n_train, 1)
        _check_int("n_test", self.n_test, 1)
        _check_int("seed", self.seed, 0)
        if self.image_size is not None:
            _check_int("image_size (or None for full size)", self.image_size, 1)
        self._check_numbers()
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if not isinstance(self.encoding, EncodingConfig):
            raise ValueError(f"encoding must be an EncodingConfig, got {self.encoding!r}")
        for key in ("inputs", "targets"):
            _check_names(key, getattr(self, key))
        if set(self.inputs) & set(self.targets):
            both = sorted(set(self.inputs) & set(self.targets))
            raise ValueError(f"columns {both} are in both inputs and targets")
        if self.kind == "function":
            self._check_function()
        elif self.kind == "image":
            suffix = Path(self.name).suffix.lower()
            if not self.name or (self.name not in IMAGES and suffix not in IMAGE_SUFFIXES):
                raise ValueError(
                    f"image {self.name!r} is neither a bundled image ({', '.join(IMAGES)}) "
                    f"nor a path ending in one of {IMAGE_SUFFIXES}"
                )
        elif self.kind == "data":
            if Path(self.path).suffix.lower() not in DATA_SUFFIXES:
                raise ValueError(
                    f"a data task needs path to a {DATA_SUFFIXES} file, got {self.path!r}"
                )
            if not self.targets:
                raise ValueError("a data task needs targets=(...) naming the target columns")
            if self.target_kind == "class" and len(self.targets) != 1:
                raise ValueError(f"target_kind = \"class\" needs exactly one target column (the labels), "
                                 f"got targets={self.targets}")
        elif self.name not in DATASETS:
            raise ValueError(f"unknown dataset {self.name!r}; bundled (scikit-learn): {', '.join(DATASETS)}")
        self._check_targets()

    def _check_numbers(self) -> None:
        noise_ok = isinstance(self.noise, (int, float)) and not isinstance(self.noise, bool)
        if not noise_ok or not 0.0 <= self.noise < math.inf:
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise!r}")
        frac = self.test_fraction
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 < frac < 1.0:
            raise ValueError(f"test_fraction must be a number in (0, 1), got {frac!r}")
        frac = self.val_fraction
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= frac < 1.0:
            raise ValueError(f"val_fraction must be a number in [0, 1) (0: no validation set), got {frac!r}")
        if self.input_range is not None:
            r = self.input_range
            ok = isinstance(r, tuple) and len(r) == 2
            ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r)
            if not ok or not (-math.inf < r[0] < r[1] < math.inf):
                raise ValueError(
                    f"input_range must be None or (lo, hi) with finite lo < hi, got {r!r}"
                )

    @property
    def targets_are(self) -> str:
        """"value" or "class": target_kind, or the kind's own when it is None."""
        if self.target_kind is not None:
            return self.target_kind
        return DATASETS[self.name][0] if self.kind == "dataset" else "value"

    def _check_targets(self) -> None:
        if self.target_kind is not None and self.target_kind not in TARGET_KINDS:
            raise ValueError(f"target_kind must be one of {TARGET_KINDS} (or left out), "
                             f"got {self.target_kind!r}")
        if self.standardize not in STANDARDIZE:
            raise ValueError(f"standardize must be one of {STANDARDIZE}, got {self.standardize!r}")
        own = DATASETS[self.name][0] if self.kind == "dataset" else None
        if self.kind in ("function", "image") and self.target_kind == "class":
            raise ValueError(f"target_kind = \"class\" is for data and dataset tasks, not {self.kind} tasks")
        if own is not None and self.target_kind not in (None, own):
            raise ValueError(f"dataset {self.name!r} has {own} targets; drop target_kind or set it "
                             f"to {own!r}")
        if self.targets_are == "class":
            if self.standardize == "inputs+targets":
                raise ValueError("standardize = \"inputs+targets\" is for value targets; class targets are "
                                 "one-hot: use \"inputs\"")
            if self.noise > 0:
                raise ValueError(f"noise = {self.noise} is for value targets; class targets are one-hot: "
                                 "set noise = 0")

    def target(self) -> TargetFunction:
        """The function of a kind="function" task: the expression's, else the registered one."""
        if self.expression:
            return expression_function(self.name, self.expression, self.inputs,
                                       None if self.input_range is None else (self.input_range,))
        return get_function(self.name)

    def _check_function(self) -> None:
        if not isinstance(self.expression, str):
            raise ValueError(f"expression must be a formula string, got {self.expression!r}")
        if self.expression and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ValueError(f"the name of a function given by its expression labels its runs and folders: "
                             f"letters, digits, '_', '.', '-' (not first), got {self.name!r}")
        if not self.expression and self.name not in FUNCTIONS:
            raise ValueError(f"unknown function {self.name!r}; one of: {', '.join(FUNCTIONS)}, or give "
                             "expression = \"...\" (a formula in x1, x2, ...)")
        dim = self.target().dim
        if self.sampling == "grid" and dim > 2:
            raise ValueError(f"grid sampling is for 1D/2D functions; {self.name} has {dim} inputs")
        side = math.isqrt(self.n_train)
        if self.sampling == "grid" and dim == 2 and side * side != self.n_train:
            raise ValueError(
                f"grid sampling of 2D {self.name} needs a square n_train, got {self.n_train} "
                f"(nearest: {side * side} or {(side + 1) ** 2})"
            )
