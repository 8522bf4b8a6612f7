"""Dense: a linear map followed by a fixed activation, the MLP layer (SIREN's sine included).

    y = act(x W^T + b),   "sine": y = sin(omega_0 * (x W^T + b))

An MLP's edges are linear: edge_responses gives w_oi * x_i, and forward is the activation of
their sum plus the bias. Its last layer is Dense(..., activation="identity").

Legend: b batch, i in_features, o out_features.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kanlab.layers._common import check_choice, check_input, check_positive_int

ACTIVATIONS = ("tanh", "relu", "silu", "gelu", "sine", "identity")
# "sine" is not here: it needs omega_0 and is applied in forward.
_FIXED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "silu": F.silu,
    "gelu": F.gelu,  # the exact (erf) form
    "identity": lambda z: z,
}


class Dense(nn.Module):
    """Linear layer plus a fixed activation: y = act(x W^T + b); "sine" is SIREN's sin(omega_0 (x W^T + b)).

    Init: "sine" follows Sitzmann et al. 2020: W ~ U(-1/in, 1/in) for the network's first layer
    (first=True), else W ~ U(-sqrt(6/in)/omega_0, sqrt(6/in)/omega_0); b keeps nn.Linear's
    U(-1/sqrt(in), 1/sqrt(in)) as in the SIREN code. "tanh" uses Xavier-uniform W
    (U(+-sqrt(6/(in+out))), designed for tanh) and b = 0. The others use nn.Linear's default:
    W, b ~ U(-1/sqrt(in), 1/sqrt(in)).

    Args:
        in_features, out_features: layer widths.
        activation: one of ACTIVATIONS.
        bias: learnable bias b.
        omega_0: SIREN's frequency factor (used by "sine" only), a finite number > 0.
        first: this is the network's first layer (SIREN init; only valid with "sine").
        check_finite: raise on NaN/inf inputs (one reduction per call; False skips it).
        device, dtype: where and in what precision to create the parameters.
    """

    def __init__(
        self, in_features: int, out_features: int, activation: str = "tanh", *,
        bias: bool = True, omega_0: float = 30.0, first: bool = False, check_finite: bool = True,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        check_choice(activation, ACTIVATIONS, "activation")
        for name, value in (("bias", bias), ("first", first), ("check_finite", check_finite)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        if isinstance(omega_0, bool) or not isinstance(omega_0, (int, float)) or not 0 < omega_0 < math.inf:
            raise ValueError(f"omega_0 must be a finite number > 0, e.g. 30.0, got {omega_0!r}")
        if first and activation != "sine":
            raise ValueError(
                f"first=True selects SIREN's first-layer init and needs activation='sine', got {activation!r}"
            )
        self.activation, self.omega_0, self.first = activation, float(omega_0), first
        self.check_finite = check_finite
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))  # (o, i)
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    @staticmethod
    def num_params(
        in_features: int, out_features: int, activation: str = "tanh", *, bias: bool = True, **_: Any
    ) -> int:
        """Parameter count of a layer built with these options, without building it."""
        return in_features * out_features + (out_features if bias else 0)

    @staticmethod
    def num_flops(in_features: int, out_features: int, **_: Any) -> int:
        """Forward multiply-adds per sample (kanlab.models.count_flops): the matmul's in * out."""
        return in_features * out_features

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw fresh parameters as the class docstring says (uses the global torch RNG)."""
        n_in = self.in_features
        default = 1.0 / math.sqrt(n_in)
        if self.activation == "sine":
            bound = 1.0 / n_in if self.first else math.sqrt(6.0 / n_in) / self.omega_0
        elif self.activation == "tanh":
            bound = math.sqrt(6.0 / (n_in + self.out_features))
        else:
            bound = default
        self.weight.uniform_(-bound, bound)
        if self.bias is not None:
            if self.activation == "tanh":
                self.bias.zero_()
            else:
                self.bias.uniform_(-default, default)

    def extra_repr(self) -> str:
        sine = f", omega_0={self.omega_0}, first={self.first}" if self.activation == "sine" else ""
        return (
            f"{self.in_features}, {self.out_features}, activation={self.activation!r}{sine}, "
            f"bias={self.bias is not None}, check_finite={self.check_finite}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output: (b, i) -> (b, o)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name=type(self).__name__,
                    dtype=self.weight.dtype)
        z = F.linear(x, self.weight, self.bias)                            # (b, o)
        if self.activation == "sine":
            return torch.sin(self.omega_0 * z)
        return _FIXED[self.activation](z)

    def edge_responses(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge pre-activation terms w_oi * x_i (an MLP's edges are linear): (b, i) -> (b, o, i)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name=type(self).__name__,
                    dtype=self.weight.dtype)
        return x.unsqueeze(1) * self.weight                                # (b, o, i)
