"""Structured pruning: removing heads/neurons equals masking them, and the model really shrinks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsity_core import catalog
from sparsity_core.pruning.checks import UNIT_FAMILIES, unit_problem
from sparsity_core.pruning.structured import (
    FINDERS,
    UNIT_SCORES,
    apply_plan,
    choose_units,
    mask_units,
    prune_structured,
    remove_units,
    unit_groups,
    unit_scores,
)
from sparsity_core.zoo import ModelHandle


def tiny_bert() -> ModelHandle:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")
    return ModelHandle("tiny-bert", BertModel(cfg).eval(), "encoder", "bert")


def tiny_llama() -> ModelHandle:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=32,
                      attn_implementation="eager")
    return ModelHandle("tiny-llama", LlamaForCausalLM(cfg).eval(), "causal_lm", "llama")


def outputs(handle: ModelHandle) -> torch.Tensor:
    ids = torch.arange(1, 25).view(2, 12) % 100
    with torch.no_grad():
        out = handle.model(input_ids=ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def n_params(handle: ModelHandle) -> int:
    return sum(p.numel() for p in handle.model.parameters())


@pytest.mark.parametrize("make", [tiny_bert, tiny_llama], ids=["bert", "llama"])
@pytest.mark.parametrize("pattern", ["heads", "neurons"])
def test_removing_units_equals_masking_them(make, pattern):
    handle = make()
    groups = unit_groups(handle, pattern)
    keep = choose_units({g.name: unit_scores(g) for g in groups}, 0.5)
    removal = remove_units(groups, keep)
    removed = outputs(handle)
    removal.restore()
    mask_units(unit_groups(handle, pattern), keep)
    masked = outputs(handle)
    assert torch.allclose(removed, masked, atol=1e-5)


def test_bert_head_removal_drops_the_expected_parameter_count():
    handle = tiny_bert()
    before = n_params(handle)
    removal = prune_structured(handle, 0.5, "heads")
    # head size 8, hidden 32: q, k, v lose 3 x (8 x 32 weights + 8 biases), the output dense 32 x 8
    per_head = 3 * (8 * 32 + 8) + 32 * 8
    assert before - n_params(handle) == 2 * 2 * per_head  # 2 of 4 heads in each of 2 layers
    assert removal.unit_sparsity == pytest.approx(0.5)
    assert handle.model.encoder.layer[0].attention.self.query.out_features == 16


def test_llama_heads_go_by_key_value_group():
    handle = tiny_llama()
    prune_structured(handle, 0.5, "heads")
    att = handle.model.model.layers[0].self_attn
    # 4 query heads share 2 kv heads: one group (2 query heads + 1 kv head) of head_dim 8 is left
    assert (att.q_proj.out_features, att.k_proj.out_features, att.o_proj.in_features) == (16, 8, 16)


def test_restore_gives_back_the_dense_model():
    handle = tiny_llama()
    dense = outputs(handle)
    removal = prune_structured(handle, 0.5, "neurons")
    assert not torch.allclose(outputs(handle), dense)
    removal.restore()
    assert torch.equal(outputs(handle), dense)


def test_lowest_scores_go_and_every_layer_keeps_one_unit():
    scores = {"a": torch.tensor([3.0, 1.0, 2.0, 0.0]), "b": torch.tensor([0.5, 0.1])}
    assert choose_units(scores, 0.5)["a"].tolist() == [0, 2]
    # global: the 3 lowest of all six are 0.0, 0.1 and 0.5, but b must keep one, so 1.0 goes
    kept = choose_units(scores, 0.5, scope="global")
    assert kept["a"].tolist() == [0, 2] and kept["b"].tolist() == [0]


def test_head_score_is_the_l2_norm_of_the_output_projection_slice():
    handle = tiny_bert()
    group = unit_groups(handle, "heads")[0]
    w = handle.model.encoder.layer[0].attention.output.dense.weight.detach()
    assert unit_scores(group)[1] == pytest.approx(float(w[:, 8:16].norm()), rel=1e-5)


def test_saved_plan_and_weights_load_back(tmp_path):
    from safetensors.torch import load_file, save_file

    handle = tiny_bert()
    removal = prune_structured(handle, 0.25, "neurons")
    save_file(handle.model.state_dict(), tmp_path / "model.safetensors")
    expected = outputs(handle)
    fresh = tiny_bert()
    apply_plan(fresh, "neurons", removal.kept)
    fresh.model.load_state_dict(load_file(tmp_path / "model.safetensors"))
    assert torch.allclose(outputs(fresh), expected, atol=1e-6)


def test_mlp_neurons_shrink_the_next_layer_too():
    body = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU())
    model = nn.Module()
    model.body, model.head = body, nn.Linear(5, 3)
    handle = ModelHandle("mlp", model, "classifier", "mlp")
    prune_structured(handle, 0.5, "neurons")
    # 6 hidden units -> 3; 5 -> 3 (round(2.5) is 2 in Python: two go); the next layer shrinks with each
    assert (body[0].out_features, body[2].in_features, body[2].out_features, model.head.in_features) == (3, 3, 3, 3)


def test_heads_on_a_model_without_attention_is_refused():
    assert "no attention heads" in unit_problem("digits-mlp", catalog.MODELS["digits-mlp"].family, "heads")
    with pytest.raises(ValueError, match="no attention heads"):
        unit_groups(ModelHandle("mlp", nn.Sequential(nn.Linear(4, 4)), "classifier", "mlp"), "heads")


def test_the_torch_free_tables_name_what_is_implemented():
    """checks.py answers in the app what structured.py can do: the two never drift apart."""
    assert set(FINDERS) == {(family, unit) for unit, families in UNIT_FAMILIES.items() for family in families}
    assert set(UNIT_SCORES) == {name for name, entry in catalog.METHODS.items() if entry.structured}
