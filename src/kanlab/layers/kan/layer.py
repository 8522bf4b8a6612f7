"""KANLinear: a B-spline KAN layer with every PyKAN trick as an independent switch.

    y_o = sum_i [ s_oi * phi_oi(x_i) + w_oi * b(x_i) ] + beta_o,   phi_oi(x) = sum_c c_oic * B_c(x)

Legend: b batch, i in_features, o out_features, c = grid_size + order spline coefficients,
m = grid_size + 2 * order + 1 knots per input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from kanlab import splines
from kanlab.layers._common import check_choice, check_input, check_positive_int
from kanlab.layers.kan import _compiled, _fast_dense, _fast_gather, _native, paths, regrid
from kanlab.layers.kan import options as kan_options
from kanlab.layers.kan.bases import BASES
from kanlab.layers.kan.options import KANOptions
from kanlab.layers.kan.options import constructor_options as constructor_options

INITS = ("pykan", "uniform")
PATHS = ("auto", "reference", "uniform", "dense", "gather", "compiled", "native")


class KANLinear(nn.Module):
    """B-spline KAN layer: one learnable spline per edge, plus optional PyKAN tricks.

    Args:
        in_features, out_features: layer widths.
        grid_size: intervals of the spline grid inside grid_range.
        order: spline order (3 = cubic), 0..5.
        grid_range: (lo, hi) of the initial uniform grid.
        bias: learnable node bias beta_o.
        spline_weight: learnable per-edge scale s_oi on the spline.
        base: residual function b ("silu", "identity", "tanh") or None for no base branch.
        base_weight: learnable per-edge weight w_oi on the base branch (else w_oi = 1).
        init: "pykan" (near-zero noisy coefficients, s = 1, w ~ U(+-1/sqrt(in)), beta = 0) or
            "uniform" (every parameter ~ U(-0.25, 0.25)).
        check_finite: raise on NaN/inf inputs (one reduction per call; False skips it).
        path: forward implementation: "reference" (Cox-de Boor basis + matmul, the readable one),
            "uniform" (closed-form dense basis + matmul), "dense" or "gather" (local values and a
            hand-written backward; gather runs C loops on CPU), "compiled" (torch.compile of the
            closed form; compiles per shape on first call), "native" (the whole layer as C loops,
            built on first use) or "auto". paths.py's RULES say which runs where a path cannot
            (e.g. compiled needs a uniform grid and order >= 2, native a CPU and order 2..5);
            benchmarks/README.md has their speeds.
        device, dtype: where and in what precision to create the parameters.
    """

    grid: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = KANOptions.grid_size,  # defaults: the one option set (options.py)
        order: int = KANOptions.order,
        grid_range: tuple[float, float] = KANOptions.grid_range,
        *,
        bias: bool = KANOptions.bias,
        spline_weight: bool = KANOptions.spline_weight,
        base: str | None = KANOptions.base,
        base_weight: bool = KANOptions.base_weight,
        init: str = KANOptions.init,
        check_finite: bool = KANOptions.check_finite,
        path: str = KANOptions.path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.grid_size = check_positive_int(grid_size, "grid_size")
        self.order = check_positive_int(order, "order", minimum=0)
        if order > splines.MAX_ORDER:
            raise ValueError(f"order must be in 0..{splines.MAX_ORDER}, got {order!r}")
        self.grid_range = splines.check_grid_range(grid_range)
        if base is not None:
            check_choice(base, tuple(BASES), "base")
        check_choice(init, INITS, "init")
        check_choice(path, PATHS, "path")
        self.base, self.init, self.path, self.check_finite = base, init, path, check_finite

        # Knots stay float64 whatever the layer's dtype (see _apply): a float32 round trip would
        # make a uniform grid slightly non-uniform and cost float64 users their precision.
        knots = splines.uniform_grid(grid_size, order, self.grid_range, device=device)
        self.register_buffer("grid", knots.expand(in_features, -1).clone())  # (i, m)
        self.uniform = True  # the grid is uniform per input: enables the closed-form basis
        shape = (out_features, in_features)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.coef = nn.Parameter(torch.empty(*shape, grid_size + order, **factory))  # (o, i, c)
        self.spline_weight = nn.Parameter(torch.empty(shape, **factory)) if spline_weight else None
        has_base_weight = base is not None and base_weight
        self.base_weight = nn.Parameter(torch.empty(shape, **factory)) if has_base_weight else None
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    @staticmethod
    def num_params(in_features: int, out_features: int, *args: Any, **opts: Any) -> int:
        """Parameter count of KANLinear(in_features, out_features, *args, **options), without building it.

        Options the constructor does not take are ignored (a stack passes every family the same).
        """
        return kan_options.num_params(in_features, out_features, *args, **opts)

    @staticmethod
    def num_flops(in_features: int, out_features: int, *args: Any, local: bool = False,
                  **opts: Any) -> int:
        """Forward multiply-adds per sample (kanlab.models.count_flops), at the grid as built.

        The dense evaluation (local=False; the reference and uniform paths) multiplies all
        grid_size + order bases of each input by their coefficients: in * out * (grid_size + order).
        The local-support evaluation (local=True; gather and native) touches only the order + 1
        nonzero ones: in * out * (order + 1). Either way the weighted base branch adds in * out
        (none without base or base_weight: an unweighted sum has no multiplies); the spline
        weights scale the coefficients once per batch, not per sample.
        """
        return kan_options.num_flops(in_features, out_features, *args, local=local, **opts)

    def options(self) -> dict[str, Any]:
        """The constructor's options besides the widths, device and dtype, as this layer is now
        (grid_size as refine left it): KANLinear(i, o, **layer.options()) has its parameters' shapes."""
        return kan_options.options_of(self)

    def subset(self, rows: torch.Tensor, cols: torch.Tensor) -> KANLinear:
        """A new layer of this one's output rows and input columns: its edges, bias and grid.

        Args:
            rows: (o',) long indices of the outputs kept.
            cols: (i',) long indices of the inputs kept.
        Returns:
            KANLinear(len(cols), len(rows)) with the same options, parameters and grid (knots as
            update_grid or refine left them); draws nothing from the global RNG.
        """
        with torch.random.fork_rng(devices=[]):  # the constructor's init draws; the values are replaced
            new = KANLinear(len(cols), len(rows), **self.options(), device=self.coef.device,
                            dtype=self.coef.dtype)
        with torch.no_grad():
            new.coef.copy_(self.coef[rows][:, cols])
            for name in ("spline_weight", "base_weight"):
                src, dst = getattr(self, name), getattr(new, name)
                if src is not None:
                    dst.copy_(src[rows][:, cols])
            if self.bias is not None and new.bias is not None:
                new.bias.copy_(self.bias[rows])
        new.grid = self.grid[cols].clone()
        new.uniform = self.uniform
        return new

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw fresh parameters according to self.init (uses the global torch RNG)."""
        if self.init == "uniform":
            for p in self.parameters():
                p.uniform_(-0.25, 0.25)
            return
        # PyKAN starts each spline near zero (noise of amplitude 0.5 / grid_size at the grid
        # points), spline scales at 1, base weights ~ U(-1, 1) / sqrt(fan_in) and no bias.
        self.coef.uniform_(-0.25 / self.grid_size, 0.25 / self.grid_size)
        if self.spline_weight is not None:
            self.spline_weight.fill_(1.0)
        if self.base_weight is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            self.base_weight.uniform_(-bound, bound)
        if self.bias is not None:
            self.bias.zero_()

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, grid_size={self.grid_size}, "
            f"order={self.order}, base={self.base}, spline_weight={self.spline_weight is not None}, "
            f"base_weight={self.base_weight is not None}, bias={self.bias is not None}"
        )

    # ---- forward -------------------------------------------------------------------------
    def _scaled_coef(self) -> torch.Tensor:
        if self.spline_weight is None:
            return self.coef
        return self.coef * self.spline_weight.unsqueeze(-1)                # (o, i, c)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """Spline basis of each input on its own grid: (b, i) -> (b, i, c)."""
        if self.uniform and self.path != "reference":
            return splines.uniform_bspline_basis(x, self.grid, self.order)
        return splines.bspline_basis(x, self.grid, self.order)

    def resolved_path(self) -> str:
        """The implementation forward uses now: self.path, or what it runs instead (paths.RULES)."""
        return paths.choose_path(paths.Layer(
            self.path, self.in_features * self.out_features, self.grid_size, self.order, self.uniform,
            self.coef.device.type == "cpu", self.coef.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output: (b, i) -> (b, o)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name="KANLinear",
                    dtype=self.coef.dtype)
        path = self.resolved_path()
        base_fn = None if self.base is None else BASES[self.base].value
        if path == "compiled":
            return _compiled.layer(x, self.coef, self.spline_weight, self.base_weight, self.bias,
                                   self.grid, self.order, self.base)
        if path == "native":
            return _native.native_layer(x, self.coef, self.spline_weight, self.base_weight, self.bias,
                                        self.grid, self.order, self.base, self.uniform)
        if path == "dense":  # base branch and bias fused into the one GEMM
            return _fast_dense.DenseKAN.apply(
                x, self.coef, self.spline_weight, self.base_weight, self.bias, self.grid, self.order,
                self.uniform, self.base,
            )
        if path == "gather":
            y = _fast_gather.gather_spline(x, self.coef, self.spline_weight, self.grid, self.order,
                                           self.uniform)
        else:
            basis = self.basis(x)                                          # (b, i, c)
            coef = self._scaled_coef()                                     # (o, i, c)
            y = basis.flatten(1) @ coef.flatten(1).T                       # (b, o)
        if base_fn is not None:
            b = base_fn(x)                                                 # (b, i)
            if self.base_weight is None:
                y = y + b.sum(dim=1, keepdim=True)
            else:
                y = torch.addmm(y, b, self.base_weight.T)
        if self.bias is not None:
            y = y + self.bias
        return y

    def edge_responses(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge outputs s_oi * phi_oi(x_i) + w_oi * b(x_i): (b, i) -> (b, o, i)."""
        check_input(x, self.in_features, check_finite=self.check_finite, name="KANLinear",
                    dtype=self.coef.dtype)
        y = torch.einsum("bic,oic->boi", self.basis(x), self._scaled_coef())
        if self.base is not None:
            b = BASES[self.base].value(x).unsqueeze(1)                           # (b, 1, i)
            y = y + (b if self.base_weight is None else b * self.base_weight)
        return y

    # ---- grid changes (side effects the training loop asks for) ----------------------------
    @torch.no_grad()
    def _set_grid(self, grid: torch.Tensor, x: torch.Tensor, uniform: bool) -> None:
        coef = regrid.refit(self.coef, self.grid, grid, self.order, x)     # (o, i, c)
        if coef.shape == self.coef.shape:
            self.coef.copy_(coef)  # same tensor: an optimizer holding it keeps working
        else:
            self.coef = nn.Parameter(coef.contiguous())
        self.grid = grid.to(self.grid)
        self.grid_size = grid.shape[-1] - 2 * self.order - 1
        self.uniform = uniform

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02, margin: float = 0.0) -> None:
        """Move the knots to the quantiles of x (mixed with a uniform grid by grid_eps) and refit.

        Args:
            x: (b, i) samples, e.g. the current batch; the new grid spans their range per input.
            grid_eps: 0 = pure quantiles, 1 = uniform over the data range.
            margin: widen the grid's range by this fraction of the data's range on each side (the
                knots stretched about its middle), so that inputs a little outside the samples'
                range (unseen data, or the samples after more training) stay inside the grid.
        """
        check_input(x, self.in_features, check_finite=True, name="KANLinear.update_grid")
        if not 0.0 <= grid_eps <= 1.0:
            raise ValueError(f"grid_eps must be in [0, 1], got {grid_eps!r}")
        if not 0.0 <= margin < float("inf"):
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        grid = regrid.quantile_grid(x.to(self.grid.dtype), self.grid_size, self.order, grid_eps, margin)
        self._set_grid(grid, x, uniform=grid_eps == 1.0)

    @torch.no_grad()
    def refine(self, grid_size: int, x: torch.Tensor | None = None) -> None:
        """Grid extension: move to grid_size intervals and refit, keeping phi.

        The new base knots follow the old knots' spacing: they are equally spaced in the old
        knots' index (piecewise-linear between the old knots), so an integer-factor refinement
        keeps every old knot. phi is refitted by least squares on 2(k + 1) points per new interval,
        which keeps it exactly where the new knots include the old ones, and on x where given.

        Args:
            grid_size: the new number of intervals.
            x: (b, i) inputs where phi must be kept, such as the layer's training inputs. Where
                some lie past the grid's range (after training, a deeper layer's inputs drift out
                of the range its last grid update gave it), the new range is widened to cover
                them, continuing the old knots' spacing, so that they get all k + 1 bases.
        """
        check_positive_int(grid_size, "grid_size")
        if x is not None:
            check_input(x, self.in_features, check_finite=True, name="KANLinear.refine")
            x = x.to(self.grid.dtype)
        grid, samples = regrid.refined_grid(self.grid, self.order, grid_size, x)
        # a uniform grid's knots, extension included, are equally spaced: the new ones are too
        self._set_grid(grid, samples, uniform=self.uniform)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> KANLinear:
        # .to()/.double()/.cuda() move the knots but keep them float64 (unless the device lacks it).
        grid = self.grid
        super()._apply(fn, recurse)
        device = fn(grid).device
        self.grid = grid.to(device, dtype=torch.float32 if device.type == "mps" else grid.dtype)
        return self

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # A saved grid may differ in size (refined) or spacing (updated): adopt it as it is.
        grid = state_dict.get(prefix + "grid")
        if grid is not None:
            self.grid = torch.empty_like(grid, device=self.grid.device, dtype=self.grid.dtype)
            c = grid.shape[-1] - self.order - 1
            self.coef = nn.Parameter(self.coef.new_empty(self.out_features, self.in_features, c))
            self.grid_size = c - self.order
            diffs = grid.diff(dim=-1)
            self.uniform = bool(torch.allclose(diffs, diffs[:, :1].expand_as(diffs), rtol=1e-9))
        super()._load_from_state_dict(state_dict, prefix, *args)
