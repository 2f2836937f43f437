"""WINA and TEAL activation sparsity: the keep-mask by hand on a 2x3 layer, the hooks (removed even
after an error), the measured sparsity on digits-mlp, and the job through run_prune."""

import json

import pytest
import torch
from torch import nn

from sparsity_core.jobs.context import RunContext
from sparsity_core.pruning.activation import (
    ACTIVATION_METHODS,
    VARIANTS,
    column_norms,
    input_groups,
    keep_mask,
    kept_count,
    sparsify_inputs,
    stacked_norms,
)
from sparsity_core.pruning.evaluate import make_evaluator
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import SpecError, parse_spec
from sparsity_core.zoo import load_model, prunable_linears

WINA, TEAL = ACTIVATION_METHODS["wina"], ACTIVATION_METHODS["teal"]


def two_by_three() -> nn.Linear:
    """W = [[1, 0, 0], [0, 3, 2]]: column norms 1, 3, 2."""
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 2.0]]))
    return layer


def test_wina_on_a_two_by_three_layer_keeps_what_the_hand_computation_says():
    layer, x = two_by_three(), torch.tensor([[2.0, 0.9, -1.2]])
    assert column_norms(layer).tolist() == [1.0, 3.0, 2.0]
    # WINA scores |x| * norms = [2, 2.7, 2.4]; TEAL's |x| = [2, 0.9, 1.2]
    assert keep_mask(x, 1 / 3, column_norms(layer)).tolist() == [[False, True, True]]  # keeps 2 of 3
    assert keep_mask(x, 2 / 3, column_norms(layer)).tolist() == [[False, True, False]]  # keeps 1
    assert keep_mask(x, 1 / 3).tolist() == [[True, False, True]]
    assert keep_mask(x, 2 / 3).tolist() == [[True, False, False]]
    # through the hooks: WINA feeds [0, 0.9, -1.2], so y = [0, 3*0.9 - 2*1.2] = [0, 0.3]
    with sparsify_inputs({"l": layer}, WINA, 1 / 3):
        assert torch.allclose(layer(x), torch.tensor([[0.0, 0.3]]))
    with sparsify_inputs({"l": layer}, TEAL, 1 / 3):  # [2, 0, -1.2]: y = [2, -2.4]
        assert torch.allclose(layer(x), torch.tensor([[2.0, -2.4]]))
    assert torch.allclose(layer(x), torch.tensor([[2.0, 0.3]]))  # hooks gone: dense again, 2.7 - 2.4


class ToyAttention(nn.Module):
    """q, k, v read the same x: Wq = [[3, 0, 0]], Wk = [[0, 4, 0]], Wv = [[0, 3, 2]]."""

    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(3, 1, bias=False) for _ in range(3))
        with torch.no_grad():
            for layer, row in zip((self.q_proj, self.k_proj, self.v_proj), ([3.0, 0, 0], [0, 4.0, 0], [0, 3.0, 2.0])):
                layer.weight.copy_(torch.tensor([row]))

    def forward(self, x):
        return torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], -1)

    def linears(self) -> dict:
        return {f"attn.{n}": getattr(self, n) for n in ("q_proj", "k_proj", "v_proj")}


