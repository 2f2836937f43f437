"""Compare tables and figures, and the loaders that read them from the store, on synthetic runs
whose numbers are known by construction: accuracy = 0.95 - slope * sparsity,
latency = 10 ms * (1 - gain * sparsity)."""

import math

import pandas as pd
import pytest

from db import repo
from sparsity_core.reports import compare, explain, loaders, sae
from sparsity_core.reports.loaders import load_selection
from sparsity_core.reports.pruning import layer_sparsity_pair
from sparsity_core.reports.seed import seed_kernel, seed_pruning


@pytest.fixture
def two_runs():
    a = seed_pruning("magnitude", slope=0.5, name="mag")
    b = seed_pruning("wanda", slope=0.2, name="<b>wanda</b>", scope="global")
    return a, b


def test_config_table_differences_only_keeps_what_differs(two_runs):
    a, b = two_runs
    runs, _, _ = load_selection([a, b])
    full = compare.config_table(runs)
    diff = compare.config_table(runs, differences_only=True)
    assert list(diff.columns) == [f"#{a}", f"#{b}"]
    assert set(diff.index) == {"method", "scope", "name"}
    assert diff.loc["scope"].tolist() == ["layer", "global"]
    assert "model" in full.index and "model" not in diff.index
    assert full.loc["evaluation.dataset"].tolist() == ["digits", "digits"]


def test_metric_summary_last_min_max_and_at(two_runs):
    a, b = two_runs
    runs, _, metrics = load_selection([a, b])
    last = compare.metric_summary(metrics, runs, "last")
    assert last.loc[f"#{a}", "accuracy"] == pytest.approx(0.95 - 0.5 * 0.9)
    assert compare.metric_summary(metrics, runs, "max").loc[f"#{b}", "accuracy"] == pytest.approx(0.95)
    assert compare.metric_summary(metrics, runs, "min").loc[f"#{b}", "accuracy"] == pytest.approx(0.95 - 0.18)
    # 0.6 lies between measured 0.5 and 0.75: linear interpolation, 0.95 - 0.5 * 0.6 = 0.65
    assert compare.metric_summary(metrics, runs, "at", 0.6).loc[f"#{a}", "accuracy"] == pytest.approx(0.65)
    # outside the measured range there is no number rather than an invented one
    assert math.isnan(compare.metric_summary(metrics, runs, "at", 0.95).loc[f"#{a}", "accuracy"])
    with pytest.raises(ValueError, match="needs an x"):
        compare.metric_summary(metrics, runs, "at")


def test_filter_runs_by_fields_and_text(two_runs):
    a, b = two_runs
    frame = compare.runs_frame(repo.list_runs())
    assert compare.filter_runs(frame, methods=["wanda"])["id"].tolist() == [b]
    assert compare.filter_runs(frame, text="MAG")["id"].tolist() == [a]
    assert len(compare.filter_runs(frame, kinds=["kernel"])) == 0
    today = frame["created_at"].max().date()
    assert len(compare.filter_runs(frame, since=today, until=today)) == 2
    assert compare.parse_ids("3, 7,x,0,-1,3,9") == [3, 7, 9]


def test_quality_latency_joins_kernel_runs_to_their_parent_and_finds_the_front(two_runs):
    a, _ = two_runs
    k = seed_kernel(a, dense_ms=10.0, layouts=("csr",))
    runs, children, metrics = load_selection([a])
    assert children["id"].tolist() == [k]
    points = compare.quality_latency_frame(pd.concat([runs, children]), metrics, "accuracy")
    row = points[points["sparsity"] == 0.5].iloc[0]
    assert row["latency_ms"] == pytest.approx(10 * (1 - 0.8 * 0.5))
    assert row["accuracy"] == pytest.approx(0.7)
    # a point that is slower and worse than another is not on the front
    pts = pd.DataFrame({"ms": [1.0, 2.0, 3.0, 2.5], "acc": [0.5, 0.8, 0.9, 0.7]})
    assert compare.pareto_front(pts, "ms", "acc")["ms"].tolist() == [1.0, 2.0, 3.0]
    assert compare.pareto_front(pts, "ms", "acc", higher_is_better=False)["ms"].tolist() == [1.0]
    fig = compare.quality_latency_figure(points, "accuracy")
    assert fig.data[-1].name == "Pareto front"


def test_figures_escape_run_names_and_keep_one_colour_per_run(two_runs):
    a, b = two_runs
    runs, _, metrics = load_selection([a, b])
    figs = compare.curves_figures(metrics, runs)
    assert [f.layout.title.text for f in figs] == ["accuracy", "measured sparsity"]
    names = [t.name for t in figs[0].data]
    assert any("&lt;b&gt;wanda&lt;/b&gt;" in n for n in names) and not any("<b>" in n for n in names)
    assert [t.line.color for t in figs[0].data] == [t.line.color for t in figs[1].data]
    bars = layer_sparsity_pair(metrics, runs, 0.5)
    assert [list(t.y) for t in bars.data] == [[0.5] * 3, [0.5] * 3]
    par = compare.parallel_figure(runs, compare.metric_summary(metrics, runs))
    assert "accuracy" in [d.label for d in par.data[0].dimensions]


