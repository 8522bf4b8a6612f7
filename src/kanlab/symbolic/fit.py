"""Fit c * f(a * x + b) + d to one edge's samples, for each f of a library, and rank the fits.

The fit of one f: a grid search over (a, b) where (c, d) and R^2 have a closed form (R^2 is the
squared correlation of f(a x + b) with y), then the best few grid points are polished with
Levenberg-Marquardt on every free constant (scipy.optimize.least_squares with an exact Jacobian).
The grid is laid over the normalised input t = (x - m) / s (m the centre, s the half-width of the
samples), so the same grid serves an edge on [-1, 1] and one on [40, 60].

Ranking: score = complexity + log10(max(1 - R^2, r2_floor)) + max(0, log10(rho / 2)), lower is
better, ties to higher R^2. One complexity unit is worth a tenfold smaller residual, and every fit
better than the floor counts as exact. rho = max |c f(u)| / range of c f(u) flags a function that
imitates another in a limit by cancelling a huge c f(u) with d (cos near its peak passing for a
parabola: rho ~ 1000); an honest fit has rho of a few.

Legend: n samples, A and B grid sizes for a and b.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import least_squares

from kanlab.symbolic import library as symlib
from kanlab.symbolic.library import SymbolicFunction

R2_FLOOR = 1e-6


@dataclass(frozen=True)
class EdgeFit:
    """One fitted candidate c * f(a * x + b) + d with its quality.

    Attributes:
        name: the library function f.
        a, b, c, d: the constants, in symlib.canonical form.
        r2: coefficient of determination on the samples (1 = exact).
        complexity: f's complexity.
        score: complexity + log10(max(1 - r2, floor)); lower ranks first.
    """

    name: str
    a: float
    b: float
    c: float
    d: float
    r2: float
    complexity: int
    score: float

    def __str__(self) -> str:
        return (f"{self.name}: {self.c:.6g} * {self.name}({self.a:.6g} * x + {self.b:.6g}) + {self.d:.6g}"
                f"  (R^2 = {self.r2:.10f}, complexity {self.complexity})")


def _as_vector(v: torch.Tensor | np.ndarray | Sequence[float], what: str) -> torch.Tensor:
    t = torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(-1)
    if t.numel() < 5 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} must hold at least 5 finite samples, got {t.numel()}")
    return t


def _r2(y: torch.Tensor, pred: torch.Tensor) -> float:
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if not math.isfinite(ss_res):
        return -math.inf
    tiny = 1e-30 * y.numel() * max(1.0, float(y.abs().max()) ** 2)
    if ss_tot <= tiny:  # a constant edge: any fit that reproduces it is exact
        return 1.0 if ss_res <= tiny else 0.0
    return 1.0 - ss_res / ss_tot


def _valid(f: SymbolicFunction, u: torch.Tensor) -> torch.Tensor:
    # (..., n) -> (...): every sample inside f's domain.
    return f.valid(u).all(dim=-1) if f.valid is not None else torch.ones(u.shape[:-1], dtype=torch.bool)


def _grid_candidates(f: SymbolicFunction, x: torch.Tensor, y: torch.Tensor, size: int, span: float,
                     keep: int) -> list[tuple[float, float]]:
    """The `keep` (a, b) of a grid with the highest R^2 of the closed-form (c, d)."""
    lo, hi = float(x.min()), float(x.max())
    m, s = (lo + hi) / 2, max((hi - lo) / 2, 1e-12)
    if f.a_mode == "free":
        alpha = torch.linspace(-span, span, size, dtype=torch.float64)
        a = (alpha / s).unsqueeze(1).expand(-1, size if f.b_free else 1)             # (A, B)
        beta = torch.linspace(-span, span, size, dtype=torch.float64) if f.b_free else torch.zeros(1)
        b = beta.unsqueeze(0) - a * m if f.b_free else torch.zeros_like(a)          # (A, B)
    else:
        signs = torch.tensor([1.0] if f.a_mode == "one" else [-1.0, 1.0], dtype=torch.float64)
        a = signs.unsqueeze(1).expand(-1, size if f.b_free else 1)
        reach = s + span
        shift = torch.linspace(-reach, reach, size, dtype=torch.float64) if f.b_free else torch.zeros(1)
        b = shift.unsqueeze(0) - a * m if f.b_free else torch.zeros_like(a)
    u = a.unsqueeze(-1) * x + b.unsqueeze(-1)                                        # (A, B, n)
    fu = f.torch_fn(u)
    fc = fu - fu.mean(dim=-1, keepdim=True)
    yc = y - y.mean()
    var = (fc**2).sum(-1)
    r2 = (fc * yc).sum(-1) ** 2 / (var * (yc**2).sum()).clamp(min=1e-300)          # (A, B)
    ok = _valid(f, u) & torch.isfinite(fu).all(-1) & (var > 1e-24 * x.numel())
    r2 = torch.where(ok, r2, torch.full_like(r2, -1.0)).flatten()
    best = torch.argsort(r2, descending=True)[:keep]
    return [(float(a.flatten()[k]), float(b.flatten()[k])) for k in best if r2[k] >= 0]


def _linear_cd(fu: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    # Least-squares c, d of y ~ c * fu + d.
    fc = fu - fu.mean()
    var = float((fc**2).sum())
    c = float((fc * (y - y.mean())).sum()) / var if var > 0 else 0.0
    return c, float((y - c * fu).mean())


def _polish(f: SymbolicFunction, x: torch.Tensor, y: torch.Tensor, a: float, b: float, c: float,
            d: float, budget: int) -> tuple[float, float, float, float]:
    """Levenberg-Marquardt on the free constants; returns the start if the result leaves f's domain."""
    free_a, free_b = f.a_mode == "free", f.b_free

    def unpack(p: np.ndarray) -> tuple[float, float, float, float]:
        k = 0
        pa = float(p[k]) if free_a else a
        k += free_a
        pb = float(p[k]) if free_b else b
        k += free_b
        return pa, pb, float(p[k]), float(p[k + 1])

    def residual(p: np.ndarray) -> np.ndarray:
        pa, pb, pc, pd = unpack(p)
        with torch.no_grad():
            r = (pc * f.torch_fn(pa * x + pb) + pd - y).numpy()
        return np.where(np.isfinite(r), r, 1e150)

    def jacobian(p: np.ndarray) -> np.ndarray:
        pa, pb, pc, _ = unpack(p)
        with torch.no_grad():
            u = pa * x + pb
            h = 1e-6 * u.abs().clamp(min=1.0)  # central difference: f' to ~1e-10, 1/3 of autograd's cost
            fu = f.torch_fn(u)
            slope = (f.torch_fn(u + h) - f.torch_fn(u - h)) / (2 * h)
        cols = ([pc * slope * x] if free_a else []) + ([pc * slope] if free_b else [])
        jac = torch.stack([*cols, fu, torch.ones_like(fu)], dim=1).numpy()
        return np.where(np.isfinite(jac), jac, 0.0)

    start = np.array([v for v, free in ((a, free_a), (b, free_b), (c, True), (d, True)) if free])
    try:
        sol = least_squares(residual, start, jac=jacobian, method="lm", xtol=1e-15, ftol=1e-15,
                            gtol=1e-15, max_nfev=budget * len(start))
    except ValueError:  # e.g. a non-finite start
        return a, b, c, d
    pa, pb, pc, pd = unpack(sol.x)
    u = pa * x + pb
    if not bool(_valid(f, u)) or not all(math.isfinite(v) for v in (pa, pb, pc, pd)):
        return a, b, c, d
    return pa, pb, pc, pd


