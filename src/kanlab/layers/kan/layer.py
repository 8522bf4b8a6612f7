"""KANLinear: a B-spline KAN layer with every PyKAN trick as an independent switch.

    y_o = sum_i [ s_oi * phi_oi(x_i) + w_oi * b(x_i) ] + beta_o,   phi_oi(x) = sum_c c_oic * B_c(x)

Legend: b batch, i in_features, o out_features, c = grid_size + order spline coefficients,
m = grid_size + 2 * order + 1 knots per input.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from kanlab import splines
from kanlab.layers._common import check_choice, check_input, check_positive_int
from kanlab.layers.kan import _compiled, _fast_dense, _fast_gather, _native, paths
from kanlab.layers.kan.bases import BASES

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
            "uniform" (closed-form dense basis + matmul), "dense" and "gather" (local values and a
            hand-written backward, see layers/kan/_fast*.py; on CPU gather runs C loops compiled on
            first use, layers/kan/_native_gather.py), "auto": native for small layers (at most 128
            edges, where it can run), else gather on CPU where a C compiler works (any grid,
            uniform or not, any order), else dense for coarse grids and gather for fine ones,
            or "compiled": the closed-form
            dense basis and its hand-written backward fused by torch.compile
            (layers/kan/_compiled.py; ~5-20 s to compile per shape on first call, then the fastest
            at coarse grids; uniform grids and order >= 2 only, else what "auto" picks), or
            "native": the whole layer as C loops compiled on first use (layers/kan/_native.py; the
            fastest for small layers such as the KAN paper's; CPU, order 2..5 and a C compiler
            only, else what "auto" picks; any grid, uniform or moved by update_grid; inside
            torch.compile it runs eagerly, a graph break).
        device, dtype: where and in what precision to create the parameters.
    """

    grid: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        *,
        bias: bool = True,
        spline_weight: bool = True,
        base: str | None = "silu",
        base_weight: bool = True,
        init: str = "pykan",
        check_finite: bool = True,
        path: str = "auto",
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
    def num_params(in_features: int, out_features: int, *args: Any, **options: Any) -> int:
        """Parameter count of KANLinear(in_features, out_features, *args, **options), without building it.

        Options the constructor does not take are ignored (a stack passes every family the same).
        """
        opt = constructor_options(in_features, out_features, *args, **options)
        weighted_base = opt["base"] is not None and opt["base_weight"]
        per_edge = opt["grid_size"] + opt["order"] + int(opt["spline_weight"]) + int(weighted_base)
        return in_features * out_features * per_edge + (out_features if opt["bias"] else 0)

    @staticmethod
    def num_flops(in_features: int, out_features: int, *args: Any, local: bool = False,
                  **options: Any) -> int:
        """Forward multiply-adds per sample (kanlab.models.count_flops), at the grid as built.

        The dense evaluation (local=False; the reference and uniform paths) multiplies all
        grid_size + order bases of each input by their coefficients: in * out * (grid_size + order).
        The local-support evaluation (local=True; gather and native) touches only the order + 1
        nonzero ones: in * out * (order + 1). Either way the weighted base branch adds in * out
        (none without base or base_weight: an unweighted sum has no multiplies); the spline
        weights scale the coefficients once per batch, not per sample.
        """
        opt = constructor_options(in_features, out_features, *args, **options)
        spline = opt["order"] + 1 if local else opt["grid_size"] + opt["order"]
        return in_features * out_features * (spline + int(opt["base"] is not None and opt["base_weight"]))

    def options(self) -> dict[str, Any]:
        """The constructor's options besides the widths, device and dtype, as this layer is now
        (grid_size as refine left it): KANLinear(i, o, **layer.options()) has its parameters' shapes."""
        return {"grid_size": self.grid_size, "order": self.order, "grid_range": self.grid_range,
                "bias": self.bias is not None, "spline_weight": self.spline_weight is not None,
                "base": self.base, "base_weight": self.base_weight is not None, "init": self.init,
                "check_finite": self.check_finite, "path": self.path}

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
    def _spline_values(self, x: torch.Tensor) -> torch.Tensor:
        # phi_oi(x_i) without the spline weight, as (b, i, o) targets for a refit.
        basis = splines.bspline_basis(x, self.grid, self.order)
        return torch.einsum("bic,oic->bio", basis, self.coef.to(basis.dtype))

    @torch.no_grad()
    def _set_grid(self, grid: torch.Tensor, x: torch.Tensor, uniform: bool) -> None:
        # Refit the coefficients so phi stays as close as least squares allows at the samples x;
        # in the knots' float64 whatever the layer's dtype.
        x = x.to(self.grid.dtype)
        target = self._spline_values(x)                                    # (n, i, o)
        coef = splines.fit_coefficients(x, target, grid, self.order)       # (i, o, c)
        coef = coef.transpose(0, 1).to(self.coef)                          # (o, i, c)
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
        g, k = self.grid_size, self.order
        xs = torch.sort(x.to(self.grid.dtype), dim=0).values                # (b, i)
        where = torch.linspace(0, x.shape[0] - 1, g + 1, device=x.device).round().long()
        adaptive = xs[where].T                                             # (i, g + 1)
        lo, hi = xs[0], xs[-1]
        if bool((hi - lo <= 0).any()):
            raise ValueError("update_grid needs at least two distinct values of every input")
        steps = torch.arange(g + 1, dtype=xs.dtype, device=x.device) / g
        uniform = lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * steps         # (i, g + 1)
        inner = grid_eps * uniform + (1 - grid_eps) * adaptive
        if margin > 0:  # stretched about the middle, so [lo, hi] becomes [lo - d, hi + d]
            mid = ((lo + hi) / 2).unsqueeze(1)
            inner = mid + (inner - mid) * (1 + 2 * margin)
            lo, hi = lo - margin * (hi - lo), hi + margin * (hi - lo)
        h = ((hi - lo) / g).unsqueeze(1)                                   # (i, 1)
        ext = torch.arange(1, k + 1, dtype=xs.dtype, device=x.device)
        left, right = inner[:, :1] - h * ext.flip(0), inner[:, -1:] + h * ext
        grid = torch.cat([left, inner, right], dim=1)                      # (i, m)
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
        k, g = self.order, self.grid_size
        span = torch.tensor([float(k), float(k + g)], dtype=self.grid.dtype, device=self.grid.device)
        span = span.expand(self.in_features, 2)                            # (i, 2) in knot index
        if x is not None:
            check_input(x, self.in_features, check_finite=True, name="KANLinear.refine")
            x = x.to(self.grid.dtype)
            lo, hi = _knot_index(self.grid, x.min(0).values), _knot_index(self.grid, x.max(0).values)
            span = torch.stack([torch.minimum(span[:, 0], lo), torch.maximum(span[:, 1], hi)], 1)
        steps = torch.linspace(0, 1, grid_size + 1, dtype=span.dtype, device=span.device)
        new_inner = _knot_at(self.grid, span[:, :1] + (span[:, 1:] - span[:, :1]) * steps)  # (i, G + 1)
        h = ((new_inner[:, -1] - new_inner[:, 0]) / grid_size).unsqueeze(1)
        ext = torch.arange(1, k + 1, dtype=new_inner.dtype, device=new_inner.device)
        grid = torch.cat([new_inner[:, :1] - h * ext.flip(0), new_inner, new_inner[:, -1:] + h * ext], 1)
        # 2(k + 1) samples inside each new interval (k + 1 determine every coefficient on it)
        t = (torch.arange(2 * k + 2, dtype=grid.dtype, device=grid.device) + 0.5) / (2 * k + 2)
        left, width = new_inner[:, :-1], new_inner.diff(dim=1)            # (i, G)
        samples = (left.unsqueeze(-1) + width.unsqueeze(-1) * t).flatten(1).T  # (G * (2k + 2), i)
        if x is not None:
            samples = torch.cat([samples, x])
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


