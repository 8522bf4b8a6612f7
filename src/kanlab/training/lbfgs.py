"""LBFGS with a strong-Wolfe line search, for full-batch fits of small models.

torch.optim.LBFGS runs its two-loop recursion and line search as a few hundred tensor operations
per iteration, one per history pair and parameter; on a model as small as the KAN paper's [2, 5, 1]
those cost more than the model's own forward and backward (benchmarks/README.md). This one runs
the same method with the parameters as one flat vector: the history pairs sit in one matrix whose
dot products with each new gradient take one matrix-vector product, the two-loop recursion runs on
those dot products (two small triangular solves, so a long history costs little), and the search
direction is one more product. On the CPU those vectors are numpy arrays (views of the tensors, no
copies): at a few hundred entries a numpy operation costs about a microsecond, a torch one several,
and the line search and the recursion take a few dozen per iteration. Its iterates match torch's
to round-off on smooth problems (tests/test_optim.py).

References: Nocedal & Wright, Numerical Optimization (2nd ed.), Algorithm 7.4 (two-loop
recursion), Algorithms 3.5 and 3.6 (strong-Wolfe line search with zoom) and eq. 3.59 (cubic
interpolation).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from scipy.linalg.lapack import dtrtrs

from kanlab.training.line_search import C1 as C1
from kanlab.training.line_search import C2 as C2
from kanlab.training.line_search import MAX_LINE_SEARCH as MAX_LINE_SEARCH
from kanlab.training.line_search import Point, strong_wolfe

Closure = Callable[[], torch.Tensor]
Vector = Any  # a flat vector: a numpy array on the CPU, else a tensor (see LBFGS._vector)
HOST_DTYPES = (torch.float32, torch.float64)  # what numpy holds as torch does
Objective = Callable[[torch.Tensor], tuple[float, torch.Tensor]]
# Default relative tolerances (see LBFGS), chosen by measurement (benchmarks/README.md).
TOLERANCE_GRAD, TOLERANCE_CHANGE = 0.0, 1e-12


class LBFGS(torch.optim.Optimizer):
    """Limited-memory BFGS over all parameters as one vector, with a strong-Wolfe line search.

    The method and arguments of torch.optim.LBFGS(line_search_fn="strong_wolfe"), at a fraction of
    its overhead per iteration. Unlike torch's, a trial step whose loss is NaN or inf is treated as
    too long (the search backs off), so a huge lr costs evaluations rather than the run. One
    parameter group; step(closure) as torch's: closure clears the gradients, computes the loss,
    calls backward and returns the loss; step returns the first loss.

    Its stopping rules are relative, so that they mean the same at every loss scale (torch's are
    absolute: with tolerance_change 1e-9 an MSE near 1e-7 ends nearly every step after one or two
    iterations, and its curvature test ys > 1e-10 then rejects every new pair, so LBFGS stalls
    at small losses). A step() ends early when the largest gradient entry has fallen to
    tolerance_grad times its value at this optimizer's first evaluation, or when an iteration
    lowers the loss by at most tolerance_change times the loss or moves no parameter by more than
    tolerance_change times the largest parameter. A curvature pair is kept when
    s.y > eps * |s| |y| (eps: the dtype's machine epsilon), and the first trial step has unit
    length in the 1-norm (torch's is min(1, 1 / |g|_1) times the gradient).
    tolerance_change = tolerance_grad = 0 runs every iteration (PyKAN's fit passes 1e-32 to its
    copy of torch's LBFGS for that), except at an exact stationary point.

    Args:
        params: the parameters (one group).
        lr: the first trial step of each line search after the first iteration.
        max_iter: iterations per step() call.
        max_eval: closure calls per step() (default max_iter * 5 / 4).
        tolerance_grad: relative gradient tolerance (see above), >= 0.
        tolerance_change: relative tolerance on the loss's and the parameters' change, >= 0.
        history_size: curvature pairs kept.
    """

    host_vectors = True  # CPU steps keep their flat vectors in numpy (False: tensors, as elsewhere)

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1.0, max_iter: int = 20,
                 max_eval: int | None = None, tolerance_grad: float = TOLERANCE_GRAD,
                 tolerance_change: float = TOLERANCE_CHANGE, history_size: int = 100) -> None:
        if not lr > 0:
            raise ValueError(f"LBFGS lr must be > 0, got {lr!r}")
        if max_iter < 1 or history_size < 1:
            raise ValueError(f"LBFGS max_iter and history_size must be >= 1, got {max_iter}, {history_size}")
        if not (tolerance_grad >= 0 and tolerance_change >= 0):
            raise ValueError(f"LBFGS tolerances must be >= 0, got tolerance_grad={tolerance_grad!r}, "
                             f"tolerance_change={tolerance_change!r}")
        defaults = {"lr": lr, "max_iter": max_iter, "max_eval": max_eval or max_iter * 5 // 4,
                    "tolerance_grad": tolerance_grad, "tolerance_change": tolerance_change,
                    "history_size": history_size}
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS takes one parameter group")
        self._params: list[torch.Tensor] = self.param_groups[0]["params"]
        self._sizes = [p.numel() for p in self._params]
        self._on_host = False  # set by each step (see _vector)

    # ---- the flat view of the parameters ---------------------------------------------------
    # On the CPU the flat vectors (parameters, gradients, directions, the history) are numpy
    # arrays: on vectors of a few hundred entries numpy's operations cost about a microsecond
    # where torch's cost several, and an LBFGS iteration takes a few dozen of them. Elsewhere they
    # stay tensors on the parameters' device. The code below uses only what both offer (@, dot,
    # abs, max, sum, slicing); _vector and _tensor convert at the objective's and closure's edge.
    def _flat_params(self) -> Vector:
        return self._vector(torch.cat([p.detach().reshape(-1) for p in self._params]))

    def _flat_grad(self) -> Vector:
        return self._vector(torch.cat([p.grad.reshape(-1) if p.grad is not None
                                       else torch.zeros_like(p).reshape(-1) for p in self._params]))

    def _vector(self, t: torch.Tensor) -> Vector:
        # a flat tensor as this step's vectors are: a numpy view of it on the CPU (no copy)
        return t.detach().numpy() if self._on_host else t

    def _tensor(self, v: Vector) -> torch.Tensor:
        return torch.from_numpy(v) if isinstance(v, np.ndarray) else v

    @torch.no_grad()
    def _set_params(self, flat: Vector) -> None:
        for p, v in zip(self._params, self._tensor(flat).split(self._sizes), strict=True):
            p.copy_(v.view_as(p))

    def _loss_and_grad(self, closure: Closure | None, objective: Objective | None,
                       x: Vector) -> tuple[float, Vector, torch.Tensor | None]:
        # The loss, the flat gradient at the flat parameters x, and the closure's loss tensor
        # (None for an objective, which leaves the parameters alone).
        if objective is not None:
            f, g = objective(self._tensor(x))
            return f, self._vector(g), None
        assert closure is not None
        self._set_params(x)
        with torch.enable_grad():
            loss = closure()
        return float(loss.detach()), self._flat_grad(), loss

    def _evaluate(self, closure: Closure | None, objective: Objective | None, x: Vector,
                  t: float, d: Vector) -> Point:
        f, g, _ = self._loss_and_grad(closure, objective, x + t * d)
        return Point(t, f, g, float(g.dot(d)))

    # ---- the search direction: two-loop recursion on dot products --------------------------
    def _direction(self, state: dict[str, Any], g: Vector) -> Vector:
        order: list[int] = state.get("order", [])  # slots of the pairs, oldest first
        if not order:
            return -g
        pairs: Vector = state["pairs"]  # (2 * h, n): s in rows 0..h-1, y in rows h..2h-1
        h = pairs.shape[0] // 2
        idx = np.array(order)                                              # (k,) oldest first
        dots = _host(pairs @ g)                                            # s_i . g, then y_i . g
        k = len(order)  # sy, yy and rho are kept by age (see _remember): their first k places
        sy, yy = state["sy"][:k, :k], state["yy"][:k, :k]                  # (k, k) s_p . y_q, y_p . y_q
        rho, gamma = state["rho"][:k], state["gamma"]
        # The first loop, q = g - sum alpha_q y_q from the newest pair down:
        # alpha_p = rho_p (s_p . g - sum_{q later} alpha_q s_p . y_q), a triangular system (LAPACK's
        # trtrs reads only the triangle asked for, and with unitdiag not the diagonal either).
        alpha, _ = dtrtrs(rho[:, None] * sy, rho * dots[idx], lower=0, unitdiag=1)
        # The second, r = gamma q + sum c_p s_p from the oldest up: c_p = alpha_p - rho_p y_p . r_p,
        # y_p . r_p = gamma (y_p . g - sum_q alpha_q y_p . y_q) + sum_{p' earlier} c_p' s_p' . y_p.
        rhs = alpha - rho * gamma * (dots[h + idx] - yy @ alpha)
        c, _ = dtrtrs(rho[:, None] * sy.T, rhs, lower=1, unitdiag=1)
        coef = np.zeros(2 * h, dtype=dots.dtype)  # r = gamma * g + coef @ pairs, the direction is -r
        coef[idx], coef[h + idx] = c, -gamma * alpha
        weights = coef if isinstance(g, np.ndarray) else torch.from_numpy(coef).to(g)
        return -(g * gamma + weights @ pairs)

    def _remember(self, state: dict[str, Any], s: Vector, y: Vector, ys: float) -> None:
        # pairs holds the vectors in slots reused in turn (order: the slots, oldest first); the dot
        # products sy, yy and rho are kept by age (place j: the pair in slot order[j]), so that the
        # direction reads them as one block rather than gathering them every iteration.
        h = self.param_groups[0]["history_size"]
        if "pairs" not in state:
            pairs = (np.zeros((2 * h, len(s)), dtype=s.dtype) if isinstance(s, np.ndarray)
                     else s.new_zeros(2 * h, s.numel()))
            state.update(pairs=pairs, order=[], rho=np.zeros(h), sy=np.zeros((h, h)), yy=np.zeros((h, h)))
        pairs, order, sy, yy, rho = (state[k] for k in ("pairs", "order", "sy", "yy", "rho"))
        if len(order) == h:  # the oldest pair goes, and every other moves up one place
            slot = order.pop(0)
            sy[:-1, :-1], yy[:-1, :-1], rho[:-1] = sy[1:, 1:], yy[1:, 1:], rho[1:]  # numpy buffers overlaps
        else:
            slot = len(order)
        order.append(slot)
        pairs[slot] = s
        pairs[h + slot] = y
        with_s, with_y = _host(pairs @ s), _host(pairs @ y)  # (2h,): rows . s, rows . y
        idx, j = np.array(order), len(order) - 1
        sy[:j + 1, j] = with_y[idx]       # s_p . y_new
        sy[j, :j + 1] = with_s[h + idx]   # s_new . y_p
        yy[:j + 1, j] = yy[j, :j + 1] = with_y[h + idx]
        rho[j] = 1.0 / ys
        state["gamma"] = float(ys / yy[j, j])

    # ---- the step --------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Closure | None = None, *,  # type: ignore[override]
             objective: Objective | None = None) -> torch.Tensor:
        """Up to max_iter LBFGS iterations; returns the loss at the start.

        Args:
            closure: clears the gradients, computes the loss, calls backward, returns the loss.
            objective: instead of closure, f(flat) -> (loss, flat gradient) at a flat parameter
                vector, leaving the parameters alone (kanlab.training.native_objective.mse_objective);
                the parameters are then written once, at the end of the step.
        """
        if (closure is None) == (objective is None):
            raise ValueError("LBFGS.step takes a closure or an objective (one of them)")
        group = self.param_groups[0]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        state = self.state[self._params[0]]
        state.setdefault("n_iter", 0)
        dtype = self._params[0].dtype
        self._on_host = self.host_vectors and self._params[0].device.type == "cpu" and dtype in HOST_DTYPES
        x = self._flat_params()
        eps = torch.finfo(dtype).eps
        f, g, loss = self._loss_and_grad(closure, objective, x)
        first = loss if loss is not None else torch.tensor(f, dtype=dtype)
        here = Point(0.0, f, g, 0.0)
        evals = 1
        g_max = float(abs(g).max())
        g_ref = state.setdefault("g_ref", g_max)  # the gradient scale tolerance_grad is relative to
        if g_max <= tol_grad * g_ref:
            return first
        for it in range(1, group["max_iter"] + 1):
            state["n_iter"] += 1
            if "last" in state:  # the curvature pair of the previous iteration
                s, g_old = state.pop("last")
                y = g - g_old
                ys = float(y.dot(s))
                # positive curvature, relative to the vectors' sizes (an absolute threshold such as
                # torch's 1e-10 rejects every pair once the loss is small)
                y_norm = math.sqrt(float(y.dot(y)))
                if y_norm > 0 and ys > eps * math.sqrt(float(s.dot(s))) * y_norm:
                    self._remember(state, s, y, ys)
            d = self._direction(state, g)
            slope = float(g.dot(d))
            if not slope < 0:  # not a descent direction (round-off; also NaN)
                break
            # The first step (and the first after a restart): unit length in the 1-norm (torch's
            # min(1, 1 / |g|_1): the same where |g|_1 >= 1, but a tiny loss's tiny gradient would
            # start the search at a tiny step).
            fresh = state["n_iter"] == 1 or state.pop("restart", False)
            t = group["lr"] / float(abs(g).sum()) if fresh else group["lr"]
            here.slope = slope
            d_norm = float(abs(d).max())
            # the bracket closes below the relative tolerance (at least the dtype's rounding) of
            # the largest parameter
            tol = max(tol_change, eps) * float(abs(x).max())
            evaluate = functools.partial(self._evaluate, closure, objective, x, d=d)
            found, used = strong_wolfe(evaluate, here, t, d_norm, tol)
            evals += used
            if not found.f < here.f and state.get("order"):
                # No decrease along the quasi-Newton direction: the curvature pairs no longer
                # describe the objective here (a kink of a regulariser, a grid update's refit).
                # Kept, they give the same direction at every later step() and the fit stalls
                # for good; dropped, the next iteration searches along -g.
                state["order"], state["restart"] = [], True
                state.pop("last", None)
                if evals < group["max_eval"]:
                    continue
                break
            step_vec = d * found.t
            x = x + step_vec
            state["last"] = (step_vec, g)
            f_change = abs(found.f - here.f)
            f_scale = max(abs(found.f), abs(here.f))
            here, g = Point(0.0, found.f, found.g, 0.0), found.g
            step_max = abs(found.t) * d_norm  # = max |step_vec|: rounding is monotonic
            if (it == group["max_iter"] or evals >= group["max_eval"]
                    or float(abs(g).max()) <= tol_grad * g_ref
                    or step_max <= tol_change * float(abs(x).max()) or f_change <= tol_change * f_scale):
                break
        self._set_params(x)
        return first


def _host(v: Vector) -> np.ndarray:
    """v as a numpy array (a copy from another device)."""
    return v if isinstance(v, np.ndarray) else v.cpu().numpy()