def score(complexity: int, r2: float, r2_floor: float = R2_FLOOR, cancellation: float = 1.0) -> float:
    """Ranking score (module docstring); lower is better.

    Args:
        complexity: the function's complexity.
        r2: the fit's R^2.
        r2_floor: 1 - R^2 below this counts as exact.
        cancellation: max |c f(u)| / (max c f(u) - min c f(u)) over the samples.
    Returns:
        complexity + log10(max(1 - r2, r2_floor)) + max(0, log10(cancellation / 2)); inf if r2 = -inf.
    """
    if r2 == -math.inf:
        return math.inf
    return complexity + math.log10(max(1.0 - r2, r2_floor)) + max(0.0, math.log10(cancellation / 2))


def _cancellation(cfu: torch.Tensor) -> float:
    spread = float(cfu.max() - cfu.min())
    return float(cfu.abs().max()) / spread if spread > 0 else 1.0


Consts = tuple[float, float, float, float]


def _quality(f: SymbolicFunction, x: torch.Tensor, y: torch.Tensor, consts: Consts) -> float:
    a, b, c, d = consts
    return _r2(y, c * f.torch_fn(a * x + b) + d)


def _search(f: SymbolicFunction, x: torch.Tensor, y: torch.Tensor, grid: int, span: float,
            starts: int) -> tuple[float, Consts]:
    """Grid search, then a short polish of the best `starts` grid points: (R^2, constants)."""
    best: tuple[float, Consts] = (-math.inf, (1.0, 0.0, 0.0, float(y.mean())))
    if f.name == symlib.ZERO:
        return _quality(f, x, y, best[1]), best[1]
    for a, b in _grid_candidates(f, x, y, grid, span, starts):
        c, d = _linear_cd(f.torch_fn(a * x + b), y)
        consts = _polish(f, x, y, a, b, c, d, budget=10) if _nonlinear(f) else (a, b, c, d)
        r2 = _quality(f, x, y, consts)
        if r2 > best[0]:
            best = (r2, consts)
    return best