def _knot_at(knots: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Positions at fractional knot indices u (i, n) of knots (i, m): piecewise linear between
    the knots, continued past the ends with the end spacing."""
    m = knots.shape[1]
    cell = u.floor().clamp(0, m - 2)
    j = cell.long()
    frac = u - cell                                                        # outside: < 0 or > 1
    left, right = knots.gather(1, j), knots.gather(1, j + 1)
    return left + (right - left) * frac


def _knot_index(knots: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The fractional knot index of x (i,) in knots (i, m): the inverse of _knot_at."""
    m = knots.shape[1]
    j = (torch.searchsorted(knots, x.unsqueeze(1), right=True) - 1).clamp(0, m - 2)  # (i, 1)
    left, right = knots.gather(1, j), knots.gather(1, j + 1)
    width = torch.where(right > left, right - left, 1.0)  # a repeated knot: its own index
    return (j + (x.unsqueeze(1) - left) / width).squeeze(1)


_PARAMETERS = inspect.signature(KANLinear).parameters
_POSITIONAL = [n for n, p in _PARAMETERS.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
_DEFAULTS = {name: p.default for name, p in _PARAMETERS.items()}


def constructor_options(*args: Any, **options: Any) -> dict[str, Any]:
    """Every argument of KANLinear(*args, **options), defaults filled in: the one option set that
    the constructor, num_params and num_flops share. Keys the constructor does not take are dropped.

    (Not Signature.bind: budget matching counts many candidate stacks, and bind costs ~20 us.)
    """
    if len(args) > len(_POSITIONAL):
        raise TypeError(f"KANLinear takes at most {len(_POSITIONAL)} positional arguments, got {len(args)}")
    out = dict(_DEFAULTS)
    out.update(zip(_POSITIONAL, args, strict=False))  # the first len(args) names
    out.update((k, v) for k, v in options.items() if k in out)
    return out
