"""Shared fixtures of the pruning tests."""

import pytest
import torch

from sparsity_core.pruning import record
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


@pytest.fixture
def evaluated_states(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """The model's state at every evaluation of a run, in order (the dense reference first), filled
    in as the run evaluates: the evaluator is wrapped, not replaced."""
    states, real = [], record.make_evaluator

    def spying(handle, seed, limit=None):
        evaluator = real(handle, seed, limit)

        class Spy:
            describe = evaluator.describe

            def __call__(self, h):
                states.append({k: v.detach().clone() for k, v in h.model.state_dict().items()})
                return evaluator(h)

        return Spy()

    monkeypatch.setattr(record, "make_evaluator", spying)
    return states