def test_lineage_gives_parent_and_children(two_runs):
    a, _ = two_runs
    k = seed_kernel(a)
    parent, children = loaders.lineage(k)
    assert parent.id == a and children == []
    parent, children = loaders.lineage(a)
    assert parent is None and [c.id for c in children] == [k]


def test_a_kernel_run_of_the_pruned_model_uses_its_model_rows_not_its_sweep(two_runs):
    a, _ = two_runs
    k = seed_kernel(a, layouts=("csr",))
    repo.add_metrics(k, [{"key": "latency_ms", "series": "model:auto", "x": 0.5, "value": 3.0},
                         {"key": "latency_ms", "series": "model:dense", "x": 0.5, "value": 5.0},
                         {"key": "latency_ms", "series": "csr|768x3072|32", "x": 0.5, "value": 0.1}])
    runs, children, metrics = load_selection([a])
    points = compare.quality_latency_frame(pd.concat([runs, children]), metrics, "accuracy")
    assert sorted(zip(points["layout"], points["latency_ms"])) == [("auto", 3.0), ("dense", 5.0)]


def _explanation(indices, pred="7", values=None):
    values = values or [1.0] * len(indices)
    return {"input": {"source": "test split", "index": 3, "item": [[0, 1], [1, 0]], "label": "7"},
            "prediction": {"class": 7, "name": pred},
            "excitatory": [{"index": i, "label": "7", "value": v} for i, v in zip(indices, values)],
            "inhibitory": [{"index": 100 + i, "label": "1", "value": -v} for i, v in zip(indices, values)],
            "per_label": {"1": -0.5, "7": 2.0}}


def test_two_explanations_of_one_example_side_by_side(tmp_path):
    import json

    from sparsity_core.paths import artifacts_dir
    from sparsity_core.specs import SCHEMA_VERSION

    run_id = repo.create_run(kind="explain", model="digits-mlp", spec={}, spec_version=SCHEMA_VERSION)
    for variant, indices in (("dense", [4, 5, 6]), ("pruned", [5, 6, 9])):
        path = artifacts_dir(run_id) / f"explanation-{variant}.json"
        path.write_text(json.dumps(_explanation(indices)))
        repo.add_artifact(run_id, f"explanation@{variant}", path, "json")
    (na, a), (nb, b) = loaders.explanations([run_id])
    assert (na, nb) == (f"#{run_id} dense", f"#{run_id} pruned") and explain.same_example(a, b)
    table, overlap = explain.explanation_pair(a, b)
    assert overlap == {"excitatory": 2 / 3, "inhibitory": 2 / 3}  # {5, 6} of three each
    top = table[(table["side"] == "excitatory") & (table["rank"] == 1)].iloc[0]
    assert (top["A train #"], top["B train #"], top["A value"]) == ("4", "5", "+1.000")
    fig = explain.explanation_pair_figure(a, b, (na, nb))
    assert [list(t.y) for t in fig.data] == [[-0.5, 2.0], [-0.5, 2.0]]


def test_sae_runs_are_matched_by_their_stored_decoders():
    import numpy as np
    from safetensors.numpy import save_file

    from sparsity_core.paths import artifacts_dir
    from sparsity_core.specs import SCHEMA_VERSION

    eye = np.eye(4, dtype=np.float32)
    b = 3 * eye[[2, 0, 3, 1]]  # the same directions, shuffled and rescaled ...
    b[0] = [0, 0, 1, 3 ** 0.5]  # ... but B's copy of e2 turned 60 degrees towards e3
    ids = {}
    for name, dec in (("a", eye), ("b", b), ("wide", np.ones((2, 3), dtype=np.float32))):
        ids[name] = repo.create_run(kind="sae", model="digits-mlp", spec={}, spec_version=SCHEMA_VERSION)
        path = artifacts_dir(ids[name]) / "sae.safetensors"
        save_file({"W_dec": dec, "W_enc": dec.T.copy()}, str(path))
        repo.add_artifact(ids[name], "sae", path, "safetensors")
    no_decoder = repo.create_run(kind="sae", model="digits-mlp", spec={}, spec_version=SCHEMA_VERSION)
    assert loaders.sae_decoder(ids["b"]).tolist() == b.tolist()
    matches = loaders.sae_matches(ids["a"], ids["b"])
    # A's e2 now matches at cos 60 = 0.5 (B's latent 0), every other latent finds its exact copy
    assert matches["latent_b"].tolist() == [1, 3, 0, 2]
    assert matches["cosine"].tolist() == pytest.approx([1, 1, 0.5, 1], abs=1e-6)
    assert loaders.sae_matches(ids["a"], no_decoder) is None
    with pytest.raises(ValueError, match="different widths"):
        loaders.sae_matches(ids["a"], ids["wide"])
    fig = sae.match_histogram(matches, "#1", "<b>#2</b>")
    assert fig.layout.annotations[0].text == "75% of latents matched (cos ≥ 0.7)"  # 3 of 4 above the line
    assert "&lt;b&gt;#2&lt;/b&gt;" in fig.layout.title.text


def test_an_unknown_run_is_a_key_error():
    with pytest.raises(KeyError, match="no run 42, 43 in the store"):
        load_selection([42, 43])
