"""Basis-function edges tried in place of B-splines: Gaussian RBF, Chebyshev, Fourier (TanhQuadratic,
the other cheaper activation, is in tanh_quadratic.py).

Every layer here follows the KANLinear contract: (b, i) -> (b, o), edge_responses (b, i) -> (b, o, i),
a static num_params, and forward == edge_responses(x).sum(-1) + bias. Biases start at zero; edge
parameters start so that an output has variance of order 1 or less for inputs of order 1, whatever
the widths and basis size.

Legend: b batch, i in_features, o out_features, c basis functions per input
(grid_size for RBF, degree + 1 for Chebyshev, frequencies for each of Fourier's cos and sin).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from kanlab.layers._common import (
    SizedLayer,
    check_choice,
    check_flags,
    check_input,
    check_positive_int,
    check_widths,
    layer_repr,
)
from kanlab.layers.kan.bases import BASES
from kanlab.splines import check_grid_range


def _combine(basis: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    # One matmul over (input, basis) pairs: (b, i, c) x (o, i, c) -> (b, o).
    return basis.flatten(1) @ coef.flatten(1).T


class RBFKAN(nn.Module):
    """Gaussian RBF edges: phi_oi(x) = sum_c w_oic exp(-((x - mu_c) / h)^2) [+ w_oi * base(x)].

    The grid_size centers mu_c span grid_range evenly (both ends included) and h is their spacing,
    so grid_size >= 2.

    Args:
        in_features, out_features: layer widths.
        grid_size: number of Gaussian centers per input (>= 2).
        grid_range: (lo, hi), the first and last center.
        bias: learnable node bias beta_o (starts at 0).
        base: residual function ("silu", "identity", "tanh") with a learnable per-edge weight,
            or None for no base branch.
        check_finite: raise on NaN/inf inputs (one reduction per call; False skips it).
        device, dtype: where and in what precision to create the parameters.
    Init: w_oic and w_oi ~ U(-1/sqrt(in), 1/sqrt(in)); the squared bases sum to about 1.25 at any
    point of the range, so an output's variance does not grow with grid_size.
    """

    def __init__(
        self, in_features: int, out_features: int, grid_size: int = 8,
        grid_range: tuple[float, float] = (-1.0, 1.0), *,
        bias: bool = True, base: str | None = "silu", check_finite: bool = True,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = check_widths(in_features, out_features)
        self.grid_size = check_positive_int(grid_size, "grid_size", minimum=2)
        self.grid_range = check_grid_range(grid_range)
        if base is not None:
            check_choice(base, tuple(BASES), "base")
        check_flags(bias=bias, check_finite=check_finite)
        self.base, self.check_finite = base, check_finite
        self.h = (self.grid_range[1] - self.grid_range[0]) / (grid_size - 1)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.coef = nn.Parameter(torch.empty(out_features, in_features, grid_size, **factory))  # (o, i, c)
        shape = (out_features, in_features)
        self.base_weight = nn.Parameter(torch.empty(shape, **factory)) if base is not None else None
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    @staticmethod
    def num_params(
        in_features: int, out_features: int, grid_size: int = 8,
        grid_range: tuple[float, float] = (-1.0, 1.0), *, bias: bool = True, base: str | None = "silu",
        **_: Any,
    ) -> int:
        """Parameter count of a layer built with these options, without building it."""
        per_edge = grid_size + int(base is not None)
        return in_features * out_features * per_edge + (out_features if bias else 0)

    @staticmethod
    def num_flops(in_features: int, out_features: int, grid_size: int = 8, *, base: str | None = "silu",
                  **_: Any) -> int:
        """Forward multiply-adds per sample: every Gaussian times its weight, and the base branch."""
        return in_features * out_features * (grid_size + int(base is not None))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw fresh parameters as the class docstring says (uses the global torch RNG)."""
        bound = 1.0 / math.sqrt(self.in_features)
        self.coef.uniform_(-bound, bound)
        if self.base_weight is not None:
            self.base_weight.uniform_(-bound, bound)
        if self.bias is not None:
            self.bias.zero_()

    def extra_repr(self) -> str:
        return layer_repr(self, grid_size=self.grid_size, grid_range=self.grid_range, base=self.base)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian bumps at each center: (b, i) -> (b, i, c)."""
        lo, hi = self.grid_range
        # Built in x's dtype and device each call: float64 users get float64 centers.
        centers = torch.linspace(lo, hi, self.grid_size, dtype=x.dtype, device=x.device)  # (c,)
        return torch.exp(-(((x.unsqueeze(-1) - centers) / self.h) ** 2))  # (b, i, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output: (b, i) -> (b, o)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name=type(self).__name__,
                    dtype=self.coef.dtype)
        y = _combine(self.basis(x), self.coef)                             # (b, o)
        if self.base is not None and self.base_weight is not None:
            y = y + BASES[self.base].value(x) @ self.base_weight.T
        return y if self.bias is None else y + self.bias

    def edge_responses(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge phi_oi(x_i), base branch included: (b, i) -> (b, o, i)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name=type(self).__name__,
                    dtype=self.coef.dtype)
        y = torch.einsum("bic,oic->boi", self.basis(x), self.coef)
        if self.base is not None and self.base_weight is not None:
            y = y + BASES[self.base].value(x).unsqueeze(1) * self.base_weight  # (b, o, i)
        return y


class ChebyshevKAN(SizedLayer):
    """Chebyshev edges on a tanh-squashed input: phi_oi(x) = sum_k c_oik T_k(tanh(x)), k = 0..degree.

    T_k comes from the recurrence T_{k+1} = 2 t T_k - T_{k-1}, which (unlike cos(k arccos t)) has
    finite derivatives at t = +-1, where tanh saturates.

    Args:
        in_features, out_features: layer widths.
        degree: highest polynomial degree (>= 0).
        bias: learnable node bias beta_o (starts at 0).
        check_finite: raise on NaN/inf inputs (one reduction per call; False skips it).
        device, dtype: where and in what precision to create the parameters.
    Init: c_oik ~ N(0, 1 / (in * (degree + 1))).
    """

    degree: int

    def __init__(self, in_features: int, out_features: int, degree: int = 4, *, bias: bool = True,
                 check_finite: bool = True, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, bias, check_finite, degree=(degree, 0))
        shape = (out_features, in_features, degree + 1)                    # (o, i, c)
        self.coef = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    @staticmethod
    def num_params(
        in_features: int, out_features: int, degree: int = 4, *, bias: bool = True, **_: Any
    ) -> int:
        """Parameter count of a layer built with these options, without building it."""
        return in_features * out_features * (degree + 1) + (out_features if bias else 0)

    @staticmethod
    def num_flops(in_features: int, out_features: int, degree: int = 4, **_: Any) -> int:
        """Forward multiply-adds per sample: each of the degree + 1 polynomials times its weight."""
        return in_features * out_features * (degree + 1)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw fresh parameters as the class docstring says (uses the global torch RNG)."""
        self.coef.normal_(0.0, 1.0 / math.sqrt(self.in_features * (self.degree + 1)))
        if self.bias is not None:
            self.bias.zero_()

    def extra_repr(self) -> str:
        return layer_repr(self, degree=self.degree)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """T_0..T_degree of tanh(x): (b, i) -> (b, i, c)."""
        t = torch.tanh(x)
        polys = [torch.ones_like(t), t]
        for _ in range(2, self.degree + 1):
            polys.append(2 * t * polys[-1] - polys[-2])
        return torch.stack(polys[: self.degree + 1], dim=-1)              # (b, i, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output: (b, i) -> (b, o)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name=type(self).__name__,
                    dtype=self.coef.dtype)
        y = _combine(self.basis(x), self.coef)                             # (b, o)
        return y if self.bias is None else y + self.bias

    def edge_responses(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge phi_oi(x_i): (b, i) -> (b, o, i)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name=type(self).__name__,
                    dtype=self.coef.dtype)
        return torch.einsum("bic,oic->boi", self.basis(x), self.coef)


