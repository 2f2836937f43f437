"""A causal LM's first position (its attention sink) and its massive activations further in are left
out of the SAE's activations and kept clean when the SAE is spliced in; an encoder keeps every token."""

from itertools import islice

import torch

from sparsity_core.sae.activations import (
    ActivationKey,
    cached_tokens,
    hooked,
    load_activations,
    massive_rows,
    site_module,
    site_outputs,
)
from sparsity_core.sae.corpus import corpus_texts, iter_windows
from sparsity_core.sae.metrics import sae_replacer, zero_replacer
from sparsity_core.zoo import load_model


def _windows(handle, n):
    return list(islice(iter_windows(handle.tokenizer, corpus_texts("bbc_news", "train", 0), 64), n))


def test_causal_lm_rows_skip_each_windows_first_token(tiny_models):
    handle = load_model(tiny_models["llama"])
    windows = _windows(handle, 16)  # one capture batch
    budget = sum(len(w) - 1 for w in windows)
    acts = load_activations(handle, ActivationKey(tiny_models["llama"], 1, "resid", "bbc_news", "train", 64),
                            budget)
    # the same rows by hand: the block's output on the batch, positions 1.. of every window
    enc = handle.tokenizer.pad({"input_ids": windows}, return_tensors="pt")
    out = site_outputs(handle, site_module(handle, 1, "resid"), enc)
    real = enc["attention_mask"].bool()
    real[:, 0] = False
    assert len(acts) == budget
    assert torch.allclose(acts.acts.float(), out[real].half().float())
    assert acts.token_ids.tolist() == [t for w in windows for t in w[1:]]


def test_encoder_rows_keep_every_token(tiny_models):
    handle = load_model(tiny_models["bert"])
    windows = _windows(handle, 16)
    budget = sum(len(w) for w in windows)
    acts = load_activations(handle, ActivationKey(tiny_models["bert"], 1, "resid", "bbc_news", "train", 64), budget)
    assert acts.token_ids.tolist() == [t for w in windows for t in w]


class Doubler(torch.nn.Module):
    def forward(self, x):
        return 2 * x


def test_splicing_can_leave_the_first_position_as_it_was():
    out = torch.arange(12.0).reshape(1, 3, 4)
    kept = sae_replacer(Doubler(), 1.0, keep_first=True)(out.clone())
    assert kept[0, 0].tolist() == [0, 1, 2, 3] and kept[0, 1:].tolist() == (2 * out[0, 1:]).tolist()
    assert sae_replacer(Doubler(), 1.0)(out.clone())[0, 0].tolist() == [0, 2, 4, 6]
    zeroed = zero_replacer(out.clone(), keep_first=True)
    assert zeroed[0, 0].tolist() == [0, 1, 2, 3] and zeroed[0, 1:].abs().sum() == 0


def test_massive_rows_are_those_far_above_the_batchs_median_norm():
    out = torch.ones(1, 5, 4)  # every row of norm 2
    out[0, 2] *= 17  # norm 34: 17 x the median, above MASSIVE_NORM = 16
    out[0, 3] *= 15  # 15 x: an ordinary large token
    assert massive_rows(out).tolist() == [[False, False, True, False, False]]
    real = torch.tensor([[True, True, True, True, False]])
    assert massive_rows(out, real)[0, 2]
    kept = sae_replacer(Doubler(), 1.0, keep_first=True)(out.clone())
    assert kept[0, 2].tolist() == out[0, 2].tolist() and kept[0, 0].tolist() == out[0, 0].tolist()  # put back
    assert kept[0, 3].tolist() == (2 * out[0, 3]).tolist()  # spliced


def test_a_massive_activation_inside_a_window_is_left_out_of_the_capture(tiny_models):
    handle = load_model(tiny_models["llama"])
    windows = _windows(handle, 16)
    module = site_module(handle, 1, "resid")

    def plant(_mod, _inp, output):  # the third window's sixth token: 100 x its activation
        hidden = output[0] if isinstance(output, tuple) else output
        hidden[2, 5] *= 100
        return output

    budget = sum(len(w) - 1 for w in windows) - 1
    key = ActivationKey(tiny_models["llama"], 1, "resid", "bbc_news", "train", 64, parent="planted")  # its own cache
    with hooked(module, plant):
        acts = load_activations(handle, key, budget)
    expected = [t for i, w in enumerate(windows) for j, t in enumerate(w) if j > 0 and (i, j) != (2, 5)]
    assert acts.token_ids.tolist() == expected
    assert cached_tokens(key, "massive_left_out") == 1