def test_shared_input_masks_by_hand_on_a_toy_q_k_v():
    attn, x = ToyAttention(), torch.tensor([[1.0, 0.7, 2.0]])
    linears = attn.linears()
    assert input_groups([*linears, "attn.o_proj"])["attn.k_proj"] == tuple(linears)
    assert input_groups([*linears, "attn.o_proj"])["attn.o_proj"] == ("attn.o_proj",)
    # ||[Wq; Wk; Wv][:, i]|| = [3, sqrt(16 + 9), 2] = [3, 5, 2]; scores |x| * that = [3, 3.5, 4]
    assert stacked_norms([m.weight for m in linears.values()]).tolist() == [3.0, 5.0, 2.0]
    # keep 2 of 3: elements 2 and 1, the same for q, k and v: x becomes [0, 0.7, 2]
    with sparsify_inputs(linears, VARIANTS["wina-stacked"], 1 / 3) as counts:
        assert torch.allclose(attn(x), torch.tensor([[0.0, 4 * 0.7, 3 * 0.7 + 2 * 2]]))
    assert counts.per_layer() == dict.fromkeys(linears, 1 / 3)  # one mask, computed by q, reused by k and v
    with sparsify_inputs(linears, TEAL, 1 / 3):  # |x| keeps elements 2 and 0: [1, 0, 2]
        assert torch.allclose(attn(x), torch.tensor([[3.0, 0.0, 4.0]]))
    # the lab's wina, as the authors' release: only k weighs |x| by its norms [0, 4, 0] (scores [0, 2.8, 0]:
    # element 1 kept, k = 2.8); q and v keep TEAL's [1, 0, 2]: q = 3, v = 4
    with sparsify_inputs(linears, WINA, 1 / 3) as counts:
        assert torch.allclose(attn(x), torch.tensor([[3.0, 2.8, 4.0]]))
    assert counts.per_layer() == dict.fromkeys(linears, 1 / 3)
    # each layer its own norms (the old reading): three masks; each layer keeps the elements its row
    # reads (q: 0, k: 1, v: 1 and 2), so every output stays dense: [3, 2.8, 6.1]
    with sparsify_inputs(linears, VARIANTS["wina-own"], 1 / 3):
        assert torch.allclose(attn(x), torch.tensor([[3.0, 2.8, 6.1]]))


def test_the_svd_rotation_drops_what_k_cannot_see():
    """Wk = [[1, 1]]: V = [[1, 1], [1, -1]] / sqrt(2) (signs aside), rotated k norms [sqrt(2), 0].
    x = [2, 1] -> z = [3, +-1] / sqrt(2); keeping one coordinate keeps z_1, so x becomes [1.5, 1.5]
    and k(x) = 3 exactly, where TEAL keeps x_0 = 2 and k gives 2."""
    k = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        k.weight.copy_(torch.tensor([[1.0, 1.0]]))
    x, linears = torch.tensor([[2.0, 1.0]]), {"attn.k_proj": k}
    with sparsify_inputs(linears, VARIANTS["wina-svd"], 0.5):
        assert torch.allclose(k(x), torch.tensor([[3.0]]), atol=1e-6)
    with sparsify_inputs(linears, TEAL, 0.5):
        assert torch.allclose(k(x), torch.tensor([[2.0]]))
    with sparsify_inputs(linears, VARIANTS["teal-svd"], 0.0):  # nothing skipped: the rotation is undone exactly
        assert torch.allclose(k(x), torch.tensor([[3.0]]), atol=1e-6)


def test_teal_keeps_the_largest_magnitudes_per_token():
    x = torch.tensor([[-3.0, 1.0, 2.0, -0.5], [0.1, -0.2, 0.3, 4.0]])
    assert keep_mask(x, 0.5).tolist() == [[True, False, True, False], [False, False, True, True]]
    assert keep_mask(x, 0.0).all() and keep_mask(x, 0.99).sum(-1).tolist() == [1, 1]  # at least one kept
    assert [kept_count(64, s) for s in (0, 0.25, 0.5, 0.65, 0.9)] == [64, 48, 32, 22, 6]


def test_hooks_are_removed_after_an_exception():
    handle = load_model("digits-mlp")
    linears = prunable_linears(handle)
    with pytest.raises(RuntimeError, match="boom"):
        with sparsify_inputs(linears, WINA, 0.5):
            assert all(len(m._forward_pre_hooks) == 1 for m in linears.values())
            raise RuntimeError("boom")
    assert all(len(m._forward_pre_hooks) == 0 for m in handle.model.modules())


def test_measured_activation_sparsity_equals_the_target_on_digits_mlp():
    handle = load_model("digits-mlp")
    linears = prunable_linears(handle)  # inputs of width 64 and 256: a quarter is a whole number of both
    images = torch.rand(32, 64) * 16
    for method in (WINA, TEAL):
        for target in (0.25, 0.5, 0.75):
            with torch.no_grad(), sparsify_inputs(linears, method, target) as counts:
                handle.model(images)
            assert counts.sparsity() == target
            assert counts.per_layer() == {name: target for name in linears}
            assert counts.zero_share() >= target  # skipped elements are zero, ReLU adds its own


