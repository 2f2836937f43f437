"""The explain job end to end on digits-mlp (a few hundred training points), a pruned parent chained
without a store, and its pre-run checks (no torch for bundled models)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
