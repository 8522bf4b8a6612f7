"""Levenberg-Marquardt on the constants of a fully symbolic KAN: training to machine precision.

Once every edge is c * f(a x + b) + d the model is a small nonlinear least-squares problem (four
constants per edge and a bias per node). Gradient methods stall well above float64 precision on
it: LBFGS (torch's, and kanlab.training.lbfgs's) stops when the loss changes by less than its absolute
tolerance_change (1e-9),
which happens at an RMSE near 3e-5. MINPACK's Levenberg-Marquardt (scipy.optimize.least_squares)
works on the residual vector itself and reaches the rounding floor in a few dozen iterations.

Only constants that change the function are varied: a where the function's a is free, b where
its b is free, c (d for "0") of every fixed edge, d, and each node's bias; the Jacobian comes from
forward-mode autodiff (torch.func.jacfwd). Legend: n rows, t targets, P varied constants.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.optimize import least_squares
from torch import nn
from torch.func import functional_call, jacfwd

from kanlab.symbolic import library as symlib
from kanlab.symbolic.layer import SymbolicKANLinear
from kanlab.symbolic.snap import spline_edges, stack_of


class _Constants:
    """The varied constants as one flat vector, and the model's prediction as a function of it."""

    def __init__(self, model: nn.Module) -> None:
        names = {id(m): n for n, m in model.named_modules()}
        self.parts: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (name, base tensor, index rows)
        for layer in stack_of(model):
            assert isinstance(layer, SymbolicKANLinear)
            rows = []
            for o, i in layer.fixed_mask().nonzero().tolist():
                f = symlib.LIBRARY[symlib.NAMES[int(layer.fn_index[o, i])]]
                free = (f.a_mode == "free", f.b_free, f.name != symlib.ZERO, True)
                rows += [(o, i, k) for k in range(4) if free[k]]
            prefix = names[id(layer)]
            if rows:
                self.parts.append((f"{prefix}.affine", layer.affine, torch.tensor(rows)))
            if layer.kan.bias is not None:
                index = torch.arange(layer.out_features).unsqueeze(1)
                self.parts.append((f"{prefix}.kan.bias", layer.kan.bias, index))

    def get(self) -> np.ndarray:
        """The current values, flat."""
        return np.concatenate([base.detach()[tuple(rows.T)].cpu().numpy() for _, base, rows in self.parts])

    def tensors(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """{parameter name: a copy of the parameter with the varied entries taken from flat}."""
        out, k = {}, 0
        for name, base, rows in self.parts:
            out[name] = base.detach().index_put(tuple(rows.T), flat[k : k + len(rows)])
            k += len(rows)
        return out

    def set(self, flat: np.ndarray) -> None:
        """Write flat into the model's parameters."""
        values = self.tensors(torch.as_tensor(flat))
        for name, base, _ in self.parts:
            base.copy_(values[name].to(base))


@torch.no_grad()
def polish_constants(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, max_iter: int = 100) -> float:
    """Fit every constant of a fully symbolic model to (x, y) by Levenberg-Marquardt, in place.

    Args:
        model: a stack of SymbolicKANLinear layers with no spline edge left.
        x: (n, d) inputs; y: (n, t) targets (both cast to the model's dtype).
        max_iter: Levenberg-Marquardt iterations allowed (each one residual and one Jacobian).
    Returns:
        The training RMSE after the fit (never worse than before).
    """
    if spline_edges(model):
        raise ValueError(f"polish_constants needs every edge symbolic; still splines: {spline_edges(model)}")
    p = next(model.parameters())
    x, y = x.to(p), y.to(p)
    consts = _Constants(model)
    start = consts.get()

    def predict(flat: torch.Tensor) -> torch.Tensor:
        return functional_call(model, consts.tensors(flat), (x,)).flatten()        # (n * t,)

    def residual(v: np.ndarray) -> np.ndarray:
        r = (predict(torch.as_tensor(v, dtype=p.dtype, device=p.device)) - y.flatten()).cpu().numpy()
        return np.where(np.isfinite(r), r, 1e150)

    def jacobian(v: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            # torch's first forward-mode call scripts its jvp decompositions with the deprecated
            # torch.jit.script and says so; nothing for a caller to act on.
            warnings.filterwarnings("ignore", ".*torch.jit.script.* is deprecated", DeprecationWarning)
            jac = jacfwd(predict)(torch.as_tensor(v, dtype=p.dtype, device=p.device))  # (n * t, P)
        out = jac.cpu().numpy()
        return np.where(np.isfinite(out), out, 0.0)

    if start.size:
        sol = least_squares(residual, start, jac=jacobian, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                            max_nfev=max_iter, x_scale="jac")
        if np.all(np.isfinite(sol.x)) and sol.cost <= 0.5 * float((residual(start) ** 2).sum()):
            consts.set(sol.x)
    return math.sqrt(float(((model(x) - y) ** 2).mean()))
