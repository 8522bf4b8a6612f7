"""TanhQuadratic: per-edge tanh(a x^2 + b x), the cheapest learnable activation people try for KANs.

It follows the KANLinear contract: (b, i) -> (b, o), edge_responses (b, i) -> (b, o, i), a static
num_params, and forward == edge_responses(x).sum(-1) + bias (after_sum mode applies tanh to that sum).

Legend: b batch, i in_features, o out_features.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from kanlab.layers._common import check_flags, check_input, check_widths, layer_repr


class TanhQuadratic(nn.Module):
    """Per-edge tanh of a learnable quadratic: y_o = sum_i tanh(a_oi x_i^2 + b_oi x_i) + beta_o.

    With after_sum=True the tanh moves outside the sum, y_o = tanh(sum_i (a_oi x_i^2 + b_oi x_i) + beta_o),
    which is what from-scratch attempts often end up with: a tanh MLP layer on the features
    (x^2, x), two matmuls, but no longer a KAN (its edges are plain quadratics).

    The default mode is the one family whose forward forms a (b, o, i) tensor: tanh acts on each
    edge before the sum, so no matmul factorisation exists. Autograd keeps up to two such tensors,
    so memory grows as batch * out * in; split large batches for evaluation.

    Args:
        in_features, out_features: layer widths.
        bias: learnable node bias beta_o (starts at 0).
        after_sum: apply tanh to the node sum instead of to each edge.
        check_finite: raise on NaN/inf inputs (one reduction per call; False skips it).
        device, dtype: where and in what precision to create the parameters.
    Init: a_oi, b_oi ~ U(-1/sqrt(in), 1/sqrt(in)), nn.Linear's weight distribution.
    """

    def __init__(
        self, in_features: int, out_features: int, *,
        bias: bool = True, after_sum: bool = False, check_finite: bool = True,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = check_widths(in_features, out_features)
        check_flags(bias=bias, after_sum=after_sum, check_finite=check_finite)
        self.after_sum, self.check_finite = after_sum, check_finite
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.quad_weight = nn.Parameter(torch.empty(out_features, in_features, **factory))  # a, (o, i)
        self.lin_weight = nn.Parameter(torch.empty(out_features, in_features, **factory))  # b, (o, i)
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    @staticmethod
    def num_params(in_features: int, out_features: int, *, bias: bool = True, **_: Any) -> int:
        """Parameter count of a layer built with these options, without building it."""
        return 2 * in_features * out_features + (out_features if bias else 0)

    @staticmethod
    def num_flops(in_features: int, out_features: int, **_: Any) -> int:
        """Forward multiply-adds per sample: a x^2 + b x per edge, (a x + b) x, is two (either mode).

        The default mode also evaluates one tanh per edge (in * out per sample), not a multiply-add.
        """
        return 2 * in_features * out_features

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw fresh parameters as the class docstring says (uses the global torch RNG)."""
        bound = 1.0 / math.sqrt(self.in_features)
        self.quad_weight.uniform_(-bound, bound)
        self.lin_weight.uniform_(-bound, bound)
        if self.bias is not None:
            self.bias.zero_()

    def extra_repr(self) -> str:
        return layer_repr(self, after_sum=self.after_sum)

    def _quadratics(self, x: torch.Tensor) -> torch.Tensor:
        xe = x.unsqueeze(1)                                                # (b, 1, i)
        return torch.addcmul(self.lin_weight, self.quad_weight, xe) * xe  # (b, o, i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output: (b, i) -> (b, o)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name=type(self).__name__,
                    dtype=self.quad_weight.dtype)
        if self.after_sum:
            y = (x * x) @ self.quad_weight.T + x @ self.lin_weight.T       # (b, o)
            return torch.tanh(y if self.bias is None else y + self.bias)
        y = torch.tanh(self._quadratics(x)).sum(-1)                        # (b, o)
        return y if self.bias is None else y + self.bias

    def edge_responses(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge tanh(a x^2 + b x), or the pre-tanh a x^2 + b x with after_sum: (b, i) -> (b, o, i)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name=type(self).__name__,
                    dtype=self.quad_weight.dtype)
        q = self._quadratics(x)
        return q if self.after_sum else torch.tanh(q)
