"""Matching a budget: hidden widths whose parameter or FLOPs count is within tol of a budget."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import product
from typing import Any, Literal, overload

from kanlab.layers._common import check_positive_int
from kanlab.models.spec import FAMILIES, BlockConfig, ModelConfig, allowed_options, as_int, layer_args
from kanlab.models.stack import Stack, build

Hidden = tuple[int, ...]


class _Search:
    """Hidden widths with |count - budget| <= slack, the most uniform first; remembers the closest.

    Counts grow with every width, so moving h away from the uniform solution h_u only widens the
    spread: the first hit on each side of h_u is that side's best. With h fixed the count is affine
    in the one free width w (num_params and num_flops are bilinear in (in, out)): w is solved for,
    then checked.
    """

    def __init__(self, count: Callable[[Hidden], int], depth: int, budget: int, slack: float) -> None:
        self.count, self.depth, self.budget, self.slack = count, depth, budget, slack
        self.closest = (abs(count((1,) * depth) - budget), (1,) * depth)

    def off(self, hidden: Hidden) -> int:
        d = abs(self.count(hidden) - self.budget)
        self.closest = min(self.closest, (d, hidden))
        return d

    def run(self) -> Hidden | None:
        depth, h_u, step = self.depth, 1, 1
        while step:  # h_u = the largest h >= 1 with count((h,) * depth) <= budget
            if self.count((h_u + step,) * depth) <= self.budget:
                h_u, step = h_u + step, step * 2
            else:
                step //= 2
        hits = []
        for h, step in ((h_u, -1), (h_u + 1, 1)):
            while h >= 1 and self.off((h,) * depth) <= self.slack:
                hits.append((h,) * depth)
                h += step
        if hits or depth == 1:
            return min(hits, key=self.off, default=None)
        makes: list[Callable[[int, int], Hidden]] = [lambda h, w: (h,) * (depth - 1) + (w,)]
        if depth > 2:
            makes.append(lambda h, w: (w,) + (h,) * (depth - 1))
        found: list[tuple[int, int, Hidden]] = []  # (spread, |count - budget|, hidden)
        for make, (h, step) in product(makes, ((h_u, -1), (h_u + 1, 1))):
            while h >= 1 and (fit := self._fit(make, h, step)) is not None:
                spread, hit = fit
                if hit is not None:
                    found.append((spread, self.off(hit), hit))
                if hit is not None or (found and spread > min(found)[0]):
                    break
                h += step
        return min(found)[2] if found else None

    def _fit(self, make: Callable[[int, int], Hidden], h: int, step: int) -> tuple[int, Hidden | None] | None:
        # (spread, hit) at this h, where spread bounds every later h on this side if there is no hit.
        f1 = self.count(make(h, 1))
        if step > 0 and self.off(make(h, 1)) > self.slack and f1 > self.budget:
            return None  # even w = 1 is too many here, and more so for larger h
        s = max(self.count(make(h, 2)) - f1, 1)
        f0, exact = f1 - s, (self.budget - f1 + s) / s
        for w in {max(1, math.floor(exact)), max(1, math.ceil(exact))}:
            self.off(make(h, w))
        w_lo = max(1, math.ceil((self.budget - self.slack - f0) / s))
        w_hi = math.floor((self.budget + self.slack - f0) / s)
        w = min(max(h, w_lo), w_hi)
        if w_lo <= w_hi and self.off(make(h, w)) <= self.slack:
            return abs(w - h), make(h, w)
        return (w_lo - h if step < 0 else h - w_hi), None


MATCH_BY = ("params", "flops")  # what match_budget counts; "time" is measured (kanlab.training.timing)
UNITS = {"params": "parameters", "flops": "multiply-adds per sample"}


@overload
def match_params(family: str, budget: float, *, depth: int = 2, in_features: int = 1, out_features: int = 1,
                 tol: float = 0.02, widths_only: Literal[False] = False, **options: Any) -> Stack: ...
@overload
def match_params(family: str, budget: float, *, depth: int = 2, in_features: int = 1, out_features: int = 1,
                 tol: float = 0.02, widths_only: Literal[True], **options: Any) -> tuple[int, ...]: ...
def match_params(
    family: str, budget: float, *, depth: int = 2, in_features: int = 1, out_features: int = 1,
    tol: float = 0.02, widths_only: bool = False, **options: Any,
) -> Stack | tuple[int, ...]:
    """A `family` model with `depth` hidden layers and budget * (1 +- tol) trainable parameters.

    Searches hidden widths (h, ..., h, w) and (w, h, ..., h) with num_params (building only the
    result) and picks the most uniform widths within tol, then the closest count.

    Args:
        family: a key of FAMILIES; options: its layer options, as in ModelConfig.single.
        budget: target parameter count (an integer; 1e6 is fine).
        depth: number of hidden layers.
        in_features, out_features: model input and output widths.
        tol: allowed relative deviation from budget.
        widths_only: return the widths instead of building the model.
    Returns:
        the built Stack, or its widths (in_features, *hidden, out_features) with widths_only.
    """
    widths = match_widths(family, budget, by="params", depth=depth, in_features=in_features,
                          out_features=out_features, tol=tol, **options)
    return widths if widths_only else build(ModelConfig.single(family, widths, **options))


def match_widths(
    family: str, budget: float, *, by: str = "params", depth: int = 2, in_features: int = 1,
    out_features: int = 1, tol: float = 0.02, **options: Any,
) -> tuple[int, ...]:
    """Widths of a `family` model with `depth` hidden layers whose count is budget * (1 +- tol).

    Args:
        family: a key of FAMILIES; options: its layer options, as in ModelConfig.single.
        budget: the target count (an integer; 1e6 is fine).
        by: "params" (trainable parameters, num_params) or "flops" (forward multiply-adds per
            sample, num_flops: see kanlab.models.count_flops).
        depth, in_features, out_features, tol: as in match_params.
    Returns:
        (in_features, *hidden, out_features): the most uniform hidden widths within tol, then the
        closest count.
    """
    if by not in MATCH_BY:
        raise ValueError(f"match by must be one of {', '.join(MATCH_BY)}, got {by!r}")
    target = as_int(budget)
    if target is None or target < 1:
        raise ValueError(f"budget must be a positive integer (e.g. 10_000 or 1e4), got {budget!r}")
    check_positive_int(depth, "depth")
    if not 0 <= tol < 1:
        raise ValueError(f"tol must be in [0, 1), got {tol!r}")
    block = BlockConfig(family, (in_features, *(1,) * depth, out_features), options)  # validates names
    try:  # and values: the layers check them, the count below would not
        build(ModelConfig((block,)))
    except ValueError as err:
        raise ValueError(f"options {dict(options)} of family {family!r}: {err}") from None
    cls = FAMILIES[family].layer
    unit = UNITS[by]

    def count(hidden: Hidden) -> int:
        args = layer_args(family, (in_features, *hidden, out_features), block.options, True)
        if by == "flops":
            return sum(cls.num_flops(a, o, **opts) for a, o, opts in args)
        return sum(cls.num_params(a, o, **opts) for a, o, opts in args)

    search = _Search(count, depth, target, tol * target * (1 + 1e-12))
    if count((1,) * depth) > target + search.slack:
        raise ValueError(
            f"budget {target} is below the smallest {family} model with {depth} hidden layers "
            f"({count((1,) * depth)} {unit} at widths {block.widths})"
        )
    hidden = search.run()
    if hidden is None:
        n, near = count(search.closest[1]), (in_features, *search.closest[1], out_features)
        knob = next((k for k in ("grid_size", "degree", "frequencies") if k in allowed_options(family)), None)
        raise ValueError(
            f"no {family} model with {depth} hidden layers has {target} {unit} within {tol:.1%}; "
            f"the closest has {n} ({(n - target) / target:+.1%}) at widths {near}; try another depth"
            + (f" or {knob}" if knob else "") + ", or a larger tol"
        )
    return (in_features, *hidden, out_features)
