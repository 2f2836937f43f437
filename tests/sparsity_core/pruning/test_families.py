"""Calibrated pruning through the family adapters on tiny random GPT-2 (Conv1D, stored in x out)
and OPT checkpoints saved with save_pretrained: patterns follow each layer's input dimension."""

import pytest
import torch

from sparsity_core.pruning import METHODS
from sparsity_core.pruning.base import weight_2d
from sparsity_core.pruning.calibrate import collect_stats
from sparsity_core.zoo import load_model, prunable_linears


def _tiny(kind, folder):
    from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    else:
        model = OPTForCausalLM(OPTConfig(vocab_size=96, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                         num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32))
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind,n_linears", [("gpt2", 8), ("opt", 12)])
def test_sparsegpt_two_four_on_family(kind, n_linears, tmp_path):
    handle = load_model(f"hf:{_tiny(kind, tmp_path / kind)}")
    assert handle.family == kind and handle.task == "causal_lm"
    linears = prunable_linears(handle)
    assert len(linears) == n_linears  # gpt2: c_attn, c_proj, c_fc, mlp.c_proj; opt: q, k, v, out, fc1, fc2
    ids = torch.randint(0, 96, (4, 32), generator=torch.Generator().manual_seed(0))
    stats = collect_stats(handle.model, linears, [{"input_ids": ids}], need={"norm", "hessian"})
    masks = METHODS["sparsegpt"]().prune(linears, 0.5, pattern="2:4", stats=stats)
    for name, layer in linears.items():
        w = weight_2d(layer)  # (out, in) whatever the storage
        assert ((w != 0).reshape(w.shape[0], -1, 4).sum(-1) <= 2).all(), name
        assert masks[name].shape == layer.weight.shape  # masks in the layer's own layout
    with torch.no_grad():
        assert torch.isfinite(handle.model(input_ids=ids).logits).all()
