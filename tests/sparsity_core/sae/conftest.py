"""Tiny transformer checkpoints (BERT encoder, Llama causal LM) with MiniLM's real tokenizer, so
the SAE lab's full path runs in seconds through the `hf:` loader."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    from sparsity_core.zoo.minilm import model_dir

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir())
    root = tmp_path_factory.mktemp("tiny-models")
    bert = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=256))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                                         max_position_embeddings=256))
    out = {}
    for name, model in (("bert", bert), ("llama", llama)):
        folder = root / name
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        out[name] = f"hf:{folder}"
    return out



@pytest.fixture
def identity_sae():
    """A factory: an SAE of variant `name` with W_enc = W_dec = identity and zero biases, so its
    pre-activations equal the input and every selection can be read off x by hand."""
    import torch

    from sparsity_core.sae import VARIANTS

    def make(name: str, d: int = 4, k: int = 2, **kwargs):
        sae = VARIANTS[name](d, d, k=k, **kwargs)
        with torch.no_grad():
            sae.W_enc.copy_(torch.eye(d))
            sae.W_dec.copy_(torch.eye(d))
            sae.b_enc.zero_()
            sae.b_dec.zero_()
        return sae
    return make
