"""One adapter per model family: where the transformer blocks are, which Linear layers to prune.

No copied file per model: a family is a few attribute paths. Pruning keeps embeddings and the
output head dense (as Wanda, SparseGPT and most papers do) and prunes the Linear layers inside
the blocks, or for the MLP every hidden Linear.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sparsity_core.zoo.registry import ModelHandle


@dataclass(frozen=True)
class Family:
    name: str
    blocks: tuple[str, ...]  # candidate dotted paths to the ModuleList of blocks
    model_types: tuple[str, ...]  # config.model_type values


FAMILIES = (
    Family("llama", ("model.layers", "layers"), ("llama", "mistral", "qwen2", "qwen3", "smollm3", "gemma", "phi3")),
    Family("gpt2", ("transformer.h", "h"), ("gpt2",)),
    Family("opt", ("model.decoder.layers", "decoder.layers"), ("opt",)),
    Family("bert", ("encoder.layer", "bert.encoder.layer", "roberta.encoder.layer",
                    "distilbert.transformer.layer", "transformer.layer"),
           ("bert", "roberta", "distilbert", "xlm-roberta", "electra", "mpnet")),
)


def family_of(model: nn.Module) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for fam in FAMILIES:
        if model_type in fam.model_types:
            return fam.name
    for fam in FAMILIES:  # unknown model_type: whichever block path exists
        if _find(model, fam.blocks) is not None:
            return fam.name
    return "mlp"


def resolve_path(obj, path: str):
    """`obj.a.b.c` for path "a.b.c", or None where an attribute is missing."""
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _find(model: nn.Module, paths: tuple[str, ...]):
    """The first of `paths` that leads to a ModuleList (the blocks), or None."""
    for path in paths:
        obj = resolve_path(model, path)
        if isinstance(obj, nn.ModuleList):
            return obj
    return None


def blocks(handle: ModelHandle) -> list[nn.Module]:
    """The transformer blocks in order ([] for an MLP)."""
    fam = next((f for f in FAMILIES if f.name == handle.family), None)
    found = _find(handle.model, fam.blocks) if fam else None
    return list(found) if found is not None else []


def block_prefix(handle: ModelHandle) -> str:
    fam = next(f for f in FAMILIES if f.name == handle.family)
    for path in fam.blocks:
        if _find(handle.model, (path,)) is not None:
            return path
    raise ValueError(f"{handle.name}: no blocks found for family {handle.family}")


def prunable_linears(handle: ModelHandle) -> dict[str, nn.Module]:
    """{qualified name: layer} of the Linear (and GPT-2 Conv1D) layers pruning works on."""
    model = handle.model
    if handle.family == "mlp":
        head = getattr(model, "head", None)
        return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head}
    prefix = block_prefix(handle)
    return {n: m for n, m in model.named_modules()
            if n.startswith(prefix + ".") and _is_linear(m)}


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
