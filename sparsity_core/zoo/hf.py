"""`hf:<hub-id-or-local-path>`: any transformers checkpoint through the Auto classes.

The architecture named in config.json decides the task: *ForCausalLM -> causal_lm,
*ForSequenceClassification -> classifier, anything else -> encoder (mean-pooled embeddings).
Hub ids work for users who are online; offline, a local directory does.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from sparsity_core.zoo.adapters import family_of
from sparsity_core.zoo.minilm import mean_pooled_embeddings
from sparsity_core.zoo.registry import ModelHandle


def _resolve(ref: str, **config_kwargs):
    """(source, config, task, Auto class) for a hub id or a local folder."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    local = Path(ref).expanduser()
    source = str(local) if local.exists() else ref
    config = AutoConfig.from_pretrained(source, **config_kwargs)
    arch = " ".join(config.architectures or [])
    if "ForCausalLM" in arch or "LMHeadModel" in arch:  # GPT2LMHeadModel names itself the old way
        return source, config, "causal_lm", AutoModelForCausalLM
    if "ForSequenceClassification" in arch:
        return source, config, "classifier", AutoModelForSequenceClassification
    return source, config, "encoder", AutoModel


def load_hf(ref: str, **kwargs) -> ModelHandle:
    source, config, task, auto = _resolve(ref)
    model = auto.from_pretrained(source, **kwargs)
    return _wrap(ref, source, config, task, model)


def skeleton_hf(ref: str, **config_kwargs) -> ModelHandle:
    """Structure only: the config's model built on the meta device (no weights read)."""
    import torch

    source, config, task, auto = _resolve(ref, **config_kwargs)
    with torch.device("meta"):
        model = auto.from_config(config)
    return _wrap(ref, source, config, task, model, **config_kwargs)


def _wrap(ref: str, source: str, config, task: str, model, **tokenizer_kwargs) -> ModelHandle:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **tokenizer_kwargs)
    except (OSError, ValueError):  # a bare checkpoint (weights + config) still loads
        tokenizer = None
    classes = ()
    if task == "classifier":
        id2label = getattr(config, "id2label", None) or {}
        classes = tuple(str(id2label.get(i, i)) for i in range(config.num_labels))
    handle = ModelHandle(f"hf:{ref}", model, task, family_of(model), tokenizer=tokenizer,
                         classes=classes, meta={"source": source, "architectures": config.architectures})
    if task == "encoder" and tokenizer is not None:
        handle.embed = partial(mean_pooled_embeddings, model, tokenizer)
    return handle
