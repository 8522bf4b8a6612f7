"""Named target functions (1D toys, the KAN paper's examples, AI Feynman equations) and sampling.

Sources:
- KAN paper toys: Liu et al. 2024, "KAN: Kolmogorov-Arnold Networks", sec. 3.1 (fig. 3.1).
- Feynman equations and variable ranges: Udrescu & Tegmark 2020, "AI Feynman", the table of
  FeynmanEquations.csv (the ID in each name, e.g. I.12.11 -> feynman_I_12_11).

Legend: n points, d input variables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from kanlab.tasks.base import STREAM_VAL, Dataset, raw_dataset
from kanlab.tasks.expression import compile_expression, default_variables, parse

SAMPLINGS = ("random", "grid")
STREAM_TRAIN, STREAM_TEST = 0, 1  # rng = default_rng([seed, stream]): independent per purpose


@dataclass(frozen=True)
class TargetFunction:
    """A target y = fn(x1, ..., xd), with its formula as text and its natural input ranges."""

    name: str
    formula: str
    variables: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]  # one (lo, hi) per variable
    fn: Callable[..., np.ndarray]  # fn(*columns) with d (n,) float64 arrays -> (n,)

    @property
    def dim(self) -> int:
        """Number of input variables."""
        return len(self.variables)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Evaluate at points x of shape (n, d); returns (n,) float64."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{self.name} takes (n, {self.dim}) inputs, got {x.shape}")
        return np.broadcast_to(self.fn(*x.T), (x.shape[0],)).astype(np.float64)


def _frac(a: np.ndarray) -> np.ndarray:
    return a - np.floor(a)


def _exp_sin_sq_100(*x: np.ndarray) -> np.ndarray:
    return np.exp(np.mean(np.sin(np.pi * np.stack(x, axis=1) / 2) ** 2, axis=1))


def _entry(
    name: str,
    formula: str,
    fn: Callable[..., np.ndarray],
    variables: tuple[str, ...] | str,
    *ranges: tuple[float, float],
) -> tuple[str, TargetFunction]:
    """A registry item; one (lo, hi) applies to every variable, "x1 x2" names the variables."""
    names = tuple(variables.split()) if isinstance(variables, str) else variables
    per_var = ranges * len(names) if len(ranges) == 1 else ranges
    if len(per_var) != len(names):
        raise ValueError(f"{name}: {len(names)} variables but {len(ranges)} ranges")
    floats = tuple((float(lo), float(hi)) for lo, hi in per_var)
    return name, TargetFunction(name, formula, names, floats, fn)


_PI2 = math.sqrt(2 * math.pi)
_X100 = tuple(f"x{i}" for i in range(1, 101))

FUNCTION_REGISTRY: dict[str, TargetFunction] = dict(
    [
        # 1D toys; zigzag is the founding blog experiment's target
        _entry("zigzag", "x + frac(|1.5x|)", lambda x: x + _frac(np.abs(1.5 * x)), "x", (-2, 2)),
        _entry("sin", "sin(pi x)", lambda x: np.sin(np.pi * x), "x", (-1, 1)),
        _entry("j0", "J0(20x)", lambda x: special.j0(20 * x), "x", (-1, 1)),
        _entry("step", "0 for x < 0, 1 for x >= 0", lambda x: (x >= 0).astype(float), "x", (-1, 1)),
        # KAN paper, sec. 3.1
        _entry("xy", "x1 x2", lambda a, b: a * b, "x1 x2", (-1, 1)),
        _entry(
            "exp_sin", "exp(sin(pi x1) + x2^2)",
            lambda a, b: np.exp(np.sin(np.pi * a) + b**2), "x1 x2", (-1, 1),
        ),
        _entry(
            "exp_sin_4d", "exp((sin(pi (x1^2 + x2^2)) + sin(pi (x3^2 + x4^2))) / 2)",
            lambda a, b, c, d: np.exp(
                0.5 * (np.sin(np.pi * (a**2 + b**2)) + np.sin(np.pi * (c**2 + d**2)))
            ),
            "x1 x2 x3 x4", (-1, 1),
        ),
        _entry(
            "exp_sin_sq_100", "exp(1/100 sum_i sin^2(pi x_i / 2)), i = 1..100",
            _exp_sin_sq_100, _X100, (-1, 1),
        ),
        _entry("sin_plus_sq", "sin(x1) + x2^2", lambda a, b: np.sin(a) + b**2, "x1 x2", (-3, 3)),
        # AI Feynman (Udrescu & Tegmark 2020), ranges as in their table
        _entry(
            "feynman_I_6_2a", "I.6.2a: f = exp(-theta^2/2) / sqrt(2 pi)",
            lambda t: np.exp(-(t**2) / 2) / _PI2, "theta", (1, 3),
        ),
        _entry(
            "feynman_I_6_2", "I.6.2: f = exp(-(theta/sigma)^2/2) / (sqrt(2 pi) sigma)",
            lambda s, t: np.exp(-((t / s) ** 2) / 2) / (_PI2 * s), "sigma theta", (1, 3),
        ),
        _entry(
            "feynman_I_10_7", "I.10.7: m = m_0 / sqrt(1 - v^2/c^2)",
            lambda m0, v, c: m0 / np.sqrt(1 - v**2 / c**2), "m_0 v c", (1, 5), (1, 2), (3, 10),
        ),
        _entry(
            "feynman_I_12_11", "I.12.11: F = q (Ef + B v sin(theta))",
            lambda q, ef, b, v, t: q * (ef + b * v * np.sin(t)), "q Ef B v theta", (1, 5),
        ),
        _entry(
            "feynman_I_13_12", "I.13.12: U = G m1 m2 (1/r2 - 1/r1)",
            lambda m1, m2, r1, r2, g: g * m1 * m2 * (1 / r2 - 1 / r1), "m1 m2 r1 r2 G", (1, 5),
        ),
        _entry(
            "feynman_I_18_4", "I.18.4: r = (m1 r1 + m2 r2) / (m1 + m2)",
            lambda m1, m2, r1, r2: (m1 * r1 + m2 * r2) / (m1 + m2), "m1 m2 r1 r2", (1, 5),
        ),
        _entry(
            "feynman_I_26_2", "I.26.2: theta1 = arcsin(n sin(theta2))",
            lambda n, t2: np.arcsin(n * np.sin(t2)), "n theta2", (0, 1), (1, 5),
        ),
        _entry(
            "feynman_I_29_16", "I.29.16: x = sqrt(x1^2 + x2^2 - 2 x1 x2 cos(theta1 - theta2))",
            lambda x1, x2, t1, t2: np.sqrt(x1**2 + x2**2 - 2 * x1 * x2 * np.cos(t1 - t2)),
            "x1 x2 theta1 theta2", (1, 5),
        ),
        _entry(
            "feynman_II_6_15a", "II.6.15a: Ef = p_d / (4 pi epsilon) 3 z / r^5 sqrt(x^2 + y^2)",
            lambda eps, p, r, x, y, z: (
                p / (4 * np.pi * eps) * 3 * z / r**5 * np.sqrt(x**2 + y**2)
            ),
            "epsilon p_d r x y z", (1, 3),
        ),
        _entry(
            "feynman_III_17_37", "III.17.37: f = beta (1 + alpha cos(theta))",
            lambda b, a, t: b * (1 + a * np.cos(t)), "beta alpha theta", (1, 5),
        ),
    ]
)
FUNCTIONS = tuple(FUNCTION_REGISTRY)


def expression_function(
    name: str,
    expression: str,
    variables: tuple[str, ...] = (),
    ranges: tuple[tuple[float, float], ...] | None = None,
) -> TargetFunction:
    """A TargetFunction from a formula such as "x1*sin(x2) + exp(-x1^2)" (kanlab.tasks.expression).

    Args:
        name: its name in run ids and reports.
        expression: the formula, in the variables, with + - * / ^ (or **), numbers, pi, e and
            the functions of kanlab.tasks.expression.FUNCTIONS.
        variables: the variable names in input order; () = x1..xd as the formula uses them.
        ranges: one (lo, hi) per variable, or one for all; None = (-1, 1) for each.
    """
    names = tuple(variables) or default_variables(parse(expression))
    fn = compile_expression(expression, names)
    per_var = ((-1.0, 1.0),) if ranges is None else tuple(ranges)
    return _entry(name, expression, fn, names, *per_var)[1]


def get_function(name: str) -> TargetFunction:
    """The registered function called name, or a ValueError listing the registered names."""
    if name not in FUNCTION_REGISTRY:
        raise ValueError(f"unknown function {name!r}; registered functions: {', '.join(FUNCTIONS)}")
    return FUNCTION_REGISTRY[name]


def _fmt_range(lo: float, hi: float) -> str:
    return f"[{lo:g}, {hi:g}]"


def describe(f: TargetFunction, ranges: tuple[tuple[float, float], ...]) -> str:
    """One line such as "zigzag x + frac(|1.5x|) on [-2, 2]"."""
    if len(set(ranges)) == 1:
        power = f"^{f.dim}" if f.dim > 1 else ""
        return f"{f.name} {f.formula} on {_fmt_range(*ranges[0])}{power}"
    where = ", ".join(f"{v} in {_fmt_range(*r)}" for v, r in zip(f.variables, ranges, strict=True))
    return f"{f.name} {f.formula} with {where}"


def grid_points(n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """An evenly spaced grid over the box [lo, hi] with endpoints included, in row-major order.

    Args:
        n: number of points; for d = 2 it must be a perfect square (side sqrt(n) per axis).
        lo, hi: (d,) bounds, d in {1, 2}.
    Returns:
        (n, d) points; in 2D the first coordinate varies slowest.
    """
    d = lo.shape[0]
    if d == 1:
        return np.linspace(lo[0], hi[0], n).reshape(n, 1)
    side = math.isqrt(n)
    if d != 2 or side * side != n:
        raise ValueError(
            f"grid sampling needs d <= 2 and, in 2D, a square n; got d={d}, n={n} "
            f"(nearest squares: {side * side} and {(side + 1) ** 2})"
        )
    axes = [np.linspace(lo[i], hi[i], side) for i in range(2)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def function_dataset(
    name: str | TargetFunction,
    n_train: int,
    n_test: int,
    *,
    input_range: tuple[float, float] | None = None,
    sampling: str = "random",
    seed: int = 0,
    val_fraction: float = 0.0,
) -> Dataset:
    """Sample a function: train by `sampling`, test (and validation) uniformly at random.

    Args:
        name: a key of FUNCTION_REGISTRY, or a TargetFunction (e.g. from expression_function).
        n_train, n_test: number of points.
        input_range: (lo, hi) for every variable; None uses each variable's natural range.
        sampling: "random" (uniform) or "grid" (1D/2D only; see grid_points).
        seed: the train and test points come from default_rng([seed, 0]) and ([seed, 1]).
        val_fraction: > 0 adds a validation set of max(1, round(val_fraction * n_train)) points, a
            sample of its own (default_rng([seed, 4])) drawn as the test set is: the training
            points stay the same n_train points, and no validation point is a train or test point.
    Returns:
        float64 Dataset with x = coords (make_dataset encodes and adds noise).
    """
    f = name if isinstance(name, TargetFunction) else get_function(name)
    ranges = f.ranges
    if input_range is not None:
        ranges = ((float(input_range[0]), float(input_range[1])),) * f.dim
    lo = np.array([r[0] for r in ranges], dtype=np.float64)
    hi = np.array([r[1] for r in ranges], dtype=np.float64)
    if sampling == "grid":
        x_train = grid_points(n_train, lo, hi)                                          # (n, d)
    elif sampling == "random":
        rng = np.random.default_rng([seed, STREAM_TRAIN])
        x_train = lo + (hi - lo) * rng.random((n_train, f.dim))
    else:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    x_test = lo + (hi - lo) * np.random.default_rng([seed, STREAM_TEST]).random((n_test, f.dim))
    n_val = max(1, round(val_fraction * n_train)) if val_fraction > 0 else 0
    x_val = lo + (hi - lo) * np.random.default_rng([seed, STREAM_VAL]).random((n_val, f.dim))
    with np.errstate(all="ignore"):  # reported below, naming the function and its ranges
        y_train, y_test, y_val = f(x_train), f(x_test), f(x_val)
    desc = describe(f, ranges)
    if not (np.isfinite(y_train).all() and np.isfinite(y_test).all() and np.isfinite(y_val).all()):
        raise ValueError(f"{desc}: the function is not finite everywhere on this input range")
    return raw_dataset(
        x_train, y_train, x_test, y_test,
        input_names=f.variables, target_names=(f.name,), description=desc,
        val=(x_val, y_val) if n_val else None,
    )
