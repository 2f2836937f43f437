"""The explain job end to end on digits-mlp (a few hundred training points), and its pre-run checks."""

import json

import numpy as np
import pytest

from db import repo
from sparsity_core.explain.run import run_explain
from sparsity_core.jobs import submit
from sparsity_core.progress import Progress
from sparsity_core.specs import SpecError, parse_spec

SMALL = {"kind": "explain", "model": "digits-mlp", "dataset": "digits", "train_limit": 300, "top_k": 5}


def explain(**overrides) -> Progress:
    progress = Progress()
    run_explain(parse_spec({**SMALL, **overrides}), progress)
    return progress


def load_json(progress: Progress, name: str) -> dict:
    return json.loads(progress.artifacts[name][0].read_text())


def test_digits_run_reports_its_self_check_and_explanation():
    p = explain(test_index=3, captum=False, flip_fraction=0)
    assert p.values("pearson_train")[0.0] > 0.99 and p.values("pearson_test")[0.0] > 0.98
    assert p.values("grad_norm_final")[0.0] < 1e-4 * p.values("grad_norm_start")[0.0]
    assert p.values("explain_ms")[0.0] < 1000
    e = load_json(p, "explanation@dense")
    assert e["input"]["source"] == "test split" and e["input"]["index"] == 3
    ex, inh = [i["value"] for i in e["excitatory"]], [i["value"] for i in e["inhibitory"]]
    assert ex == sorted(ex, reverse=True) and all(v > 0 for v in ex)
    assert inh == sorted(inh) and all(v < 0 for v in inh)
    # per-label sums add up to the predicted class's logit of the decomposition
    pred = e["prediction"]["class"]
    assert sum(e["per_label"].values()) == pytest.approx(e["prediction"]["representer_logits"][pred], rel=1e-6)
    assert np.asarray(e["excitatory"][0]["image"]).shape == (8, 8)
    assert {"representer@dense", "reconstruction@dense", "alpha_ranking"} <= set(p.artifacts)


def test_the_fit_is_cached_per_lambda():
    first = explain(captum=False, flip_fraction=0)
    again = explain(test_index=7, captum=False, flip_fraction=0)
    assert first.facts["representer_cached@dense"] in (True, False)  # another test may have filled it
    assert again.facts["representer_cached@dense"] is True
    other = explain(captum=False, flip_fraction=0, **{"lambda": 0.05})
    assert other.facts["representer_cached@dense"] is False


def test_captum_and_the_flipped_label_experiment():
    p = explain(test_index=0, flip_fraction=0.2, ig_steps=16)
    e = load_json(p, "explanation@dense")
    attr = e["attribution"]
    assert np.asarray(attr["pixels"]).shape == (8, 8) and abs(attr["delta"]) < 0.5
    infl = load_json(p, "influence")
    assert len(infl["tracin"]["proponents"]["index"]) == 5 and len(infl["similarity"]["opponents"]["index"]) == 5
    overlaps = {m["series"]: m["value"] for m in p.metrics if m["key"] == "topk_overlap"}
    assert set(overlaps) == {"tracin_proponents", "tracin_opponents", "similarity_proponents", "similarity_opponents"}
    assert all(0 <= v <= 1 for v in overlaps.values())
    areas = {m["series"]: m["value"] for m in p.metrics if m["key"] == "mislabel_auc"}
    # flipped labels have large loss, so both informed orders beat reading the data at random
    assert areas["representer"] > areas["random"] + 0.2 and areas["tracin"] > areas["random"] + 0.2


def test_a_drawn_digit_is_explained():
    one = [[0, 0, 0, 12, 12, 0, 0, 0]] * 8  # a vertical bar
    p = explain(image=one, captum=False, flip_fraction=0)
    e = load_json(p, "explanation@dense")
    assert e["input"]["source"] == "drawn" and e["input"]["label"] is None
    assert "featurize_ms" in {m["key"] for m in p.metrics}


def test_a_pruned_parent_is_explained_beside_the_dense_model():
    from sparsity_core.jobs.store_progress import StoreProgress
    from sparsity_core.pruning.run import run_prune

    prune = {"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0.8]}
    parent = submit(prune, status="running", worker="test")
    run_prune(parse_spec(prune), StoreProgress(parent))
    repo.finish_run(parent, "succeeded")
    p = explain(parent_run=parent, captum=False, flip_fraction=0)
    dense, pruned = load_json(p, "explanation@dense"), load_json(p, "explanation@pruned")
    assert pruned["variant"] == {"label": "pruned", "sparsity": 0.8, "parent_run": parent}
    assert dense["input"]["item"] == pruned["input"]["item"]
    assert dense["prediction"]["model_logits"] != pruned["prediction"]["model_logits"]
    assert p.values("pearson_train").keys() == {0.0, 0.8}


@pytest.mark.parametrize("overrides, field, words", [
    ({"lambda": 0}, "lambda", "greater than 0"),
    ({"lambda": -0.5}, "lambda", "greater than 0"),
    ({"test_index": 10_000}, "test_index", "pick 0.."),
    ({"model": "smollm2-135m", "dataset": "rotten_tomatoes"}, "model", "without a classification head"),
    ({"dataset": "rotten_tomatoes"}, "dataset", "explains digits"),
    ({"model": "minilm-l6", "dataset": "digits"}, "dataset", "text dataset"),
    ({"text": "a sentence"}, "text", "draw a digit"),
    ({"parent_run": 1}, "parent_run", "does not exist"),
])
def test_bad_input_is_refused_before_anything_is_stored(overrides, field, words):
    with pytest.raises(SpecError) as err:
        submit({**SMALL, **overrides})
    assert words in err.value.errors[field]
    assert repo.list_runs() == []


def test_an_empty_dataset_is_refused(monkeypatch):
    from sparsity_core.explain import prepare

    real = prepare.splits
    monkeypatch.setattr(prepare, "splits", lambda *a: (real(*a)[0].subset(0), real(*a)[1]))
    with pytest.raises(SpecError) as err:
        submit(SMALL)
    assert "no training rows" in err.value.errors["dataset"]


def test_a_parent_that_is_not_a_pruning_run_is_refused():
    other = submit({**SMALL})
    with pytest.raises(SpecError) as err:
        submit({**SMALL, "parent_run": other})
    assert "not a pruning run" in err.value.errors["parent_run"]
    assert len(repo.list_runs()) == 1


def test_a_parent_with_masks_but_no_pruned_weights_is_refused_before_queueing(store):
    """Recovery runs keep masks only; load_pruned cannot rebuild them, so preflight must refuse."""
    import pytest
    import torch
    from safetensors.torch import save_file

    from db import repo
    from sparsity_core.jobs import submit
    from sparsity_core.specs import SpecError

    parent = repo.create_run(kind="prune", model="digits-mlp", method="magnitude", spec={}, spec_version=1,
                             status="running")
    path = store / "masks.safetensors"
    save_file({"body.0.weight": torch.ones(2, 2, dtype=torch.bool)}, path)
    repo.add_artifact(parent, "masks@0.5", path, "safetensors")
    repo.finish_run(parent, "succeeded")
    with pytest.raises(SpecError) as err:
        submit({"kind": "explain", "model": "digits-mlp", "dataset": "digits", "parent_run": parent})
    assert "stored no pruned weights" in err.value.errors["parent_run"]
    assert [r.id for r in repo.list_runs()] == [parent]  # nothing queued
