"""The SAE job end to end on tiny checkpoints, activation caching, and bad input refused before
anything is queued."""

import pandas as pd
import pytest

from db import repo
from sparsity_core.jobs import submit
from sparsity_core.progress import Progress
from sparsity_core.sae.activations import ActivationKey, load_activations
from sparsity_core.sae.run import run_sae
from sparsity_core.specs import SpecError, parse_spec
from sparsity_core.zoo import load_model

SMALL = {"kind": "sae", "data": "rotten_tomatoes", "tokens": 8192, "batch_tokens": 1024, "context": 64,
         "expansion": 4, "k": 4, "layer": 1}


@pytest.fixture(autouse=True)
def small_eval(monkeypatch):
    monkeypatch.setattr("sparsity_core.sae.run.EVAL_TOKENS", 4096)  # held-out tokens: enough for tiny models
    monkeypatch.setattr("sparsity_core.sae.metrics.PROBE_TRAIN", 120)  # the probe only has to run, not be precise
    monkeypatch.setattr("sparsity_core.sae.metrics.PROBE_TEST", 60)


def test_encoder_run_stores_metrics_features_and_export(tiny_models):
    progress = Progress()
    run_sae(parse_spec({**SMALL, "model": tiny_models["bert"], "variant": "topk"}), progress)
    final = {m["key"]: m["value"] for m in progress.metrics if m["x"] is None}
    assert final["l0"] <= 4 + 1e-6 and 0 < final["fve"] <= 1
    assert 0 <= final["dead_fraction"] <= 1 and final["tokens_per_s"] > 0
    assert {"probe_accuracy", "embedding_cosine", "cosine_recovered"} <= set(final)
    hist = progress.values("log_density")
    assert abs(sum(hist.values()) - 1) < 1e-6  # shares of latents sum to one
    features = pd.read_parquet(progress.artifacts["features"][0])
    contexts = pd.read_parquet(progress.artifacts["contexts"][0])
    assert len(features) == 4 * 32 and {"density", "top_tokens", "act_hist"} <= set(features)
    assert set(contexts["latent"]) <= set(features["latent"]) and (contexts["activation"] > 0).all()
    assert (progress.artifacts["saelens"][0] / "cfg.json").is_file()


def test_causal_lm_run_reports_ce_recovered_and_logit_lens(tiny_models):
    progress = Progress()
    run_sae(parse_spec({**SMALL, "model": tiny_models["llama"], "variant": "feature_choice", "site": "mlp"}), progress)
    final = {m["key"]: m["value"] for m in progress.metrics if m["x"] is None}
    assert {"ce_clean", "ce_sae", "ce_zero", "ce_recovered"} <= set(final)
    assert final["dead_fraction"] == 0.0  # feature choice: every latent takes tokens every batch
    features = pd.read_parquet(progress.artifacts["features"][0])
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
    ({"variant": "nope"}, "variant", "unknown SAE variant"),
])
def test_bad_input_is_refused_before_queueing(tiny_models, change, field, words):
    with pytest.raises(SpecError) as err:
        submit({**SMALL, "model": tiny_models["bert"], **change})
    assert words in err.value.errors[field]
    assert repo.list_runs() == []


def _pruned_parent(model: str) -> int:
    """A succeeded pruning run of `model` at 50% magnitude sparsity, stored the way the pruning
    job stores it (masks@0.5 + pruned@0.5), without running its evaluation."""
    from db import repo
    from sparsity_core.jobs.store_progress import StoreProgress
    from sparsity_core.pruning import METHODS
    from sparsity_core.pruning.artifacts import save_target
    from sparsity_core.zoo import prunable_linears

    run_id = submit({"kind": "prune", "model": model, "sparsities": [0.5]}, status="running", worker="test")
    handle = load_model(model)
    linears = prunable_linears(handle)
    masks = METHODS["magnitude"]().prune(linears, 0.5)
    save_target(StoreProgress(run_id), 0.5, linears, masks)
    repo.finish_run(run_id, "succeeded")
    return run_id


def test_pruned_parent_gives_its_own_activations(tiny_models):
    model = tiny_models["bert"]
    parent = _pruned_parent(model)
    spec = {**SMALL, "model": model, "downstream": False, "tokens": 4096}
    dense, pruned = Progress(), Progress()
    run_sae(parse_spec(spec), dense)
    run_sae(parse_spec({**spec, "parent_run": parent, "parent_sparsity": 0.5}), pruned)
    assert pruned.facts["activations"]["parent"] == f"run-{parent}@0.5"
    assert dense.facts["activations"]["parent"] is None
    assert dense.facts["training"]["scale"] != pruned.facts["training"]["scale"]  # different activations
    with pytest.raises(SpecError) as err:
        submit({**spec, "parent_run": parent, "parent_sparsity": 0.9})
    assert "0.5" in err.value.errors["parent_sparsity"]