class FourierKAN(SizedLayer):
    """Fourier edges: phi_oi(x) = sum_{k=1..K} a_oik cos(k x) + b_oik sin(k x), K = frequencies.

    There is no k = 0 term: the node bias carries the constant.

    Args:
        in_features, out_features: layer widths.
        frequencies: K, the number of harmonics per edge (>= 1).
        bias: learnable node bias beta_o (starts at 0).
        check_finite: raise on NaN/inf inputs (one reduction per call; False skips it).
        device, dtype: where and in what precision to create the parameters.
    Init: a_oik, b_oik ~ N(0, 1 / (in * K)), so an output has variance about 1 for any K.
    """

    frequencies: int

    def __init__(self, in_features: int, out_features: int, frequencies: int = 4, *, bias: bool = True,
                 check_finite: bool = True, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, bias, check_finite, frequencies=(frequencies, 1))
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        shape = (out_features, in_features, frequencies)
        self.cos_coef = nn.Parameter(torch.empty(shape, **factory))        # a, (o, i, c)
        self.sin_coef = nn.Parameter(torch.empty(shape, **factory))        # b, (o, i, c)
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    @staticmethod
    def num_params(
        in_features: int, out_features: int, frequencies: int = 4, *, bias: bool = True, **_: Any
    ) -> int:
        """Parameter count of a layer built with these options, without building it."""
        return 2 * in_features * out_features * frequencies + (out_features if bias else 0)

    @staticmethod
    def num_flops(in_features: int, out_features: int, frequencies: int = 4, **_: Any) -> int:
        """Forward multiply-adds per sample: each cosine and sine times its weight."""
        return 2 * in_features * out_features * frequencies

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw fresh parameters as the class docstring says (uses the global torch RNG)."""
        std = 1.0 / math.sqrt(self.in_features * self.frequencies)
        self.cos_coef.normal_(0.0, std)
        self.sin_coef.normal_(0.0, std)
        if self.bias is not None:
            self.bias.zero_()

    def extra_repr(self) -> str:
        return layer_repr(self, frequencies=self.frequencies)

    def _angles(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.arange(1, self.frequencies + 1, dtype=x.dtype, device=x.device)  # (c,)
        return x.unsqueeze(-1) * k                                         # (b, i, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output: (b, i) -> (b, o)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name=type(self).__name__,
                    dtype=self.cos_coef.dtype)
        kx = self._angles(x)
        y = _combine(torch.cos(kx), self.cos_coef) + _combine(torch.sin(kx), self.sin_coef)  # (b, o)
        return y if self.bias is None else y + self.bias

    def edge_responses(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge phi_oi(x_i): (b, i) -> (b, o, i)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name=type(self).__name__,
                    dtype=self.cos_coef.dtype)
        kx = self._angles(x)
        cos = torch.einsum("bic,oic->boi", torch.cos(kx), self.cos_coef)
        return cos + torch.einsum("bic,oic->boi", torch.sin(kx), self.sin_coef)
