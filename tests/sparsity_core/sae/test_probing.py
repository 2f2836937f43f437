"""The SAEBench-style suite on toys a person can check by hand: the k-sparse selection, balanced
tasks, a probe on separable data, pooling, dense / dead fractions, feature splitting counts, the
L0 sweep's rows and sparse probing in a real (digits) run."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from sparsity_core.jobs.context import RunContext
from sparsity_core.sae import probing
from sparsity_core.sae.activations import site_module, site_outputs
from sparsity_core.sae.compare import split_counts
from sparsity_core.sae.metrics import dense_and_dead
from sparsity_core.sae.run import run_sae
from sparsity_core.specs import SpecError, parse_spec
from sparsity_core.zoo import load_model

# 4 latents, 2 classes: class means (0.3, 1, 0, 0.5) and (0.3, 1, 2, 0.8): latent 2 differs by 2,
# latent 3 by 0.3, latents 0 and 1 not at all
TOY = np.array([[0.2, 1.0, 0.0, 0.5], [0.4, 1.0, 0.0, 0.5], [0.2, 1.0, 2.0, 0.9], [0.4, 1.0, 2.0, 0.7]])
TOY_Y = np.array([0, 0, 1, 1])


def test_the_k_sparse_selection_takes_the_largest_class_mean_differences():
    assert list(probing.top_k_mean_diff(TOY, TOY_Y, 1)) == [2]
    assert list(probing.top_k_mean_diff(TOY, TOY_Y, 2)) == [2, 3]
    assert list(probing.top_k_mean_diff(TOY, TOY_Y, 3)) == [2, 3, 0]  # a tie (0 and 1): the lower index


def test_a_balanced_task_takes_as_many_negatives_as_positives_spread_over_the_other_classes():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    idx, target = probing.balanced_task(labels, 1, np.random.default_rng(0))
    assert sorted(idx[target == 1]) == [4, 5]
    assert sorted(labels[idx[target == 0]]) == [0, 2]  # one of each other class
    assert probing.binary_tasks(np.array([0, 1, 1])) == [1]  # binary: one task
    assert probing.binary_tasks(np.array([2, 0, 1])) == [0, 1, 2]  # multiclass: one against the rest each


def test_a_separable_toy_is_probed_perfectly_by_its_separating_latent_and_not_by_noise():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    sae = rng.normal(size=(100, 4))
    sae[:, 2] = y * 3.0 + rng.uniform(0, 0.5, 100)  # latent 2 separates the classes
    raw = rng.normal(size=(100, 3))  # pure noise
    train, test = slice(0, 100, 2), slice(1, 100, 2)
    scores = probing.k_sparse_scores({"sae": (sae[train], sae[test]), "raw": (raw[train], raw[test])},
                                     y[train], y[test], ks=(1,))
    assert scores[("sae", 1)] == 1.0
    assert scores[("raw", 1)] < 0.8
    assert probing.probe_accuracy(TOY, TOY_Y, TOY, TOY_Y, np.array([2])) == 1.0


def test_pooling_is_the_mean_over_each_documents_rows():
    acts = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    pooled = probing.pool(None, acts, torch.tensor([0, 0, 1]), 2)
    assert pooled.tolist() == [[2.0, 3.0], [5.0, 6.0]]


def test_principal_components_of_a_line_put_all_variance_in_the_first():
    train = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    first, _ = probing.principal_components(train, train, 2)
    assert np.abs(first[:, 0]).tolist() == pytest.approx([np.sqrt(2), 0, np.sqrt(2)])
    assert np.abs(first[:, 1]).max() < 1e-9


def test_document_activations_leave_special_tokens_out(tiny_models):
    handle = load_model(tiny_models["bert"])
    module = site_module(handle, 1, "resid")
    acts, doc = probing.doc_activations(handle, module, ["good movie", "bad"], context=16)
    assert doc.tolist() == [0, 0, 1]  # [CLS] good movie [SEP] -> 2 rows; [CLS] bad [SEP] -> 1 row
    enc = handle.tokenizer(["good movie"], return_tensors="pt")
    by_hand = site_outputs(handle, module, enc)[0, 1:3]  # the two words, without [CLS] and [SEP]
    assert torch.allclose(acts[:2].float(), by_hand.to(torch.float16).float())


class NoSpecials:
    """A tokenizer that adds no special tokens, as SmolLM2's adds no BOS: a text's first row is a word."""

    def __init__(self, tok):
        self.tok = tok

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def __call__(self, *args, **kwargs):
        return self.tok(*args, add_special_tokens=False, **kwargs)


@pytest.mark.parametrize("model, rows", [("llama", [0, 1]), ("bert", [0, 0, 1])])
def test_a_causal_lms_first_position_is_left_out_of_the_documents(tiny_models, model, rows):
    handle = load_model(tiny_models[model])
    handle = replace(handle, tokenizer=NoSpecials(handle.tokenizer))
    module = site_module(handle, 1, "resid")
    # "good movie" -> good, movie: a causal LM keeps movie alone (good is its attention sink), an
    # encoder both; "bad" is one token, kept either way so that no document is empty
    acts, doc = probing.doc_activations(handle, module, ["good movie", "bad"], context=16)
    assert doc.tolist() == rows
    by_hand = site_outputs(handle, module, handle.tokenizer(["good movie"], return_tensors="pt"))[0]
    first = 1 if model == "llama" else 0
    assert torch.allclose(acts[0].float(), by_hand[first].to(torch.float16).float())


def test_dense_and_dead_fractions_of_a_count_vector():
    # 100 tokens: latents fired 0, 5, 10, 11 and 100 times; dense is more than 10% (10 is not)
    got = dense_and_dead(torch.tensor([0, 5, 10, 11, 100]), 100)
    assert got == {"dense_fraction": pytest.approx(2 / 5), "eval_dead_fraction": pytest.approx(1 / 5)}


def test_feature_splitting_counts_the_big_latents_above_the_cosine_threshold():
    small = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    big = np.array([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0], [-1.0, 0.0]])
    # (1, 0): cos 0.995 with both of the first two -> split in 2; (0, 1): 1 with the third only;
    # (1, 1)/sqrt 2: 0.774 with (1, 0.1), 0.633 with (1, -0.1), 0.707 with (0, 1) -> 2
    assert split_counts(small, big).tolist() == [2, 1, 2]
    with pytest.raises(ValueError, match="different widths"):
        split_counts(small, np.ones((2, 3)))


DIGITS = {"kind": "sae", "model": "digits-mlp", "site": "hidden", "data": "digits", "layer": 1,
          "tokens": 8192, "batch_tokens": 256, "expansion": 1, "k": 8}


def test_the_sweep_records_one_row_per_k_and_keeps_the_runs_own_sae():
    alone, swept = RunContext(), RunContext()
    run_sae(parse_spec(DIGITS), alone)
    run_sae(parse_spec({**DIGITS, "k_sweep": [16, 2]}), swept)
    assert not any(m["key"].startswith("sweep_") for m in alone.metrics)  # no sweep: the single path
    fve = {m["series"]: (m["x"], m["value"]) for m in swept.metrics if m["key"] == "sweep_fve"}
    assert sorted(fve) == ["k=16", "k=2", "k=8"]
    assert [fve[s][0] for s in ("k=2", "k=8", "k=16")] == [2.0, 8.0, 16.0]  # TopK: L0 is exactly k per image
    final = {m["key"]: m["value"] for m in swept.metrics if m["x"] is None}
    assert fve["k=8"][1] == final["fve"] == alone.values("fve")[None]  # the run's own SAE, the same as alone
    assert fve["k=2"][1] < fve["k=8"][1] < fve["k=16"][1]  # more latents per image explain more
    assert {"dense_fraction", "eval_dead_fraction"} <= set(final)
    assert len(swept.values("sweep_accuracy_recovered", "k=2")) == 1
    assert swept.facts["sweep"]["k"] == [2, 8, 16]


def test_sparse_probing_on_the_digits_hidden_layer_stores_every_source_and_k():
    ctx = RunContext()
    run_sae(parse_spec({**DIGITS, "probing": True, "downstream": False}), ctx)
    rows = [m for m in ctx.metrics if m["key"] == "sparse_probe_accuracy"]
    assert sorted({m["series"] for m in rows}) == ["digits|pca", "digits|raw", "digits|sae"]
    assert sorted({m["x"] for m in rows}) == [1.0, 2.0, 5.0, 20.0]
    assert all(0.5 <= m["value"] <= 1.0 for m in rows)  # balanced tasks: chance is 50%
    assert ctx.facts["probing"]["tasks"]["digits"]["binary_tasks"] == 10
    # each digit's first latents are the browser's labels: "digit 3 (digits)" beside the latent
    latents = ctx.facts["probing"]["tasks"]["digits"]["latents"]
    assert sorted(latents) == [f"digit {d}" for d in range(10)] and all(1 <= len(v) <= 3 for v in latents.values())
    features = pd.read_parquet(ctx.artifacts["features"][0]).set_index("latent")
    first = latents["digit 3"][0]
    assert "digit 3 (digits)" in features.loc[first, "labels"].split(", ")


@pytest.mark.parametrize("sweep, words", [
    ([0], "at least 1"), ([1, 2, 3, 4, 5, 6, 7], "at most 6"), ([4, 4], "once"),
])
def test_a_bad_sweep_is_refused_with_a_field_message(sweep, words):
    with pytest.raises(SpecError) as err:
        parse_spec({**DIGITS, "k_sweep": sweep})
    assert words in err.value.errors["k_sweep"]


def test_a_fixed_penalty_cannot_sweep_and_old_specs_still_parse():
    with pytest.raises(SpecError) as err:
        parse_spec({**DIGITS, "variant": "relu_l1", "l1_coeff": 0.1, "k_sweep": [4]})
    assert "same L0" in err.value.errors["k_sweep"]
    old = parse_spec({"kind": "sae", "model": "minilm-l6", "k": 32}, version=1)  # stored before the suite
    assert (old.k_sweep, old.probing) == ([], False)


def test_a_sweep_k_above_the_latents_is_refused_by_the_run():
    with pytest.raises(SpecError) as err:
        run_sae(parse_spec({**DIGITS, "k_sweep": [129]}), RunContext())
    assert err.value.errors["k_sweep"] == "k=129 is larger than the number of latents (1 x 128 = 128)"

