"""The SAE job end to end on tiny checkpoints, activation caching, a pruned parent chained without a
store, and bad input refused before anything is queued (for bundled models without torch)."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from sparsity_core.data import load_dataset
from sparsity_core.jobs.context import ParentRun, RunContext
from sparsity_core.pruning.run import run_prune
from sparsity_core.sae.activations import ActivationKey, load_activations
from sparsity_core.sae.checks import preflight_sae
from sparsity_core.sae.corpus import token_count
from sparsity_core.sae.run import run_sae
from sparsity_core.specs import SpecError, parse_spec
from sparsity_core.zoo import load_model

SMALL = {"kind": "sae", "data": "rotten_tomatoes", "tokens": 8192, "batch_tokens": 1024, "context": 64,
         "expansion": 4, "k": 4, "layer": 1}


@pytest.fixture(autouse=True)
def small_eval(monkeypatch):
    monkeypatch.setattr("sparsity_core.sae.run.EVAL_TOKENS", 4096)  # held-out tokens: enough for tiny models
    monkeypatch.setattr("sparsity_core.sae.metrics.SAE_PROBE_TRAIN", 120)  # the probe only has to run, not be precise
    monkeypatch.setattr("sparsity_core.sae.metrics.SAE_PROBE_TEST", 60)
    monkeypatch.setattr("sparsity_core.sae.metrics.SAE_CE_WINDOWS", 6)


def test_encoder_run_stores_metrics_features_and_export(tiny_models):
    ctx = RunContext()
    run_sae(parse_spec({**SMALL, "model": tiny_models["bert"], "variant": "topk"}), ctx)
    final = {m["key"]: m["value"] for m in ctx.metrics if m["x"] is None}
    assert final["l0"] <= 4 + 1e-6 and 0 < final["fve"] <= 1
    assert 0 <= final["dead_fraction"] <= 1 and final["tokens_per_s"] > 0
    assert {"probe_accuracy", "embedding_cosine", "cosine_recovered"} <= set(final)
    evaluated = ctx.facts["downstream"]
    assert (evaluated["probe_train_snippets"], evaluated["test_snippets"]) == (120, 60)
    assert evaluated["seconds"] > 0
    hist = ctx.values("log_density")
    assert abs(sum(hist.values()) - 1) < 1e-6  # shares of latents sum to one
    features = pd.read_parquet(ctx.artifacts["features"][0])
    contexts = pd.read_parquet(ctx.artifacts["contexts"][0])
    assert len(features) == 4 * 32 and {"density", "top_tokens", "act_hist"} <= set(features)
    assert set(contexts["latent"]) <= set(features["latent"]) and (contexts["activation"] > 0).all()
    assert (ctx.artifacts["saelens"][0] / "cfg.json").is_file()
    assert ctx.facts["device"] == "cpu"  # auto, on a machine without a GPU the tests run on


def test_causal_lm_run_reports_ce_recovered_and_logit_lens(tiny_models):
    ctx = RunContext()
    run_sae(parse_spec({**SMALL, "model": tiny_models["llama"], "variant": "feature_choice", "site": "mlp"}), ctx)
    final = {m["key"]: m["value"] for m in ctx.metrics if m["x"] is None}
    assert {"ce_clean", "ce_sae", "ce_zero", "ce_recovered"} <= set(final)
    evaluated = ctx.facts["downstream"]
    assert (evaluated["windows"], evaluated["context"], evaluated["split"]) == (6, 64, "test")
    assert evaluated["scored_tokens"] == evaluated["tokens"] - 6  # the first token of a window has no target
    assert final["dead_fraction"] == 0.0  # feature choice: every latent takes tokens every batch
    features = pd.read_parquet(ctx.artifacts["features"][0])
    assert features["promoted"].str.len().min() > 0


def test_activations_are_captured_once_and_extended(tiny_models):
    handle = load_model(tiny_models["bert"])
    key = ActivationKey(tiny_models["bert"], layer=0, site="attn", data="rotten_tomatoes", context=64)
    first = load_activations(handle, key, 3000)
    calls = []
    handle.model.register_forward_pre_hook(lambda *a: calls.append(1))
    again = load_activations(handle, key, 2000)  # a smaller budget: read from disk, no forward pass
    assert calls == [] and (again.acts == first.acts[:2000]).all()
    more = load_activations(handle, key, 5000)  # a bigger one: only the tail is captured
    assert len(more) == 5000 and calls and (more.acts[:3000] == first.acts).all()


@pytest.mark.parametrize("change, field, words", [
    ({"layer": 7}, "layer", "blocks 0..1"),
    ({"k": 500}, "k", "larger than the number of latents"),
    ({"tokens": 90_000_000}, "tokens", "holds"),
    ({"batch_tokens": 16_384}, "batch_tokens", "more than the budget"),
])
def test_bad_input_to_an_hf_model_is_refused_before_queueing(tiny_models, change, field, words):
    with pytest.raises(SpecError) as err:
        preflight_sae(parse_spec({**SMALL, "model": tiny_models["bert"], **change}), None)
    assert words in err.value.errors[field]


@pytest.mark.parametrize("change, field, message", [
    ({"layer": 6}, "layer", "layer 6 is out of range: minilm-l6 has blocks 0..5"),
    ({"expansion": 1, "k": 385}, "k", "k=385 is larger than the number of latents (1 x 384 = 384)"),
    ({"expansion": 1, "k_sweep": [16, 400, 500]}, "k_sweep", "k=400 is larger than the number of latents (1 x 384 = 384)"),
])
def test_a_bundled_model_is_checked_from_its_catalog_entry(change, field, message):
    with pytest.raises(SpecError) as err:
        preflight_sae(parse_spec({**SMALL, "model": "minilm-l6", **change}), None)
    assert err.value.errors[field] == message


def test_a_budget_beyond_the_stored_count_is_refused_and_an_uncounted_one_left_to_the_job():
    spec = parse_spec({**SMALL, "model": "smollm2-135m", "context": 96, "tokens": 20_000})
    preflight_sae(spec, None)  # never counted for this model and window: the job counts before capturing

    class TwoTokens:
        """Every text is one window of two tokens."""

        pad_token = "<pad>"

        def __call__(self, texts, **_kwargs):
            return {"input_ids": [[1, 2] for _ in texts]}

    snippets = len(load_dataset("rotten_tomatoes", "train", 0))  # 8,987
    assert token_count(TwoTokens(), "smollm2-135m", "rotten_tomatoes", "train", 96) == 2 * snippets
    with pytest.raises(SpecError) as err:
        preflight_sae(spec, None)
    assert err.value.errors["tokens"] == (f"the rotten_tomatoes training split holds {2 * snippets:,} tokens "
                                          "for smollm2-135m; ask for at most that many")


DIGITS = {"kind": "sae", "model": "digits-mlp", "site": "hidden", "data": "digits", "layer": 1,
          "tokens": 8192, "batch_tokens": 256, "expansion": 1, "k": 8}


def test_digits_mlp_takes_its_hidden_layers_and_its_images_only():
    with pytest.raises(SpecError) as err:
        preflight_sae(parse_spec({**SMALL, "model": "digits-mlp", "layer": 0}), None)
    assert err.value.errors["site"].startswith("digits-mlp is an MLP: its sites are its hidden layers")
    assert err.value.errors["data"] == "digits-mlp reads digits images: data must be digits"
    with pytest.raises(SpecError) as err:
        preflight_sae(parse_spec({**DIGITS, "layer": 2, "k": 300}), None)
    assert err.value.errors["layer"] == ("layer 2 is out of range: digits-mlp has hidden layers 0..1 "
                                         "(widths 256, 128)")
    with pytest.raises(SpecError) as err:
        preflight_sae(parse_spec({**DIGITS, "k": 129}), None)
    assert err.value.errors["k"] == "k=129 is larger than the number of latents (1 x 128 = 128)"
    with pytest.raises(SpecError) as err:  # every k of an L0 sweep too, before anything is queued
        preflight_sae(parse_spec({**DIGITS, "k_sweep": [4, 200]}), None)
    assert err.value.errors["k_sweep"] == "k=200 is larger than the number of latents (1 x 128 = 128)"
    with pytest.raises(SpecError) as err:  # and a text model refuses the image site and data
        preflight_sae(parse_spec({**SMALL, "model": "minilm-l6", "site": "hidden", "data": "digits"}), None)
    assert set(err.value.errors) == {"site", "data"}
    preflight_sae(parse_spec(DIGITS), None)


def test_an_sae_on_the_digits_classifier_keeps_its_accuracy_and_shows_pictures():
    ctx = RunContext()
    run_sae(parse_spec(DIGITS), ctx)
    final = {m["key"]: m["value"] for m in ctx.metrics if m["x"] is None}
    assert final["l0"] == pytest.approx(8.0)  # TopK: exactly k latents per image
    # the last hidden layer zeroed leaves the head its bias only: about chance (one class of ten)
    assert final["accuracy_clean"] > 0.9 and final["accuracy_zero"] < 0.3
    assert final["accuracy_sae"] > final["accuracy_zero"]
    assert ctx.facts["downstream"]["images"] == ctx.facts["activations"]["eval_tokens"]  # the whole test split
    assert (ctx.facts["activations"]["train_tokens"], ctx.facts["activations"]["rows"]) == (1258, "images")
    contexts = pd.read_parquet(ctx.artifacts["contexts"][0])
    features = pd.read_parquet(ctx.artifacts["features"][0])
    row = contexts.iloc[0]
    assert len(row["pixels"]) == 64 and 0 <= min(row["pixels"]) and max(row["pixels"]) <= 16
    assert row["token"] in [str(d) for d in range(10)]  # the label stands where a token would
    assert list(row["acts"]) == [pytest.approx(row["activation"], abs=1e-3)]  # one image, one activation
    assert len(features["promoted"].iloc[0].split()) == 3  # a third of the ten classes, from the head
    assert ctx.facts["d_sae"] == 128


def test_the_preflight_of_a_bundled_model_loads_no_torch():
    code = ("import json, sys, time\n"
            "start = time.perf_counter()\n"
            "from sparsity_core.sae.checks import preflight_sae\n"
            "from sparsity_core.specs import parse_spec\n"
            "preflight_sae(parse_spec({'kind': 'sae', 'model': 'minilm-l6'}), None)\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules,\n"
            "                  'seconds': time.perf_counter() - start}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    facts = json.loads(done.stdout)
    assert facts["torch"] is False and facts["transformers"] is False
    assert facts["seconds"] < 5  # well under a second on an idle machine; a shared CI core is slower


def pruning_parent(run_id: int, model: str) -> ParentRun:
    """A finished 50% magnitude pruning run of `model`, run by the pruning lab, seen as a parent."""
    spec = parse_spec({"kind": "prune", "model": model, "method": "magnitude", "sparsities": [0.5],
                       "eval_samples": 16})
    ctx = RunContext()
    run_prune(spec, ctx)
    return ctx.as_parent(run_id, spec)


def test_pruned_parent_gives_its_own_activations(tiny_models):
    model = tiny_models["bert"]
    parent = pruning_parent(21, model)
    spec = {**SMALL, "model": model, "downstream": False, "tokens": 4096}
    dense, pruned = RunContext(), RunContext(parents=[parent])
    run_sae(parse_spec(spec), dense)
    run_sae(parse_spec({**spec, "parent_run": 21, "parent_sparsity": 0.5}), pruned)
    assert pruned.facts["activations"]["parent"] == "run-21@0.5"
    assert dense.facts["activations"]["parent"] is None
    assert dense.facts["training"]["scale"] != pruned.facts["training"]["scale"]  # different activations
    with pytest.raises(SpecError) as err:
        preflight_sae(parse_spec({**spec, "parent_run": 21, "parent_sparsity": 0.9}), parent)
    assert err.value.errors["parent_sparsity"] == "run 21 has sparsities 0.5"


@pytest.mark.parametrize("kind, what", [("explain", "an explanation"), ("sae", "an SAE")])
def test_a_parent_that_is_not_a_pruning_run_is_refused_by_the_one_rule(kind, what):
    parent = ParentRun(id=7, kind=kind, model="minilm-l6", status="succeeded")
    spec = parse_spec({**SMALL, "model": "minilm-l6", "parent_run": 7})
    for check in (lambda: preflight_sae(spec, parent), lambda: run_sae(spec, RunContext(parents=[parent]))):
        with pytest.raises(SpecError) as err:
            check()
        assert err.value.errors == {"parent_run": f"run 7 is {what} run; this needs a pruning run"}