def _nonlinear(f: SymbolicFunction) -> bool:
    # Whether a or b is fitted; else (c, d) from the closed form are already optimal.
    return f.name != symlib.ZERO and (f.a_mode == "free" or f.b_free)


def _finish(
    f: SymbolicFunction, x: torch.Tensor, y: torch.Tensor, found: tuple[float, Consts]
) -> tuple[float, Consts]:
    """The long polish of a search result (skipped when there is nothing left to fit)."""
    if not _nonlinear(f) or found[0] == -math.inf:
        return found
    consts = _polish(f, x, y, *found[1], budget=50)
    r2 = _quality(f, x, y, consts)
    return (r2, consts) if r2 >= found[0] else found


def _result(f: SymbolicFunction, x: torch.Tensor, found: tuple[float, Consts], r2_floor: float) -> EdgeFit:
    r2, (a, b, c, d) = found
    rho = _cancellation(c * f.torch_fn(a * x + b)) if r2 > -math.inf else 1.0
    a, b, c, d = symlib.canonical(f, a, b, c, d)
    return EdgeFit(f.name, a, b, c, d, r2, f.complexity, score(f.complexity, r2, r2_floor, rho))


def _samples(x: torch.Tensor | np.ndarray | Sequence[float],
             y: torch.Tensor | np.ndarray | Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    xt, yt = _as_vector(x, "x"), _as_vector(y, "y")
    if xt.shape != yt.shape:
        raise ValueError(f"x and y must have the same number of samples, got {xt.numel()} and {yt.numel()}")
    return xt, yt


def fit_function(
    x: torch.Tensor | np.ndarray | Sequence[float],
    y: torch.Tensor | np.ndarray | Sequence[float],
    name: str,
    *,
    grid: int = 61,
    span: float = 10.0,
    starts: int = 3,
    r2_floor: float = R2_FLOOR,
) -> EdgeFit:
    """Best c * f(a * x + b) + d for the library function `name` on samples (x, y).

    Args:
        x, y: (n,) samples of the edge's input and response, n >= 5.
        name: a symlib.NAMES entry.
        grid: grid points per free constant of the search over (a, b).
        span: half-range of that grid on the normalised input (|a| <= span / half-width).
        starts: best grid points polished with Levenberg-Marquardt.
        r2_floor: 1 - R^2 below this counts as exact in the score.
    Returns:
        The EdgeFit; r2 = -inf when f is undefined on every grid point.
    """
    f = symlib.get(name)
    xt, yt = _samples(x, y)
    return _result(f, xt, _finish(f, xt, yt, _search(f, xt, yt, grid, span, starts)), r2_floor)


def suggest(
    x: torch.Tensor | np.ndarray | Sequence[float],
    y: torch.Tensor | np.ndarray | Sequence[float],
    library: Sequence[str] = symlib.NAMES,
    *,
    top: int = 5,
    r2_floor: float = R2_FLOOR,
) -> list[EdgeFit]:
    """Fit every function of `library` to samples (x, y) and return the best `top`, best first.

    Every function gets the grid search and a short polish; the long polish goes only to those
    that could still rank first (complexity + log10(r2_floor) <= the best score so far), so a
    candidate that cannot win is reported with the short polish's constants.

    Args:
        x, y: (n,) samples of the edge's input and response.
        library: names of symlib functions to try.
        top: how many candidates to return.
        r2_floor: see the module docstring's ranking.
    Returns:
        EdgeFits sorted by (score, -r2).
    """
    fns = [symlib.get(n) for n in symlib.check_names(list(library))]
    xt, yt = _samples(x, y)
    found = {f.name: _search(f, xt, yt, 61, 10.0, 3) for f in fns}
    fits = {f.name: _result(f, xt, found[f.name], r2_floor) for f in fns}
    for f in sorted(fns, key=lambda f: f.complexity):
        best = min(e.score for e in fits.values())
        if f.complexity + math.log10(r2_floor) <= best and _nonlinear(f):
            fits[f.name] = _result(f, xt, _finish(f, xt, yt, found[f.name]), r2_floor)
    return sorted(fits.values(), key=lambda e: (e.score, -e.r2))[: max(1, top)]
