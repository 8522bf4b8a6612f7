"""The library of symbolic edge functions: each f is used as c * f(a * x + b) + d on one KAN edge.

Every entry has a torch form (fitting and the symbolic layer's forward), a sympy form (formulas),
a complexity (ranking), the domain where it is defined, which of (a, b) are free, and the
symmetries used to write fitted constants in one canonical way (e.g. sin: a > 0, |b| <= pi/2).

Redundant affine parameters are fixed so that a fit has one answer: c * (a x + b)^2 + d equals
c a^2 * (x + b/a)^2 + d, so "x^2" fixes a = 1; c * exp(a x + b) equals c e^b * exp(a x), so "exp"
fixes b = 0; c * log(a x + b) = c log|a| + c log(+-x + b/|a|), so "log" has a in {-1, +1}.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch

TorchFn = Callable[[torch.Tensor], torch.Tensor]
SympyFn = Callable[[sympy.Expr], sympy.Expr]
TINY = 1e-8  # singular functions are evaluated at least this far from their poles


@dataclass(frozen=True)
class SymbolicFunction:
    """One library entry f, used on an edge as c * f(a * x + b) + d.

    Attributes:
        name: the key users pass, e.g. "sin" or "x^2".
        torch_fn: elementwise f on tensors (kept finite near poles, differentiable).
        derivative: elementwise f' as autograd computes it through torch_fn (zero where torch_fn
            clamps or moves u away from a pole), for the symbolic layer's hand-written backward.
        sympy_fn: f of a sympy expression.
        complexity: cost in the ranking; one unit outweighs a 10x smaller residual.
        valid: where f is defined, as a bool tensor of u = a x + b; None = everywhere.
        a_mode: "free", "one" (a = 1) or "sign" (a = +-1, chosen by the fit).
        b_free: whether b is fitted (else b = 0).
        parity: "odd" (f(-u) = -f(u)), "even", "sigmoid" (f(-u) = 1 - f(u)) or None.
        period: (p, s) with f(u + p) = s * f(u), used to bring b into (-p/2, p/2]; or None.
    """

    name: str
    torch_fn: TorchFn
    sympy_fn: SympyFn
    complexity: int
    valid: Callable[[torch.Tensor], torch.Tensor] | None = None
    a_mode: str = "free"
    b_free: bool = True
    parity: str | None = None
    period: tuple[float, float] | None = None
    derivative: TorchFn = field(kw_only=True)


def _away_from_zero(u: torch.Tensor) -> torch.Tensor:
    # Keeps the sign, so a pole is approached from the side the input is on. The replacements are
    # made in u's dtype: torch.where of two Python floats gives float32, so a float64 u got
    # float32's 1e-8 (1e-8 - 6e-17).
    tiny = u.new_full((), TINY)
    return torch.where(u.abs() < TINY, torch.where(u < 0, -tiny, tiny), u)


class _BesselJ0(torch.autograd.Function):
    # torch's bessel_j0 has no derivative; J0' = -J1. Written for torch.func too (jacfwd, vmap).
    generate_vmap_rule = True

    @staticmethod
    def forward(u: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(u)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (u,) = ctx.saved_tensors
        return -grad * torch.special.bessel_j1(u)

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        (u,) = ctx.saved_tensors
        return -tangent * torch.special.bessel_j1(u)


def _j0(u: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = _BesselJ0.apply(u)
    return out


def _tan(u: torch.Tensor) -> torch.Tensor:
    return torch.sin(u) / _away_from_zero(torch.cos(u))


def _moved(u: torch.Tensor) -> torch.Tensor:
    # Where _away_from_zero replaced u by a constant: autograd's derivative through it is 0 there.
    return u.abs() < TINY


def _d_tan(u: torch.Tensor) -> torch.Tensor:
    # d/du sin / w with w = _away_from_zero(cos): cos / w + sin^2 / w^2 where w = cos, cos / w elsewhere.
    cos, sin = torch.cos(u), torch.sin(u)
    w = _away_from_zero(cos)
    return cos / w + torch.where(_moved(cos), 0.0, sin * sin / (w * w))


def _d_clamped(u: torch.Tensor, d: TorchFn) -> torch.Tensor:
    # d(u.clamp(min=TINY)) for f(clamp(u)): autograd passes the gradient where u >= TINY only.
    return torch.where(u >= TINY, d(u.clamp(min=TINY)), 0.0)


ZERO = "0"
LIBRARY: dict[str, SymbolicFunction] = {
    f.name: f
    for f in (
        SymbolicFunction(ZERO, torch.zeros_like, lambda u: sympy.Integer(0), 0, a_mode="one", b_free=False,
                         derivative=torch.zeros_like),
        SymbolicFunction("x", lambda u: u, lambda u: u, 1, a_mode="one", b_free=False,
                         derivative=torch.ones_like),
        SymbolicFunction("x^2", lambda u: u**2, lambda u: u**2, 2, a_mode="one", derivative=lambda u: 2 * u),
        SymbolicFunction("x^3", lambda u: u**3, lambda u: u**3, 3, a_mode="one",
                         derivative=lambda u: 3 * u**2),
        SymbolicFunction("x^4", lambda u: u**4, lambda u: u**4, 3, a_mode="one",
                         derivative=lambda u: 4 * u**3),
        SymbolicFunction("x^5", lambda u: u**5, lambda u: u**5, 3, a_mode="one",
                         derivative=lambda u: 5 * u**4),
        SymbolicFunction(
            "1/x", lambda u: 1 / _away_from_zero(u), lambda u: 1 / u, 2,
            valid=lambda u: u.abs() > 1e-3, a_mode="one",
            derivative=lambda u: torch.where(_moved(u), 0.0, -1 / u**2),
        ),
        SymbolicFunction(
            "1/x^2", lambda u: 1 / _away_from_zero(u) ** 2, lambda u: u**-2, 3,
            valid=lambda u: u.abs() > 1e-3, a_mode="one",
            derivative=lambda u: torch.where(_moved(u), 0.0, -2 / u**3),
        ),
        SymbolicFunction(
            "sqrt", lambda u: torch.sqrt(u.clamp(min=TINY)), sympy.sqrt, 2,
            valid=lambda u: u >= 0, a_mode="sign",
            derivative=lambda u: _d_clamped(u, lambda v: 0.5 * torch.rsqrt(v)),
        ),
        SymbolicFunction(
            "1/sqrt", lambda u: torch.rsqrt(u.clamp(min=TINY)), lambda u: 1 / sympy.sqrt(u), 3,
            valid=lambda u: u > 1e-3, a_mode="sign",
            derivative=lambda u: _d_clamped(u, lambda v: -0.5 * torch.rsqrt(v) / v),
        ),
        SymbolicFunction("exp", torch.exp, sympy.exp, 2, b_free=False, derivative=torch.exp),
        SymbolicFunction(
            "log", lambda u: torch.log(u.clamp(min=TINY)), sympy.log, 2,
            valid=lambda u: u > 1e-3, a_mode="sign", derivative=lambda u: _d_clamped(u, torch.reciprocal),
        ),
        SymbolicFunction("sin", torch.sin, sympy.sin, 2, parity="odd", period=(math.pi, -1.0),
                         derivative=torch.cos),
        SymbolicFunction("cos", torch.cos, sympy.cos, 2, parity="even", period=(math.pi, -1.0),
                         derivative=lambda u: -torch.sin(u)),
        SymbolicFunction(
            "tan", _tan, sympy.tan, 3,
            valid=lambda u: torch.cos(u).abs() > 1e-3, parity="odd", period=(math.pi, 1.0), derivative=_d_tan,
        ),
        SymbolicFunction("tanh", torch.tanh, sympy.tanh, 3, parity="odd",
                         derivative=lambda u: 1 - torch.tanh(u) ** 2),
        SymbolicFunction(
            "sigmoid", torch.sigmoid, lambda u: 1 / (1 + sympy.exp(-u)), 3, parity="sigmoid",
            derivative=lambda u: torch.sigmoid(u) * (1 - torch.sigmoid(u)),
        ),
        SymbolicFunction(
            "gaussian", lambda u: torch.exp(-(u**2)), lambda u: sympy.exp(-(u**2)), 3, parity="even",
            derivative=lambda u: -2 * u * torch.exp(-(u**2)),
        ),
        SymbolicFunction("abs", torch.abs, sympy.Abs, 3, a_mode="one", derivative=torch.sign),
        SymbolicFunction("arctan", torch.arctan, sympy.atan, 4, parity="odd",
                         derivative=lambda u: 1 / (1 + u**2)),
        SymbolicFunction(
            "J0", _j0, lambda u: sympy.besselj(0, u), 4, parity="even",
            derivative=lambda u: -torch.special.bessel_j1(u),
        ),
    )
}
NAMES = tuple(LIBRARY)


def get(name: str) -> SymbolicFunction:
    """The library entry called name; a ValueError lists the known names otherwise."""
    if name not in LIBRARY:
        raise ValueError(f"unknown symbolic function {name!r}; known: {', '.join(NAMES)}")
    return LIBRARY[name]


def check_names(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validate a library selection (non-empty, all known); returns it as a tuple."""
    names = tuple(names)
    if not names:
        raise ValueError(f"the library selection is empty; choose from: {', '.join(NAMES)}")
    for name in names:
        get(name)
    return names


def canonical(
    f: SymbolicFunction, a: float, b: float, c: float, d: float
) -> tuple[float, float, float, float]:
    """The same edge c * f(a x + b) + d written with a >= 0 (where f's parity allows) and b reduced.

    Args:
        f: the library entry.
        a, b, c, d: fitted constants.
    Returns:
        (a, b, c, d) describing the identical function.
    """
    if a < 0 and f.parity is not None:
        if f.parity == "odd":
            a, b, c = -a, -b, -c
        elif f.parity == "even":
            a, b = -a, -b
        else:  # sigmoid(-u) = 1 - sigmoid(u)
            a, b, c, d = -a, -b, -c, d + c
    if f.period is not None:
        p, s = f.period
        k = math.ceil(b / p - 0.5)  # b - k p lands in (-p/2, p/2]
        b -= k * p
        c *= s ** (k % 2)
    return a, b, c, d
