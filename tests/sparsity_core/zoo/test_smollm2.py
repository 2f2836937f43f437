"""SmolLM2-135M from the PyPI GGUF: converted once to a safetensors cache, then loaded fast."""

import time

import pytest
import torch

from sparsity_core.zoo import load_model, prunable_linears


@pytest.mark.slow
def test_smollm2_converts_once_and_reloads_fast():
    first = load_model("smollm2-135m")  # converts the GGUF on a cold cache (~20-50 s)
    assert first.num_params() == 134_515_008 and first.family == "llama" and first.task == "causal_lm"
    linears = prunable_linears(first)
    assert len(linears) == 30 * 7  # q, k, v, o, gate, up, down in each of 30 blocks
    start = time.perf_counter()
    again = load_model("smollm2-135m")
    assert time.perf_counter() - start < 5.0  # < 1 s on an idle machine; headroom for a busy CI box
    ids = again.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = again.model(input_ids=ids).logits
    assert torch.isfinite(logits).all()
    assert again.tokenizer.decode(logits[0, -1].argmax()).strip() == "Paris"
