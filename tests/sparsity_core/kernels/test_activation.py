"""The kernel lab on a WINA parent: the gathered GEMV by hand, the parent rule for activation runs,
and the batch-1 job on digits-mlp (chained without a store)."""

import pandas as pd
import pytest
import torch

from sparsity_core.jobs.context import ParentRun, RunContext
from sparsity_core.kernels.activation import gathered_gemv, last_token_inputs
from sparsity_core.kernels.checks import activation_parent, preflight_kernel
from sparsity_core.kernels.native import gather_gemv_unavailable
from sparsity_core.kernels.run import run_kernel
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import SpecError, parse_spec
from sparsity_core.zoo import load_model

KERNEL = {"kind": "kernel", "model": "digits-mlp", "shapes": [], "parent_run": 5, "repeats": 3, "warmup": 1}


def test_gathered_gemv_adds_up_only_the_kept_columns():
    w = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # W (out 2, in 3)
    x = torch.tensor([10.0, 20.0, 30.0])
    idx = torch.tensor([0, 2])  # keep x0 and x2: y = 10 * [1, 4] + 30 * [3, 6] = [100, 220]
    assert gathered_gemv(w.t().contiguous(), idx, x[idx]).tolist() == [100.0, 220.0]


@pytest.fixture(scope="module")
def wina_parent():
    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "method": "wina", "sparsities": [0, 0.5, 0.75]})
    ctx = RunContext()
    run_prune(spec, ctx)
    return ctx.as_parent(5, spec)


def test_an_activation_run_is_a_parent_by_its_own_targets(wina_parent):
    assert activation_parent(wina_parent)
    preflight_kernel(parse_spec(KERNEL), wina_parent)  # no pruned@ weights, and that is fine
    empty = ParentRun(id=5, kind="prune", model="digits-mlp", status="succeeded", method="teal",
                      spec={"method": "teal"})
    with pytest.raises(SpecError) as err:
        preflight_kernel(parse_spec(KERNEL), empty)
    assert "stored no targets" in err.value.errors["parent_run"]
    with pytest.raises(SpecError) as err:
        preflight_kernel(parse_spec({**KERNEL, "model": "minilm-l6"}), wina_parent)
    assert "use that model" in err.value.errors["parent_run"]


def test_last_token_inputs_are_what_each_layer_sees():
    handle = load_model("digits-mlp")
    seen = last_token_inputs(handle)
    assert {n: x.shape[0] for n, x in seen.items()} == {"body.0": 64, "body.2": 256}
    assert (seen["body.2"] >= 0).all()  # after a ReLU


def test_kernel_run_on_a_wina_parent_times_dense_and_gathered_gemvs(wina_parent):
    ctx = RunContext(parents=[wina_parent])
    run_kernel(parse_spec(KERNEL), ctx)
    native = gather_gemv_unavailable() is None  # CI has a C compiler: the lab's kernel is timed too
    for call in ("dense", "gathered", "topk+gathered", *(("gathered_c",) if native else ())):
        totals = ctx.values("latency_ms", f"gemv:{call}")
        assert set(totals) == {0.0, 0.5, 0.75} and all(v > 0 for v in totals.values())
        assert set(ctx.values("layer_latency_ms", f"{call}|body.2")) == {0.0, 0.5, 0.75}
    assert max(ctx.values("rel_error", "gemv:gathered").values()) < 1e-5  # the kept columns give W @ x_kept
    rows = pd.read_parquet(ctx.artifacts["gemv"][0])
    kept = rows.set_index(["target", "layer"])["kept"]
    assert kept[(0.5, "body.0")] == 32 and kept[(0.75, "body.2")] == 64 and kept[(0.0, "body.2")] == 256
    assert ctx.facts["activation"]["method"] == "wina" and ctx.message == "done"
    assert ctx.facts["activation"]["gathered_c"] == ("the lab's C kernel (kernels/native/gather_gemv.c) over W^T"
                                                     if native else gather_gemv_unavailable())


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    from sparsity_core.zoo import ModelHandle

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return ModelHandle("tiny-llama", LlamaForCausalLM(config).eval(), "causal_lm", "llama")


@pytest.mark.parametrize("method", ["wina", "teal"])
def test_each_layer_is_timed_with_the_parents_kept_set_and_a_shared_selection_is_paid_once(method):
    from sparsity_core.kernels.activation import time_layers
    from sparsity_core.pruning.activation import ACTIVATION_METHODS
    from sparsity_core.zoo import prunable_linears

    handle = _tiny_llama()
    layers = prunable_linears(handle)
    gen = torch.Generator().manual_seed(1)
    block_in, mlp_in = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
    inputs = {n: block_in if n.rpartition(".")[2] in ("q_proj", "k_proj", "v_proj") else
              mlp_in if n.rpartition(".")[2] in ("gate_proj", "up_proj") else torch.randn(layer.in_features, generator=gen)
              for n, layer in layers.items()}
    rows = {r["layer"].rpartition(".")[2]: r for r in time_layers(handle, inputs, ACTIVATION_METHODS[method], [0.75],
                                                                  torch.device("cpu"), warmup=0, repeats=1)}
    # WINA (the release): k and gate weigh |x_i| by their columns' norms and select on their own;
    # q / v (up) share the magnitude set. TEAL: q / k / v share one set, gate / up another.
    owners = {"wina": {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "q_proj", "o_proj": "o_proj",
                       "gate_proj": "gate_proj", "up_proj": "up_proj", "down_proj": "down_proj"},
              "teal": {"q_proj": "q_proj", "k_proj": "q_proj", "v_proj": "q_proj", "o_proj": "o_proj",
                       "gate_proj": "gate_proj", "up_proj": "gate_proj", "down_proj": "down_proj"}}[method]
    assert {leaf: r["mask_of"].rpartition(".")[2] for leaf, r in rows.items()} == owners
    assert {leaf for leaf, r in rows.items() if r["selects"]} == set(owners.values())
    assert {leaf: r["kept"] for leaf, r in rows.items()} == {**dict.fromkeys(owners, 4), "down_proj": 8}  # a quarter kept
    assert all(r["rel_error"] < 1e-5 for r in rows.values())
