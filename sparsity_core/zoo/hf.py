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


def load_hf(ref: str, **kwargs) -> ModelHandle:
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    local = Path(ref).expanduser()
    source = str(local) if local.exists() else ref
    config = AutoConfig.from_pretrained(source)
    arch = " ".join(config.architectures or [])
    if "ForCausalLM" in arch:
        task, auto = "causal_lm", AutoModelForCausalLM
    elif "ForSequenceClassification" in arch:
        task, auto = "classifier", AutoModelForSequenceClassification
    else:
        task, auto = "encoder", AutoModel
    model = auto.from_pretrained(source, **kwargs)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
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
