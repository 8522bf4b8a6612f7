"""The strong-Wolfe line search of kanlab's LBFGS: Nocedal & Wright's Algorithms 3.5 and 3.6 (zoom)
with cubic interpolation (eq. 3.59), and the rules torch's strong_wolfe adds, so both take the same
steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

C1, C2 = 1e-4, 0.9  # sufficient decrease and curvature constants of the Wolfe conditions
MAX_LINE_SEARCH = 25  # evaluations per line search


@dataclass
class Point:
    """One evaluation along the search line: step t, loss f, flat gradient g, slope g.d."""

    t: float
    f: float
    g: Any  # a numpy array or a tensor (LBFGS's flat vectors)
    slope: float


def cubic_min(a: Point, b: Point, lo: float | None = None, hi: float | None = None) -> float:
    # Minimizer of the cubic matching f and slope at a and b (N&W eq. 3.59), kept in [lo, hi]
    # (default: between a and b); the middle of that range when the cubic has no minimum.
    if a.t > b.t:
        a, b = b, a
    lo = a.t if lo is None else lo
    hi = b.t if hi is None else hi
    if a.t == b.t:
        return (lo + hi) / 2
    d1 = a.slope + b.slope - 3 * (a.f - b.f) / (a.t - b.t)
    square = d1 * d1 - a.slope * b.slope
    if not square >= 0:  # also NaN
        return (lo + hi) / 2
    d2 = math.sqrt(square)
    den = b.slope - a.slope + 2 * d2
    t = b.t - (b.t - a.t) * (b.slope + d2 - d1) / den if den != 0 else math.nan
    return min(max(t, lo), hi) if math.isfinite(t) else (lo + hi) / 2


def ordered(a: Point, b: Point) -> tuple[Point, Point]:
    # (lower, higher) loss; a NaN loss counts as the higher.
    return (a, b) if a.f <= b.f or b.f != b.f else (b, a)


def strong_wolfe(evaluate: Callable[[float], Point], start: Point, t: float, d_norm: float,
                 tol: float) -> tuple[Point, int]:
    """A point along the search line meeting the strong Wolfe conditions, and the evaluations it took.

    Args:
        evaluate: the point at step t along the search direction d.
        start: the point at t = 0 (its slope g.d < 0).
        t: the first trial step.
        d_norm: max |d|.
        tol: the bracket is closed when its ends' parameters differ by less than this.
    """
    # N&W Algorithms 3.5 and 3.6 with the rules torch's strong_wolfe adds, so that both take
    # the same steps: "no lower than the last point" brackets from the third evaluation on,
    # a bracket's ends are ordered by loss, and a trial point within 10 % of an end is moved
    # inward when the previous trial was also that close. "not <=": a NaN or inf loss fails
    # the decrease test, and the search backs off.
    def decreases(p: Point) -> bool:
        return p.f <= start.f + C1 * p.t * start.slope

    prev, p = start, evaluate(t)
    evals = 1
    while True:
        if not decreases(p) or (evals > 2 and p.f >= prev.f):
            break
        if abs(p.slope) <= -C2 * start.slope:
            return p, evals
        if p.slope >= 0:
            break
        if evals > MAX_LINE_SEARCH:
            return ordered(start, p)[0], evals
        t = cubic_min(prev, p, p.t + 0.01 * (p.t - prev.t), p.t * 10)
        prev, p = p, evaluate(t)
        evals += 1
    lo, hi = ordered(prev, p)
    close_before = False
    while evals <= MAX_LINE_SEARCH and abs(hi.t - lo.t) * d_norm >= tol:
        left, right = min(lo.t, hi.t), max(lo.t, hi.t)
        t, margin = cubic_min(lo, hi), 0.1 * (right - left)
        if min(right - t, t - left) < margin:
            if close_before or t >= right or t <= left:
                t = right - margin if abs(t - right) < abs(t - left) else left + margin
                close_before = False
            else:
                close_before = True
        else:
            close_before = False
        p = evaluate(t)
        evals += 1
        if not decreases(p) or p.f >= lo.f:
            lo, hi = ordered(lo, p)
            continue
        if abs(p.slope) <= -C2 * start.slope:
            return p, evals
        if p.slope * (hi.t - lo.t) >= 0:
            hi = lo
        lo = p
    return lo, evals
