"""Models: the spec grammar, stacks of layers, budget matching and per-edge sampling."""

from kanlab._lazy import lazy_names

TYPE_CHECKING = False  # the public names, loaded on first use (kanlab._lazy)
if TYPE_CHECKING:
    from kanlab.models.budget import match_params, match_widths
    from kanlab.models.edges import edge_arrays
    from kanlab.models.spec import (
        ALIASES,
        FAMILIES,
        GRAMMAR,
        BlockConfig,
        Family,
        LayerClass,
        ModelConfig,
        allowed_options,
        format_spec,
        parse_spec,
    )
    from kanlab.models.stack import (
        KAN,
        MLP,
        EdgeLayer,
        Stack,
        build,
        count_flops,
        count_params,
        edge_samples,
        layer_inputs,
        param_count,
    )

__all__ = ["ALIASES", "BlockConfig", "EdgeLayer", "FAMILIES", "Family", "GRAMMAR", "KAN", "LayerClass",
    "MLP", "ModelConfig", "Stack", "allowed_options", "build", "count_flops", "count_params",
    "edge_arrays", "edge_samples", "format_spec", "layer_inputs", "match_params", "match_widths",
    "param_count", "parse_spec"]
__getattr__, __dir__ = lazy_names(__name__)
