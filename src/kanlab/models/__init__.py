"""Models: the spec grammar, stacks of layers, budget matching and per-edge sampling."""

from kanlab._lazy import lazy_names

# The public names, loaded on first use (kanlab._lazy); `X as X` marks a re-export for type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from kanlab.models.budget import match_params as match_params
    from kanlab.models.budget import match_widths as match_widths
    from kanlab.models.edges import edge_arrays as edge_arrays
    from kanlab.models.spec import ALIASES as ALIASES
    from kanlab.models.spec import FAMILIES as FAMILIES
    from kanlab.models.spec import GRAMMAR as GRAMMAR
    from kanlab.models.spec import BlockConfig as BlockConfig
    from kanlab.models.spec import Family as Family
    from kanlab.models.spec import LayerClass as LayerClass
    from kanlab.models.spec import ModelConfig as ModelConfig
    from kanlab.models.spec import allowed_options as allowed_options
    from kanlab.models.spec import format_spec as format_spec
    from kanlab.models.spec import parse_spec as parse_spec
    from kanlab.models.stack import KAN as KAN
    from kanlab.models.stack import MLP as MLP
    from kanlab.models.stack import EdgeLayer as EdgeLayer
    from kanlab.models.stack import Stack as Stack
    from kanlab.models.stack import build as build
    from kanlab.models.stack import count_flops as count_flops
    from kanlab.models.stack import count_params as count_params
    from kanlab.models.stack import edge_samples as edge_samples
    from kanlab.models.stack import layer_inputs as layer_inputs
    from kanlab.models.stack import param_count as param_count

__all__ = ["ALIASES", "BlockConfig", "EdgeLayer", "FAMILIES", "Family", "GRAMMAR", "KAN", "LayerClass",
    "MLP", "ModelConfig", "Stack", "allowed_options", "build", "count_flops", "count_params",
    "edge_arrays", "edge_samples", "format_spec", "layer_inputs", "match_params", "match_widths",
    "param_count", "parse_spec"]
__getattr__, __dir__ = lazy_names(__name__)
