"""The model zoo: the implementations of the catalog's models, plus `hf:<hub-id-or-local-path>`.

    handle = load_model("digits-mlp")          # ModelHandle: module + tokenizer + task + family
    linears = prunable_linears(handle)          # {fqn: nn.Linear}, the body without the head

The names, tasks and shapes live in the torch-free catalog (`sparsity_core.catalog.models`); each
bundled model's module registers its loader under its catalog name (`@register_loader(...)`), and
importing this package imports those modules. `hf:` goes through transformers' Auto classes and
the family adapter in `adapters.py`.
"""

from sparsity_core.catalog.models import MODELS, check_model_name, model_names
from sparsity_core.zoo import classifier, digits_mlp, minilm, smollm2  # noqa: F401  (register their loaders)
from sparsity_core.zoo.adapters import blocks, family_of, prunable_linears
from sparsity_core.zoo.registry import LOADERS, ModelHandle, load_model, load_skeleton, register_loader

__all__ = [
    "LOADERS", "MODELS", "ModelHandle", "blocks", "check_model_name", "family_of", "load_model", "load_skeleton",
    "model_names", "prunable_linears", "register_loader",
]
