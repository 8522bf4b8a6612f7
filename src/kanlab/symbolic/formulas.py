"""The closed-form formula of a KAN whose edges are all symbolic, as sympy expressions.

Each layer maps its input expressions z_i to beta_o + sum_i [c_oi f_oi(a_oi z_i + b_oi) + d_oi];
composing the layers gives one expression per output in the input variables x_1 .. x_n. tidy()
then expands products and powers, moves constant terms out of exponentials (c e^(k + u) =
(c e^k) e^u) and, with a precision, rounds every constant to that many decimal places, dropping
those that round to 0 and writing whole numbers as integers. Without a precision the expression
keeps the model's float64 constants and evaluates to the model's output up to rounding error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy
import torch
from torch import nn

from kanlab.symbolic import library as symlib
from kanlab.symbolic.layer import SymbolicKANLinear
from kanlab.symbolic.snap import auto_fix, spline_edges, stack_of, symbolize

MAX_LISTED = 12


class SplineEdgesError(ValueError):
    """A formula was asked of a model that still has spline edges (listed in the message)."""


def variables(n: int, names: Sequence[str] | None = None) -> tuple[sympy.Symbol, ...]:
    """n input symbols: the given names, or x_1 .. x_n."""
    names = tuple(names) if names is not None else tuple(f"x_{k + 1}" for k in range(n))
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"need {n} distinct variable names, got {names!r}")
    return tuple(sympy.Symbol(name, real=True) for name in names)


def layer_expressions(layer: SymbolicKANLinear, inputs: Sequence[sympy.Expr]) -> list[sympy.Expr]:
    """The layer's outputs as expressions of its inputs (every edge must be symbolic).

    Args:
        layer: a SymbolicKANLinear with no spline edge left.
        inputs: one expression per input node.
    Returns:
        One expression per output node, with the layer's constants as sympy Floats.
    """
    if layer.spline_edges():
        raise SplineEdgesError(f"layer still has spline edges {layer.spline_edges()}")
    bias = layer.kan.bias
    outs = []
    for o in range(layer.out_features):
        total: sympy.Expr = sympy.Float(float(bias[o].detach())) if bias is not None else sympy.Integer(0)
        for i, z in enumerate(inputs):
            name = layer.function_name(o, i)
            assert name is not None
            a, b, c, d = (sympy.Float(v) for v in layer.constants(o, i))
            total += c * symlib.LIBRARY[name].sympy_fn(a * z + b) + d
        outs.append(total)
    return outs


def _pull_exp_constants(expr: sympy.Expr) -> sympy.Expr:
    # exp(k + u) -> e^k exp(u) for a numeric k, so e^k joins the coefficient in front.
    def split(e: sympy.Expr) -> sympy.Expr:
        k, rest = e.args[0].as_coeff_Add()
        return sympy.exp(k) * sympy.exp(rest) if k != 0 else e

    return expr.replace(lambda e: isinstance(e, sympy.exp) and isinstance(e.args[0], sympy.Add), split)


def _rounded(value: float, precision: int) -> sympy.Expr:
    r = round(value, precision)
    if r == 0:
        return sympy.Integer(0)
    if r == int(r):
        return sympy.Integer(int(r))
    text = f"{r:.{precision}f}".rstrip("0")
    digits = text.replace("-", "").replace(".", "").lstrip("0")
    return sympy.Float(text, max(1, len(digits)))


def tidy(expr: sympy.Expr, precision: int | None = None) -> sympy.Expr:
    """Expand, move constants out of exponentials and (with a precision) round the constants.

    Args:
        expr: a formula with float constants.
        precision: decimal places to keep; None keeps the constants as they are.
    Returns:
        The tidied expression (equal to expr up to rounding when precision is None).
    """
    hints = {"power_exp": False, "power_base": False, "log": False, "mul": True, "multinomial": True}
    expr = _pull_exp_constants(sympy.expand(expr, **hints))
    if precision is None:
        return expr
    if precision < 0:
        raise ValueError(f"precision must be None or >= 0 decimal places, got {precision}")
    done: set[sympy.Expr] = set()  # rounded constants: short Floats, not to be rounded again
    for _ in range(3):  # rounding can expose new constants (e^k of a k that became a number ...)
        fresh = {f: _rounded(float(f), precision) for f in expr.atoms(sympy.Float) if f not in done}
        if not fresh:
            break
        done |= set(fresh.values())
        expr = _pull_exp_constants(expr.xreplace(fresh))
    return expr


def _describe(edges: list[tuple[int, int, int]]) -> str:
    shown = ", ".join(f"layer {j} edge (o={o}, i={i})" for j, o, i in edges[:MAX_LISTED])
    more = f" and {len(edges) - MAX_LISTED} more" if len(edges) > MAX_LISTED else ""
    return shown + more


def formulas(
    model: nn.Module, *, precision: int | None = None, names: Sequence[str] | None = None,
    approximate_on: torch.Tensor | None = None, library: Sequence[str] = symlib.NAMES,
) -> list[sympy.Expr]:
    """One formula per model output, in the input variables.

    Args:
        model: a stack of SymbolicKANLinear layers with every edge symbolic.
        precision: decimal places of the constants (None: full float64, for evaluation).
        names: input variable names (default x_1 .. x_n).
        approximate_on: (n, d) inputs; if given, remaining spline edges are replaced (in a copy)
            by their best fit from `library` on these inputs instead of raising.
        library: symlib names used by approximate_on.
    Returns:
        A list of sympy expressions, one per output.
    """
    layers = stack_of(model)
    missing = spline_edges(model)
    if missing and approximate_on is not None:
        model = symbolize(model)
        auto_fix(model, approximate_on, library, r2_threshold=-np.inf)
        layers = stack_of(model)
    elif missing:
        raise SplineEdgesError(
            f"the formula needs every edge symbolic, but {len(missing)} are still splines: "
            f"{_describe(missing)}; fix them (snap.auto_fix or snap.fix_edge on a snap.symbolize'd "
            "model), or pass approximate_on=x to use each one's best symbolic fit on inputs x"
        )
    exprs: list[sympy.Expr] = list(variables(layers[0].in_features, names))
    for layer in layers:
        assert isinstance(layer, SymbolicKANLinear)
        exprs = layer_expressions(layer, exprs)
    return [tidy(e, precision) for e in exprs]


def formula(model: nn.Module, output: int = 0, **options: object) -> sympy.Expr:
    """The formula of one model output; options as in formulas (precision, names, ...)."""
    exprs = formulas(model, **options)  # type: ignore[arg-type]
    if not 0 <= output < len(exprs):
        raise IndexError(f"output {output} does not exist; the model has {len(exprs)} outputs")
    return exprs[output]


def evaluate(
    expr: sympy.Expr, x: torch.Tensor | np.ndarray, names: Sequence[str] | None = None
) -> np.ndarray:
    """Evaluate a formula at points x in float64 (numpy, scipy for special functions).

    Args:
        expr: a formula in the variables `names`.
        x: (n, d) points, column k is variable k.
        names: the d variable names (default x_1 .. x_d).
    Returns:
        (n,) float64 values.
    """
    xs = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if xs.ndim != 2:
        raise ValueError(f"x must be (n, d), got shape {xs.shape}")
    fn = sympy.lambdify(variables(xs.shape[1], names), expr, modules=["numpy", "scipy"])
    return np.broadcast_to(np.asarray(fn(*xs.T), dtype=np.float64), (xs.shape[0],)).copy()
