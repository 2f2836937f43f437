"""Shared fixtures of the pruning tests."""

import pytest
import torch

from sparsity_core.zoo.minilm import model_dir


@pytest.fixture(scope="session")
def tiny_llama_checkpoint(tmp_path_factory):
    """A 2-layer Llama (hidden 32) with minilm's BERT tokenizer: real code paths, random weights."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(model_dir())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
