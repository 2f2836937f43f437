"""The pruning job end to end on small models: digits-mlp and a tiny random Llama checkpoint
(saved with save_pretrained into tmp_path), the artifacts that load back, and bad input refused
before anything is queued, without torch for a bundled model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsity_core.jobs.context import RunContext
from sparsity_core.pruning.artifacts import load_pruned
from sparsity_core.pruning.checks import preflight_prune
from sparsity_core.pruning.evaluate import Perplexity
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import SpecError, parse_spec
from sparsity_core.zoo import load_model, prunable_linears

ROOT = Path(__file__).resolve().parents[3]




def test_digits_wanda_two_four_end_to_end():
    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "method": "wanda", "pattern": "2:4",
                       "sparsities": [0, 0.5], "calibration_samples": 128})
    ctx = RunContext()
    run_prune(spec, ctx)
    sparsity, acc = ctx.values("sparsity"), ctx.values("accuracy")
    assert sparsity[0.0] == 0 and sparsity[0.5] == pytest.approx(0.5)
    assert acc[0.0] > 0.9 and acc[0.5] > 0.8  # a 2:4 Wanda MLP keeps most of its accuracy
    assert ctx.values("bytes_2to4")[0.5] < ctx.values("bytes_dense")[0.5]
    views = json.loads(ctx.artifacts["views"][0].read_text())
    crop = torch.tensor(views["masks"]["0.5"])
    assert (crop.reshape(crop.shape[0], -1, 4).sum(-1) == 2).all()  # the 2:4 pattern, visible
    assert {"masks@0", "pruned@0", "masks@0.5", "pruned@0.5", "model"} <= set(ctx.artifacts)
    assert ctx.message == "done" and ctx.facts["method_params"] == {}
    # the layout every pruning run shares, read back as a parent
    handle = load_pruned(ctx.as_parent(1, spec))
    assert handle.meta["target_sparsity"] == 0.5 and handle.meta["pattern"] == "2:4"


def test_tiny_llama_sparsegpt_perplexity_generation_and_load_back(tiny_llama_checkpoint, monkeypatch):
    monkeypatch.setattr(Perplexity, "CONTEXT", 64)  # 16 windows of 64 tokens: a 30k-vocab head stays cheap
    spec = parse_spec({"kind": "prune", "model": f"hf:{tiny_llama_checkpoint}", "method": "sparsegpt", "pattern": "4:8",
                       "sparsities": [0, 0.5], "calibration_samples": 8, "seq_len": 64, "eval_samples": 16})
    ctx = RunContext()
    run_prune(spec, ctx)
    ppl = ctx.values("perplexity")
    assert ppl[0.0] > 1 and ppl[0.5] > 1
    assert ctx.facts["evaluation"]["context_length"] == 64 and ctx.facts["calibration"]["seq_len"] == 64
    assert ctx.facts["method_params"] == {"damp": 0.01}
    views = json.loads(ctx.artifacts["views"][0].read_text())
    assert set(views["generation"]["pruned"]) == {"0", "0.5"}
    # the pruned model loads back with exactly the stored zeros, and the save_pretrained folder too
    handle = load_pruned(ctx.as_parent(7, spec), 0.5)
    weights = [m.weight for m in prunable_linears(handle).values()]
    assert sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights) == pytest.approx(0.5)
    again = load_model(f"hf:{ctx.artifacts['model'][0]}")
    assert torch.equal(prunable_linears(again)["model.layers.0.mlp.down_proj"].weight,
                       prunable_linears(handle)["model.layers.0.mlp.down_proj"].weight)


def test_progress_names_the_stage_in_words(monkeypatch):
    seen = []
    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.5]})
    ctx = RunContext()
    monkeypatch.setattr(ctx, "update", lambda fraction, message="": seen.append(message))
    run_prune(spec, ctx)
    assert seen[0] == "loading digits-mlp" and seen[-1] == "done"
    assert "target 50%: pruning layer 2/2" in seen and "target 50%: evaluating" in seen


def test_bad_input_is_refused_before_queueing(tiny_llama_checkpoint):
    cases = [
        ({"model": "digits-mlp", "pattern": "2:4", "sparsities": [0.3]}, "are below it"),
        ({"model": "digits-mlp", "pattern": "block:3x3", "sparsities": [0.5]}, "does not tile"),
        ({"model": "digits-mlp", "method": "sparsegpt", "scope": "global", "sparsities": [0.5]}, "global"),
        ({"model": "digits-mlp", "method": "dsnot", "params": {"iterations": 3, "x": 1}, "sparsities": [0.5]},
         "Extra inputs"),
        ({"model": "digits-mlp", "method": "wanda", "calibration_samples": 4000, "sparsities": [0.5]},
         "calibration split has only 1258 rows"),  # 70% of scikit-learn's 1,797 digits
        ({"model": f"hf:{tiny_llama_checkpoint}", "method": "wanda", "seq_len": 4096, "calibration_samples": 4000,
          "sparsities": [0.5]}, "windows of 4096 tokens"),
        ({"model": "digits-mlp", "parent_run": 99, "sparsities": [0.5]}, "run 99 does not exist"),
    ]
    for fields, message in cases:
        with pytest.raises(SpecError) as exc:
            preflight_prune(parse_spec({"kind": "prune", **fields}), None)
        assert message in str(exc.value), (fields, exc.value.errors)


def test_block_tiling_is_checked_from_the_catalog_shapes():
    spec = parse_spec({"kind": "prune", "model": "minilm-l6", "pattern": "block:5x5", "sparsities": [0.5]})
    with pytest.raises(SpecError) as exc:
        preflight_prune(spec, None)
    # 384 % 5 = 4: the first shape of minilm-l6's catalog entry already fails
    assert exc.value.errors["pattern"].endswith("(24 layers of 384x384)")


PREFLIGHT = """
import sys
from sparsity_core.pruning.checks import preflight_prune
from sparsity_core.specs import parse_spec
for model in ("digits-mlp", "minilm-l6", "smollm2-135m"):
    spec = parse_spec({"kind": "prune", "model": model, "method": "wanda", "pattern": "2:4", "sparsities": [0.5]})
    preflight_prune(spec, None)
print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""


def test_preflight_of_bundled_models_imports_no_torch():
    """What the app runs on submit: a fresh interpreter checking three bundled models stays torch-free."""
    out = subprocess.run([sys.executable, "-c", PREFLIGHT], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
