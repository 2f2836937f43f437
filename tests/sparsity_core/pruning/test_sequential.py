"""Sequential (block-by-block) calibration, pruning/calibrate.block_by_block, on tiny random BERT
and Llama models built from transformers configs, and on digits-mlp (layer by layer): block 0's
statistics equal the one-pass ones, later blocks' differ once earlier blocks are pruned (and equal
them when nothing is pruned), one block's statistics at a time, no hook left behind; and the run."""

import pytest
import torch

from sparsity_core.jobs.context import RunContext
from sparsity_core.pruning import METHODS
from sparsity_core.pruning.calibrate import block_by_block, block_groups, collect_stats
from sparsity_core.pruning.evaluate import Perplexity
from sparsity_core.pruning.run import dense_copy, run_prune
from sparsity_core.specs import parse_spec
from sparsity_core.zoo import ModelHandle, blocks, load_model, prunable_linears


def tiny_bert() -> ModelHandle:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    return ModelHandle("tiny-bert", BertModel(config).eval(), "encoder", "bert")


def tiny_llama() -> ModelHandle:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return ModelHandle("tiny-llama", LlamaForCausalLM(config).eval(), "causal_lm", "llama")


def _batches(seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    ids = [torch.randint(0, 64, (3, 12), generator=gen) for _ in range(2)]
    masks = [torch.ones(3, 12, dtype=torch.long) for _ in ids]
    masks[1][0, 8:] = 0  # one padded row: its last 4 tokens are left out of the statistics
    return [{"input_ids": i, "attention_mask": m} for i, m in zip(ids, masks)]


def _sequential_stats(handle, batches, prune: bool) -> list[dict]:
    seen = []

    def visit(_i, group, stats):
        seen.append({n: {k: v.clone() for k, v in s.items()} for n, s in stats.items()})
        if prune:
            METHODS["magnitude"]().prune(group, 0.5)

    block_by_block(handle, batches, {"norm", "hessian"}, visit)
    return seen


@pytest.mark.parametrize("make", [tiny_bert, tiny_llama], ids=["bert", "llama"])
def test_first_block_equal_to_one_pass_later_blocks_differ_after_pruning(make):
    handle = make()
    batches = _batches()
    one_pass = collect_stats(handle.model, prunable_linears(handle), batches, {"norm", "hessian"})
    dense = dense_copy(prunable_linears(handle))
    pruned = _sequential_stats(handle, batches, prune=True)
    handle.model.load_state_dict(dense, strict=False)
    unpruned = _sequential_stats(handle, batches, prune=False)
    assert [set(s) for s in pruned] == [set(g) for g in block_groups(handle)]  # one block's stats per visit
    for name, stats in pruned[0].items():  # block 0: the same inputs either way
        assert torch.allclose(stats["sq_sum"], one_pass[name]["sq_sum"], rtol=1e-5), name
        assert torch.allclose(stats["hessian"], one_pass[name]["hessian"], rtol=1e-5, atol=1e-7), name
        assert int(stats["count"]) == 3 * 12 + 3 * 12 - 4  # padding left out
    for name, stats in pruned[1].items():  # block 1 reads block 0's pruned outputs
        assert not torch.allclose(stats["sq_sum"], one_pass[name]["sq_sum"], rtol=1e-3), name
    for name, stats in unpruned[1].items():  # ... and with nothing pruned, the one-pass statistics
        assert torch.allclose(stats["sq_sum"], one_pass[name]["sq_sum"], rtol=1e-4), name


def test_digits_mlp_goes_layer_by_layer():
    handle = load_model("digits-mlp")
    assert blocks(handle) == [] and [list(g) for g in block_groups(handle)] == [["body.0"], ["body.2"]]
    batches = [torch.rand(32, 8, 8, generator=torch.Generator().manual_seed(0)) * 16]
    one_pass = collect_stats(handle.model, prunable_linears(handle), batches, {"norm"})
    pruned = _sequential_stats(handle, batches, prune=True)
    assert torch.equal(pruned[0]["body.0"]["sq_sum"], one_pass["body.0"]["sq_sum"])  # the image itself
    assert not torch.allclose(pruned[1]["body.2"]["sq_sum"], one_pass["body.2"]["sq_sum"])


def test_hooks_are_removed_after_an_error_in_a_block():
    handle = tiny_llama()

    def boom(i, group, stats):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        block_by_block(handle, _batches(), {"norm"}, boom)
    modules = [*prunable_linears(handle).values(), *blocks(handle)]
    assert not any(m._forward_pre_hooks for m in modules)
    assert handle.model.config.use_cache is True  # restored




@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_a_sequential_run_reaches_its_targets(tiny_llama_checkpoint, monkeypatch, method):
    monkeypatch.setattr(Perplexity, "CONTEXT", 64)
    spec = parse_spec({"kind": "prune", "model": f"hf:{tiny_llama_checkpoint}", "method": method,
                       "sparsities": [0, 0.5, 0.75], "calibration_samples": 8, "seq_len": 32, "eval_samples": 16})
    assert spec.calibration == "sequential"  # the default for a method that calibrates
    ctx = RunContext()
    run_prune(spec, ctx)
    # inputs of 32 and 64: 50% and 75% are whole weights of every row, so exactly reached
    assert ctx.values("sparsity")[0.5] == pytest.approx(0.5) and ctx.values("sparsity")[0.75] == pytest.approx(0.75)
    calibration = ctx.facts["calibration"]
    assert calibration["mode"] == "sequential" and "block by block" in calibration["statistics"]
    assert all(v > 1 for v in ctx.values("perplexity").values())


def test_an_owl_run_records_each_layers_allocated_target(tiny_llama_checkpoint, monkeypatch):
    monkeypatch.setattr(Perplexity, "CONTEXT", 64)
    spec = parse_spec({"kind": "prune", "model": f"hf:{tiny_llama_checkpoint}", "method": "wanda", "allocation": "owl",
                       "owl_lambda": 0.1, "sparsities": [0.6], "calibration_samples": 8, "seq_len": 32,
                       "eval_samples": 16})
    ctx = RunContext()
    run_prune(spec, ctx)
    target = {m["series"]: m["value"] for m in ctx.metrics if m["key"] == "layer_target"}
    reached = {m["series"]: m["value"] for m in ctx.metrics if m["key"] == "layer_sparsity"}
    assert set(target) == set(reached) and len(set(round(v, 6) for v in target.values())) == 2  # one per block
    assert sum(target.values()) / len(target) == pytest.approx(0.6)  # blocks of equal size
    assert max(target.values()) - min(target.values()) == pytest.approx(0.2)  # 2 blocks: target +- lambda
    for name in target:  # Wanda prunes per output row: round(s x in) of every row
        assert reached[name] == pytest.approx(target[name], abs=0.02), name
    assert len(ctx.facts["allocation"]["outlier_ratios"]) == 2


def test_an_old_stored_spec_reads_as_one_pass_and_global_scope_calibrates_in_one_pass():
    stored = {"kind": "prune", "model": "digits-mlp", "method": "wanda", "sparsities": [0.5], "params": {}}
    assert parse_spec(stored, version=2).calibration == "one_pass"  # what it ran
    assert parse_spec(stored, version=1).calibration == "one_pass"
    assert parse_spec(stored).calibration == "sequential"
    assert parse_spec({**stored, "scope": "global"}).calibration == "one_pass"
    with pytest.raises(ValueError, match="use one_pass"):
        parse_spec({**stored, "scope": "global", "calibration": "sequential"})
