"""The catalog: torch-free names of everything a page or a spec offers.

    from sparsity_core.catalog import MODELS, METHODS, VARIANTS, LAYOUT_HELP, DATASETS, presets

Models (`models`), pruning methods with their parameter models and patterns (`pruning`), SAE
variants, sites and corpora (`sae`), kernel layouts (`kernels`), datasets (`datasets`), "Try this"
presets (`presets`) and input bounds (`caps`). Pages draw their widgets from here and `specs.py`
validates against it; the compute modules register their implementations under these names, and
`tests/sparsity_core/catalog/test_in_step.py` keeps the two in step. Importing the catalog loads
pydantic and nothing heavier.
"""

from sparsity_core.catalog.datasets import DATASETS, DatasetEntry
from sparsity_core.catalog.kernels import LAYOUT_HELP, MODES
from sparsity_core.catalog.kernels import PRESETS as SHAPE_PRESETS
from sparsity_core.catalog.models import MODELS, ModelEntry, check_model_name, model_entry, model_names
from sparsity_core.catalog.presets import PRESETS, Preset, presets
from sparsity_core.catalog.pruning import METHODS, STRUCTURED, MethodEntry, Pattern, parse_pattern, shape_problem
from sparsity_core.catalog.sae import CORPORA, SITES, VARIANTS, VariantEntry

__all__ = [
    "CORPORA", "DATASETS", "LAYOUT_HELP", "METHODS", "MODELS", "MODES", "PRESETS", "SHAPE_PRESETS", "SITES",
    "STRUCTURED", "VARIANTS", "DatasetEntry", "MethodEntry", "ModelEntry", "Pattern", "Preset", "VariantEntry",
    "check_model_name", "model_entry", "model_names", "parse_pattern", "presets", "shape_problem",
]
