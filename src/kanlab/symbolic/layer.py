"""SymbolicKANLinear: a KANLinear some of whose edges are fixed to c * f(a * x + b) + d.

    y_o = sum_{i spline} [s_oi phi_oi(x_i) + w_oi b(x_i)]
        + sum_{i fixed} [c_oi f_oi(a_oi x_i + b_oi) + d_oi] + beta_o

The wrapped KANLinear is left as it is: the forward calls it with the fixed edges' spline
coefficients and base weights masked to zero (torch.func.functional_call), so its stored values
survive for unfix() and get zero gradient while fixed; with no edge fixed the forward is the
wrapped layer's own. The constants (a, b, c, d) are one trainable (o, i, 4) Parameter; only fixed
edges' entries are used. fn_index holds each edge's symlib.NAMES index (-1 = spline), so a
state_dict carries the symbolic choices; the forward reads its layout (fixed_edges.EdgeLayout)
from a cache that any change of fn_index (fix, unfix, load_state_dict, a move) invalidates.

Legend: b batch, i in_features, o out_features, e fixed edges.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from kanlab.layers._common import check_input
from kanlab.layers.kan.bases import BASES
from kanlab.layers.kan.layer import KANLinear
from kanlab.symbolic import library as symlib
from kanlab.symbolic.fixed_edges import EdgeLayout, FixedLayer
from kanlab.training.hand_objective import HandLayer, NativeLayer

SPLINE = -1


class SymbolicKANLinear(nn.Module):
    """A KANLinear whose edges can be fixed to symbolic functions one by one.

    Args:
        kan: the B-spline layer to wrap (kept, not copied; its grid methods stay usable).
    """

    fn_index: torch.Tensor

    def __init__(self, kan: KANLinear) -> None:
        super().__init__()
        if not isinstance(kan, KANLinear):
            raise TypeError(f"SymbolicKANLinear wraps a KANLinear, got {type(kan).__name__}")
        self.kan = kan
        self.in_features, self.out_features = kan.in_features, kan.out_features
        shape = (kan.out_features, kan.in_features)
        self.register_buffer("fn_index", torch.full(shape, SPLINE, dtype=torch.long, device=kan.coef.device))
        start = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=kan.coef.dtype, device=kan.coef.device)
        self.affine = nn.Parameter(start.expand(*shape, 4).clone())                 # (o, i, 4): a, b, c, d
        self._layout: tuple[torch.Tensor, int, EdgeLayout] | None = None  # fn_index, its version, layout

    def __getstate__(self) -> dict[str, Any]:
        # The cached layout holds library functions, some of them lambdas, which pickle cannot
        # write: a pickled layer (torch.save of a whole model) rebuilds it on first use.
        state = dict(super().__getstate__())
        state["_layout"] = None
        return state

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, fixed={int((self.fn_index >= 0).sum())}"

    @property
    def grid_size(self) -> int:
        """The wrapped layer's grid size."""
        return self.kan.grid_size

    # ---- which edges are symbolic ----------------------------------------------------------
    def fixed_mask(self) -> torch.Tensor:
        """(o, i) bool: True where the edge is symbolic."""
        return self.fn_index >= 0

    def function_name(self, o: int, i: int) -> str | None:
        """The symbolic function of edge (o, i), or None while it is a spline."""
        k = int(self.fn_index[o, i])
        return None if k == SPLINE else symlib.NAMES[k]

    def constants(self, o: int, i: int) -> tuple[float, float, float, float]:
        """(a, b, c, d) of edge (o, i)."""
        a, b, c, d = self.affine[o, i].detach().tolist()
        return a, b, c, d

    def spline_edges(self) -> list[tuple[int, int]]:
        """(o, i) of every edge that is still a spline."""
        return [(int(o), int(i)) for o, i in (~self.fixed_mask()).nonzero().tolist()]

    def _check_edge(self, o: int, i: int) -> None:
        if not (0 <= o < self.out_features and 0 <= i < self.in_features):
            raise IndexError(
                f"edge (o={o}, i={i}) is outside this {self.in_features} -> {self.out_features} layer"
            )

    @torch.no_grad()
    def fix(
        self, o: int, i: int, name: str, a: float = 1.0, b: float = 0.0, c: float = 1.0, d: float = 0.0
    ) -> None:
        """Make edge (o, i) the symbolic c * name(a * x + b) + d (constants stay trainable)."""
        self._check_edge(o, i)
        symlib.get(name)  # a ValueError listing the known names
        self.fn_index[o, i] = symlib.NAMES.index(name)
        self.affine[o, i] = torch.tensor([a, b, c, d], dtype=self.affine.dtype)

    @torch.no_grad()
    def unfix(self, o: int, i: int) -> None:
        """Return edge (o, i) to its spline (as it was when fixed)."""
        self._check_edge(o, i)
        self.fn_index[o, i] = SPLINE

    # ---- forward ---------------------------------------------------------------------------
    def layout(self) -> EdgeLayout:
        """The fixed edges grouped by function, cached until fn_index changes."""
        index = self.fn_index
        try:
            version = index._version
        except RuntimeError:  # an inference tensor has no version counter: not cached
            return EdgeLayout.of(index)
        hit = getattr(self, "_layout", None)  # absent in a module pickled before the cache
        if hit is None or hit[0] is not index or hit[1] != version:
            hit = self._layout = (index, version, EdgeLayout.of(index))
        return hit[2]

    def by_hand(self) -> HandLayer | None:
        """This layer's hand-written forward and backward (training.hand_objective), where it has one:
        with no edge fixed the wrapped layer's native kernels, with every edge fixed FixedLayer."""
        layout = self.layout()
        if not layout.any:
            return NativeLayer.of(self.kan)
        return FixedLayer(self.affine, self.kan.bias, layout) if layout.all else None

    def _fixed_edges(self, x: torch.Tensor, layout: EdgeLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """Output rows and responses of the fixed edges: ((e,), (b, e))."""
        p = self.affine[layout.o_idx, layout.i_idx]                                  # (e, 4)
        u = x[:, layout.i_idx] * p[:, 0] + p[:, 1]                                   # (b, e)
        return layout.o_idx, p[:, 2] * layout.apply(u) + p[:, 3]                     # (e,), (b, e)

    def _spline_part(self, x: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """The wrapped layer's output with the fixed edges' spline and base removed: (b, o)."""
        kan = self.kan
        keep = (~fixed).to(kan.coef.dtype)                                           # (o, i)
        masked = {"coef": kan.coef * keep.unsqueeze(-1)}
        if kan.base_weight is not None:
            masked["base_weight"] = kan.base_weight * keep
        y = functional_call(kan, masked, (x,))
        if kan.base is not None and kan.base_weight is None:  # an unweighted base: subtract it
            y = y - BASES[kan.base].value(x) @ fixed.to(x.dtype).T
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output: (b, i) -> (b, o)."""
        layout = self.layout()
        if not layout.any:  # all splines: the wrapped layer as it is
            y: torch.Tensor = self.kan(x)
            return y
        if layout.all:  # no spline left: skip the basis entirely
            check_input(x, self.in_features, check_finite=self.kan.check_finite, name="SymbolicKANLinear")
            y = x.new_zeros(x.shape[0], self.out_features)
            if self.kan.bias is not None:
                y = y + self.kan.bias
        else:
            y = self._spline_part(x, layout.fixed)
        o_idx, edges = self._fixed_edges(x, layout)
        return y.index_add(1, o_idx, edges)                                          # (b, o)

    def edge_responses(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge outputs (spline or symbolic, no bias): (b, i) -> (b, o, i)."""
        layout = self.layout()
        r = self.kan.edge_responses(x) * (~layout.fixed).to(x.dtype)                # (b, o, i)
        if layout.any:
            o_idx, edges = self._fixed_edges(x, layout)
            batch = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
            r = r.index_put((batch, o_idx, layout.i_idx), edges)
        return r

    # ---- the spline part's grid (the training loop's side effects) ---------------------------
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02, margin: float = 0.0) -> None:
        """KANLinear.update_grid on the wrapped layer (fixed edges are unaffected)."""
        self.kan.update_grid(x, grid_eps, margin)

    def refine(self, grid_size: int, x: torch.Tensor | None = None) -> None:
        """KANLinear.refine on the wrapped layer."""
        self.kan.refine(grid_size, x)


KanLayer = KANLinear | SymbolicKANLinear  # the layers pruning, snapping and formulas work on
