"""A causal LM's first position (its attention sink) is left out of the SAE's activations and kept
clean when the SAE is spliced in; an encoder keeps every token."""

from itertools import islice

import torch

from sparsity_core.sae.activations import ActivationKey, load_activations, site_module, site_outputs
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
