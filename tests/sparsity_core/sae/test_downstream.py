"""The downstream evaluation ("splicing") on a fixed, recorded set: its size counted by hand, the
clean embeddings cached, and no hook left on the model afterwards, errors included."""

import pytest
import torch

from sparsity_core.data import rotten_tomatoes
from sparsity_core.sae import VARIANTS
from sparsity_core.sae.corpus import corpus_texts, iter_windows
from sparsity_core.sae.metrics import downstream
from sparsity_core.zoo import load_model


@pytest.fixture(autouse=True)
def small_sets(monkeypatch):
    monkeypatch.setattr("sparsity_core.sae.metrics.SAE_PROBE_TRAIN", 40)
    monkeypatch.setattr("sparsity_core.sae.metrics.SAE_PROBE_TEST", 20)
    monkeypatch.setattr("sparsity_core.sae.metrics.SAE_CE_WINDOWS", 3)


def hooks_left(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def tiny_sae(d: int):
    torch.manual_seed(0)
    return VARIANTS["topk"](d, 4 * d, 4, None, 0)


def test_encoder_set_is_the_first_snippets_of_each_split_and_is_cached(tiny_models, tmp_path):
    handle = load_model(tiny_models["bert"])
    sae = tiny_sae(32)
    values, evaluated = downstream(handle, sae, 1.0, 1, "resid", "rotten_tomatoes", 64, 0, cache=tmp_path)
    test = rotten_tomatoes("test", seed=0).texts[:20]
    by_hand = sum(len(ids) for ids in handle.tokenizer(test)["input_ids"])  # special tokens included
    assert (evaluated["probe_train_snippets"], evaluated["test_snippets"], evaluated["test_tokens"]) == (40, 20, by_hand)
    assert evaluated["clean_embeddings"] == "computed" and hooks_left(handle.model) == 0
    assert values["embedding_cosine_zero"] < values["embedding_cosine"] <= 1.0 + 1e-6
    again, evaluated = downstream(handle, sae, 1.0, 1, "resid", "rotten_tomatoes", 64, 0, cache=tmp_path)
    assert evaluated["clean_embeddings"] == "cached" and again == pytest.approx(values)


def test_lm_set_is_the_first_windows_of_the_test_split(tiny_models):
    handle = load_model(tiny_models["llama"])
    values, evaluated = downstream(handle, tiny_sae(32), 1.0, 0, "mlp", "rotten_tomatoes", 32, 0)
    first = [w for w, _ in zip(iter_windows(handle.tokenizer, corpus_texts("rotten_tomatoes", "test", 0), 32),
                               range(3))]
    assert evaluated["windows"] == 3 and evaluated["tokens"] == sum(len(w) for w in first)
    assert values["ce_clean"] > 0 and values["ce_zero"] > 0
    assert hooks_left(handle.model) == 0


def test_an_l0_sweep_shares_the_clean_and_zeroed_passes(tiny_models, monkeypatch):
    from sparsity_core.sae import metrics

    handle, calls, real = load_model(tiny_models["llama"]), [], metrics.causal_lm_ce
    monkeypatch.setattr(metrics, "causal_lm_ce", lambda h, w: calls.append(1) or real(h, w))
    first, second = tiny_sae(32), VARIANTS["topk"](32, 64, 8, None, 1)
    alone = downstream(handle, second, 1.0, 0, "mlp", "rotten_tomatoes", 32, 0)[0]
    assert len(calls) == 3  # clean, SAE, zeroed
    baselines: dict = {}
    downstream(handle, first, 1.0, 0, "mlp", "rotten_tomatoes", 32, 0, baselines=baselines)
    shared = downstream(handle, second, 1.0, 0, "mlp", "rotten_tomatoes", 32, 0, baselines=baselines)[0]
    assert len(calls) == 3 + 3 + 1  # the second SAE only needs its own spliced pass
    assert shared == pytest.approx(alone)


@pytest.mark.parametrize("model", ["bert", "llama"])
def test_no_hook_is_left_when_the_sae_fails_mid_forward(tiny_models, model):
    handle = load_model(tiny_models[model])
    sae = tiny_sae(32)

    def broken(_x):
        raise RuntimeError("SAE failed")

    sae.forward = broken
    with pytest.raises(RuntimeError, match="SAE failed"):
        downstream(handle, sae, 1.0, 1, "resid", "rotten_tomatoes", 32, 0)
    assert hooks_left(handle.model) == 0
