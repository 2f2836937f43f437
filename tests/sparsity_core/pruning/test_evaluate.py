"""The causal-LM evaluation is bounded by the spec's eval_samples, and its info says how much it scored."""

import pytest

from sparsity_core.pruning.evaluate import Perplexity, make_evaluator
from sparsity_core.zoo import load_model


@pytest.mark.slow
def test_eval_samples_caps_the_perplexity_windows_and_is_recorded():
    handle = load_model("smollm2-135m")  # converts the GGUF on a cold cache (~20-50 s)
    capped = make_evaluator(handle, seed=0, limit=32)
    assert isinstance(capped, Perplexity) and tuple(capped.windows.shape) == (32, 512)
    info = capped.describe()
    assert (info["windows"], info["scored_tokens"], info["context_length"]) == (32, 32 * 511, 512)
    default = make_evaluator(handle, seed=0, limit=None)  # no cap: the evaluator's own 16 windows
    assert default.describe()["windows"] == Perplexity.WINDOWS == 16
    # the windows are the first tokens of the same BBC News test stream, whatever the cap
    assert (capped.windows[:16] == default.windows).all()
