"""The explain job end to end on digits-mlp (a few hundred training points), a pruned parent chained
without a store, and its pre-run checks (no torch for bundled models)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsity_core.explain.checks import preflight_explain
from sparsity_core.explain.run import run_explain
from sparsity_core.jobs.context import ParentArtifact, ParentRun, RunContext
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import SpecError, parse_spec

SMALL = {"kind": "explain", "model": "digits-mlp", "dataset": "digits", "train_limit": 300, "top_k": 5}


def explain(parents=(), **overrides) -> RunContext:
    ctx = RunContext(parents=parents)
    run_explain(parse_spec({**SMALL, **overrides}), ctx)
    return ctx


def load_json(ctx: RunContext, name: str) -> dict:
    return json.loads(ctx.artifacts[name][0].read_text())


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
    explain(captum=False, flip_fraction=0)  # another test may have filled the cache already
    again = explain(test_index=7, captum=False, flip_fraction=0)
    assert again.facts["cache"] == {"features@dense": True, "checkpoints@dense": True, "representer@dense": True}
    other = explain(captum=False, flip_fraction=0, **{"lambda": 0.05})
    assert other.facts["cache"]["representer@dense"] is False and other.facts["cache"]["features@dense"] is True


def mislabel_metrics(ctx: RunContext) -> dict:
    return {(m["series"], m["x"]): m["value"] for m in ctx.metrics if m["key"].startswith("mislabel")}


def test_a_second_point_reuses_the_flipped_label_experiment_and_a_changed_input_misses_it():
    # flip 0.25 / 0.3 and lambda 0.004 are used by no other test: the first run of each computes
    first = explain(test_index=1, flip_fraction=0.25, ig_steps=8)
    second = explain(test_index=2, flip_fraction=0.25, ig_steps=16)  # ig_steps is per point: still a hit
    assert first.facts["cache"]["mislabel"] is False and second.facts["cache"]["mislabel"] is True
    assert all(second.facts["cache"].values())
    assert load_json(first, "explanation@dense")["input"]["index"] == 1
    assert load_json(second, "explanation@dense")["input"]["index"] == 2
    curves = mislabel_metrics(first)
    assert len(curves) == 3 * (41 + 1)  # three orders, 41 grid points and an area each
    assert mislabel_metrics(second) == curves  # read back exactly
    assert explain(test_index=2, flip_fraction=0.3, captum=False).facts["cache"]["mislabel"] is False
    other = explain(test_index=2, flip_fraction=0.25, captum=False, **{"lambda": 0.004})
    assert other.facts["cache"]["mislabel"] is False and other.facts["cache"]["representer@dense"] is False


def test_influence_equals_captums_own_classes():
    from sparsity_core.explain import captum_methods as cm
    from sparsity_core.explain.prepare import prepare

    p = explain(test_index=4, top_k=7, flip_fraction=0, ig_steps=8)
    infl, e = load_json(p, "influence"), load_json(p, "explanation@dense")
    prep = prepare("digits-mlp", "digits", 0, 300)
    feat, pred = prep.test_features[4], e["prediction"]["class"]
    assert infl["target"] == pred
    tracin = cm.tracin(prep.train_features, torch.from_numpy(prep.train.labels), prep.checkpoints, 10)
    expected = {"tracin": cm.tracin_top_k(tracin, feat, pred, 7), "similarity": cm.similarity_top_k(prep.train_features,
                                                                                                    feat, 7)}
    for method, sides in expected.items():
        for side, want in sides.items():
            got = infl[method][side]
            assert got["index"] == want["index"], (method, side)
            np.testing.assert_allclose(got["score"], want["score"], rtol=1e-9, atol=1e-12)
            assert [x["index"] for x in got["examples"]] == want["index"]


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
    prune = parse_spec({"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0.8]})
    pruning = RunContext()
    run_prune(prune, pruning)
    parent = pruning.as_parent(31, prune)
    preflight_explain(parse_spec({**SMALL, "parent_run": 31}), parent)
    p = explain(parents=[parent], parent_run=31, captum=False, flip_fraction=0)
    dense, pruned = load_json(p, "explanation@dense"), load_json(p, "explanation@pruned")
    assert pruned["variant"] == {"label": "pruned", "sparsity": 0.8, "parent_run": 31}
    assert dense["input"]["item"] == pruned["input"]["item"]
    assert dense["prediction"]["model_logits"] != pruned["prediction"]["model_logits"]
    assert p.values("pearson_train").keys() == {0.0, 0.8}
    assert p.facts["device"] == "cpu"  # auto, on a machine without a GPU the tests run on


@pytest.mark.parametrize("overrides, field, words", [
    ({"lambda": 0}, "lambda", "greater than 0"),
    ({"lambda": -0.5}, "lambda", "greater than 0"),
    ({"test_index": 10_000}, "test_index", "the digits test split has 359 rows: pick 0..358"),
    ({"model": "smollm2-135m", "dataset": "rotten_tomatoes"}, "model", "without a classification head"),
    ({"dataset": "rotten_tomatoes"}, "dataset", "digits-mlp explains digits, not rotten_tomatoes"),
    ({"model": "minilm-l6", "dataset": "digits"}, "dataset", "text dataset"),
    ({"model": "minilm-l6-rt", "dataset": "bbc_news"}, "dataset", "minilm-l6-rt predicts 2 classes, bbc_news has 5"),
    ({"text": "a sentence"}, "text", "draw a digit"),
    ({"parent_run": 1}, "parent_run", "run 1 does not exist"),
])
def test_bad_input_is_refused_before_anything_is_stored(overrides, field, words):
    with pytest.raises(SpecError) as err:
        preflight_explain(parse_spec({**SMALL, **overrides}), None)
    assert words in err.value.errors[field]


def test_an_empty_dataset_is_refused(monkeypatch):
    monkeypatch.setattr("sparsity_core.explain.checks.split_sizes", lambda *a: (0, 359))
    with pytest.raises(SpecError) as err:
        preflight_explain(parse_spec(SMALL), None)
    assert err.value.errors["dataset"] == "digits has no training rows"


@pytest.mark.parametrize("kind, what", [("explain", "an explanation"), ("sae", "an SAE")])
def test_a_parent_that_is_not_a_pruning_run_is_refused_by_the_one_rule(kind, what):
    parent = ParentRun(id=7, kind=kind, model="digits-mlp", status="succeeded")
    spec = parse_spec({**SMALL, "parent_run": 7})
    for check in (lambda: preflight_explain(spec, parent), lambda: run_explain(spec, RunContext(parents=[parent]))):
        with pytest.raises(SpecError) as err:
            check()
        assert err.value.errors == {"parent_run": f"run 7 is {what} run; this needs a pruning run"}


def test_a_parent_with_masks_but_no_pruned_weights_is_refused_before_queueing():
    masks = ParentArtifact("masks@0.5", "safetensors", Path("masks.safetensors"))
    parent = ParentRun(id=4, kind="prune", model="digits-mlp", status="succeeded", artifacts={"masks@0.5": masks})
    with pytest.raises(SpecError) as err:
        preflight_explain(parse_spec({**SMALL, "parent_run": 4}), parent)
    assert err.value.errors["parent_run"] == "pruning run 4 stored no pruned weights"


def test_the_preflight_of_a_bundled_model_loads_no_torch():
    code = ("import json, sys\n"
            "from sparsity_core.explain.checks import preflight_explain\n"
            "from sparsity_core.specs import parse_spec\n"
            "preflight_explain(parse_spec({'kind': 'explain', 'model': 'minilm-l6', 'dataset': 'tweets'}), None)\n"
            "print(json.dumps(sorted({'torch', 'transformers'} & set(sys.modules))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