@pytest.fixture(scope="module")
def wina_run():
    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "method": "wina", "sparsities": [0, 0.25, 0.5, 0.75]})
    ctx = RunContext()
    run_prune(spec, ctx)
    return spec, ctx


def test_a_wina_run_records_quality_and_measured_sparsity_per_target(wina_run):
    spec, ctx = wina_run
    assert ctx.values("activation_sparsity") == {0.0: 0.0, 0.25: 0.25, 0.5: 0.5, 0.75: 0.75}
    acc = ctx.values("accuracy")
    assert set(acc) == {0.0, 0.25, 0.5, 0.75} and acc[0.75] < acc[0.0]
    assert ctx.values("layer_activation_sparsity", "body.0")[0.5] == 0.5
    zeros = ctx.values("layer_activation_zeros", "body.2")  # the input after a ReLU: zeros of its own
    assert zeros[0.0] > 0 and all(zeros[t] >= t for t in zeros)  # what the method skips is zero too
    assert {"activation@0", "activation@0.5", "activation@0.75", "views"} <= set(ctx.artifacts)
    assert not any(name.startswith(("masks@", "pruned@")) for name in ctx.artifacts)  # no weight was pruned
    stored = json.loads(ctx.artifacts["activation@0.5"][0].read_text())
    assert stored["method"] == "wina" and stored["measured"] == 0.5
    assert ctx.facts["activation"]["selection"].startswith("per-token top-k") and ctx.message == "done"
    assert ctx.as_parent(1, spec).targets("activation") == [0.0, 0.25, 0.5, 0.75]


def test_activation_sparsity_zero_is_the_dense_model_exactly(wina_run):
    _, ctx = wina_run
    handle = load_model("digits-mlp")
    assert ctx.values("accuracy")[0.0] == make_evaluator(handle, 0)(handle)["accuracy"]


def test_activation_methods_refuse_patterns_scopes_and_training_by_field():
    base = {"kind": "prune", "model": "digits-mlp", "method": "teal", "sparsities": [0, 0.5]}
    assert parse_spec({**base, "method": "wina", "sparsities": [0, 0.25, 0.5, 0.65]}).sparsities == [0, 0.25, 0.5, 0.65]
    cases = [({"pattern": "2:4"}, "pattern", "unstructured"), ({"scope": "global"}, "scope", "scope layer"),
             ({"schedule": "gradual", "recovery": "finetune"}, "schedule", "oneshot"),
             ({"recovery": "distill"}, "recovery", "recovery none")]
    for extra, field, words in cases:
        with pytest.raises(SpecError) as err:
            parse_spec({**base, **extra})
        assert words in err.value.errors[field], (extra, err.value.errors)


def test_a_causal_lm_run_records_perplexity_and_generations(tiny_llama_checkpoint, monkeypatch):
    """A 2-layer Llama (hidden 32, random weights) with minilm's tokenizer: the causal-LM path."""
    from sparsity_core.pruning.evaluate import Perplexity

    tmp_path = tiny_llama_checkpoint
    monkeypatch.setattr(Perplexity, "CONTEXT", 64)  # a 30k-vocab head stays cheap
    spec = parse_spec({"kind": "prune", "model": f"hf:{tmp_path}", "method": "teal", "sparsities": [0, 0.5],
                       "eval_samples": 16})
    ctx = RunContext()
    run_prune(spec, ctx)
    handle = load_model(f"hf:{tmp_path}")
    assert ctx.values("perplexity")[0.0] == Perplexity(handle, 0, 16)(handle)["perplexity"]  # 0: dense exactly
    assert ctx.values("activation_sparsity") == {0.0: 0.0, 0.5: 0.5}  # widths 32 and 64 halve exactly
    assert len(ctx.values("layer_activation_sparsity", "model.layers.1.mlp.down_proj")) == 2
    views = json.loads(ctx.artifacts["views"][0].read_text())
    assert set(views["generation"]["pruned"]) == {"0", "0.5"}
    assert views["generation"]["pruned"]["0"] == views["generation"]["dense"]
