"""The pruning job end to end on small models: digits-mlp and a tiny random Llama checkpoint
(saved with save_pretrained into tmp_path), the artifacts that load back, and bad input refused
before anything is queued."""

import json

import pytest
import torch

from db import repo
from sparsity_core.jobs import submit
from sparsity_core.jobs.store_progress import StoreProgress
from sparsity_core.progress import Progress
from sparsity_core.pruning.artifacts import load_pruned
from sparsity_core.pruning.evaluate import Perplexity
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import SpecError, parse_spec
from sparsity_core.zoo import load_model, prunable_linears
from sparsity_core.zoo.minilm import model_dir


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
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


def test_digits_wanda_two_four_end_to_end():
    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "method": "wanda", "pattern": "2:4",
                       "sparsities": [0, 0.5], "calibration_samples": 128})
    progress = Progress()
    run_prune(spec, progress)
    sparsity, acc = progress.values("sparsity"), progress.values("accuracy")
    assert sparsity[0.0] == 0 and sparsity[0.5] == pytest.approx(0.5)
    assert acc[0.0] > 0.9 and acc[0.5] > 0.8  # a 2:4 Wanda MLP keeps most of its accuracy
    assert progress.values("bytes_2to4")[0.5] < progress.values("bytes_dense")[0.5]
    views = json.loads(progress.artifacts["views"][0].read_text())
    crop = torch.tensor(views["masks"]["0.5"])
    assert (crop.reshape(crop.shape[0], -1, 4).sum(-1) == 2).all()  # the 2:4 pattern, visible
    assert {"masks@0.5", "pruned@0.5", "model"} <= set(progress.artifacts)


def test_tiny_llama_sparsegpt_perplexity_generation_and_load_back(tiny_llama, monkeypatch):
    monkeypatch.setattr(Perplexity, "CONTEXT", 64)  # 16 windows of 64 tokens: a 30k-vocab head stays cheap
    spec = {"kind": "prune", "model": f"hf:{tiny_llama}", "method": "sparsegpt", "pattern": "4:8",
            "sparsities": [0, 0.5], "calibration_samples": 8, "seq_len": 64, "eval_samples": 16}
    run_id = submit(spec, status="running")
    run_prune(parse_spec(spec), StoreProgress(run_id))
    repo.finish_run(run_id, "succeeded")
    frame = repo.metrics_frame([run_id])
    ppl = frame[frame.key == "perplexity"].set_index("x")["value"]
    assert ppl[0.0] > 1 and ppl[0.5] > 1
    info = repo.get_run(run_id).info
    assert info["evaluation"]["context_length"] == 64 and info["calibration"]["seq_len"] == 64
    views = json.loads(repo.artifact_path(run_id, "views").read_text())
    assert set(views["generation"]["pruned"]) == {"0", "0.5"}
    # the pruned model loads back with exactly the stored zeros, and the save_pretrained folder too
    handle = load_pruned(run_id, 0.5)
    weights = [m.weight for m in prunable_linears(handle).values()]
    assert sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights) == pytest.approx(0.5)
    again = load_model(f"hf:{repo.artifact_path(run_id, 'model')}")
    assert torch.equal(prunable_linears(again)["model.layers.0.mlp.down_proj"].weight,
                       prunable_linears(handle)["model.layers.0.mlp.down_proj"].weight)


def test_bad_input_is_refused_before_queueing(tiny_llama):
    cases = [
        ({"model": "digits-mlp", "pattern": "2:4", "sparsities": [0.3]}, "are below it"),
        ({"model": "digits-mlp", "pattern": "block:3x3", "sparsities": [0.5]}, "does not tile"),
        ({"model": "digits-mlp", "method": "sparsegpt", "scope": "global", "sparsities": [0.5]}, "global"),
        ({"model": "digits-mlp", "method": "dsnot", "params": {"iterations": 3, "x": 1}, "sparsities": [0.5]},
         "no parameter"),
        ({"model": "digits-mlp", "method": "wanda", "calibration_samples": 4000, "sparsities": [0.5]},
         "calibration split has only"),
        ({"model": f"hf:{tiny_llama}", "method": "wanda", "seq_len": 4096, "calibration_samples": 4000,
          "sparsities": [0.5]}, "windows of 4096 tokens"),
    ]
    for fields, message in cases:
        with pytest.raises(SpecError) as exc:
            submit({"kind": "prune", **fields})
        assert message in str(exc.value), (fields, exc.value.errors)
    assert repo.list_runs() == []  # nothing was queued
