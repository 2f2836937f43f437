"""Figures a student reads unaided, checked on small hand-made frames: sparsity in percent on
every axis, titles on every axis, legends that say what colours mean, plain metric labels, no
'nan' / 'None' / '2.0' in any text, and per-layer views bounded at SmolLM2's 210 layers."""

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from sparsity_core.pruning.size import size_report
from sparsity_core.reports import compare, explain, html_report, kernels, pruning, sae
from sparsity_core.reports import figures as F

COLUMNS = ["run_id", "key", "series", "x", "value"]
BAD = re.compile(r"\b(?:nan|NaN|None)\b|#\d+\.0\b")  # a missing value or a float id shown as text


def frame(rows):
    return pd.DataFrame([dict(zip(COLUMNS, r)) for r in rows], columns=COLUMNS)


def strings(fig) -> list[str]:
    """Every piece of text a figure shows: titles, names, tick texts, annotations, hover templates."""
    out = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("x", "y", "z", "values", "customdata") and not isinstance(value, str):
                    if key in ("x", "y") and isinstance(value, (list, tuple)):
                        walk([v for v in value if isinstance(v, str)])  # category labels are text
                    continue
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            out.append(node)

    walk(fig.to_plotly_json())
    return out


def assert_readable(fig):
    bad = [s for s in strings(fig) if BAD.search(s)]
    assert not bad, bad


def smollm_layers():
    kinds = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    return [f"model.layers.{b}.{k}" for b in range(30) for k in kinds]


# ---------------------------------------------------------------- words
def test_raw_keys_read_as_plain_words():
    assert F.metric_label("layer_latency_ms[csr_tiled|body.0]") == "layer latency (ms), csr_tiled, body.0"
    assert F.metric_label("latency_ms", "model:auto") == "latency (ms), whole model, auto"
    assert F.metric_label("speedup", "csr|3072x768|32") == "speedup over dense (×), csr, 3072x768 layer, 32 tokens"
    assert F.metric_label("dense_accuracy") == "dense model: accuracy"
    assert F.metric_label("fve") == "FVE (fraction of variance explained)"
    assert F.metric_label("some_new_key") == "some new key" and F.metric_help("some_new_key") == ""
    assert "predicting the mean" in F.metric_help("fve")


def test_values_read_as_percent_plain_decimals_or_nothing():
    assert F.format_metric("sparsity", 0.5) == "50%"
    assert F.format_metric("layer_sparsity", 0.515) == "51.5%"
    assert F.format_metric("rel_error", 3e-4) == "0.0003"  # not plotly's '300μ'
    assert F.format_metric("model_params", 1234567.0) == "1,234,567"
    assert F.format_metric("fve", -0.13) == "-0.13 (worse than predicting the mean)"
    assert F.format_metric("fve", 0.87) == "0.87"
    assert F.format_metric("accuracy", float("nan")) == "" and F.format_metric("accuracy", None) == ""
    assert F.axis_format("sparsity") == {"tickformat": ".2~%"} and F.axis_format("rel_error") == {"tickformat": "~g"}


def test_every_metric_the_labs_write_has_a_label_and_help():
    root = Path(__file__).resolve().parents[3] / "sparsity_core"
    written = set()
    for path in root.rglob("*.py"):
        if "reports" not in path.parts:
            written |= set(re.findall(r'\.metric\(\s*"([a-z0-9_]+)"', path.read_text()))
    # keys built at run time: sae/run.py train_{l0,fve,mse}, explain/run.py pearson_{split} and the
    # fit's tuple, the evaluators' keys (and recovery's dense_ copies), size_report's, the SAE's finals
    written |= {"train_l0", "train_fve", "train_mse", "pearson_train", "pearson_test", "precompute_s",
                "grad_norm_start", "grad_norm_final", "fit_iterations", "accuracy", "embedding_cosine", "perplexity"}
    written |= set(size_report({"w": torch.zeros(2, 4)})) | set(sae.FINAL_KEYS)
    assert {"sparsity", "latency_ms", "log_density", "mislabel_found"} <= written  # the scan found the literals
    missing = sorted(k for k in written if k not in F.METRIC_LABELS)
    assert not missing
    assert all(F.metric_help(k) for k in written)
    assert F.metric_label("dense_perplexity") == "dense model: perplexity (lower is better)"


def test_run_labels_have_no_nan_and_no_float_ids():
    kernel = pd.Series({"id": 7.0, "kind": "kernel", "method": np.nan, "model": "digits-mlp", "name": np.nan})
    assert F.label(kernel) == "#7 kernel · digits-mlp"
    assert F.label({"id": 3, "kind": "prune", "method": "wanda", "model": "minilm-l6", "name": "<b>x</b>"}) \
        == "#3 wanda · minilm-l6 “&lt;b&gt;x&lt;/b&gt;”"
    assert (F.run_ref(2.0), F.run_ref(None), F.text(float("nan")), F.text(4.0)) == ("#2", "", "", "4")


# ---------------------------------------------------------------- curves and per-layer views
def test_curve_uses_percent_axes_plain_titles_distinct_colours_and_a_legend_below():
    rows = [(r, "accuracy", "", s, 0.9 - r * s / 10) for r in (1, 2, 3) for s in (0.0, 0.5, 0.9)]
    fig = F.metric_curve(frame(rows), "accuracy", {1: "#1 magnitude", 2: "#2 wanda", 3: "#3 sparsegpt"})
    assert fig.layout.xaxis.tickformat == ".0%" and fig.layout.yaxis.tickformat == ".2~%"
    assert fig.layout.xaxis.title.text == "target sparsity" and fig.layout.yaxis.title.text == "accuracy"
    assert len({t.line.color for t in fig.data}) == 3
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0
    assert_readable(fig)


def test_heatmap_of_few_layers_shares_the_curves_0_to_1_scale():
    rows = [(1, "layer_sparsity", layer, s, s + d) for layer, d in (("body.0", 0.0), ("body.1", 0.05))
            for s in (0.25, 0.5, 0.9)]
    fig = F.layer_sparsity_heatmap(frame(rows), 1)
    heat = fig.data[0]
    assert list(heat.x) == [0.25, 0.5, 0.9]  # numbers on a percent axis, not '50%' strings read as 50
    assert fig.layout.xaxis.tickformat == ".0%" and list(fig.layout.xaxis.tickvals) == [0.25, 0.5, 0.9]
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0, 1)
    assert fig.layout.coloraxis.colorbar.tickformat == ".0%"
    assert heat.z[1].tolist() == pytest.approx([0.3, 0.55, 0.95])  # body.1 is 5 points over target
    assert fig.layout.xaxis.title.text == "target sparsity" and fig.layout.yaxis.title.text == "layer"
    assert_readable(fig)


def test_heatmap_of_210_layers_groups_them_by_block_and_kind():
    layers = smollm_layers()
    # value = target + block / 1000: block 3's k_proj at target 0.5 reads 0.503
    rows = [(1, "layer_sparsity", name, s, s + int(name.split(".")[2]) / 1000) for name in layers for s in (0.5, 0.7)]
    fig = F.layer_sparsity_heatmap(frame(rows), 1)
    assert len(fig.data) == 2 and fig.layout.height <= F.MAX_LAYER_ROWS * F.ROW_PX + 160 <= 700
    first = fig.data[0]
    assert list(first.y) == [f"block {b}" for b in range(30)]
    assert list(first.x) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert first.z[3][1] == pytest.approx(0.503)
    assert [a.text for a in fig.layout.annotations] == ["target 50%", "target 70%"]
    assert fig.layout.coloraxis.colorbar.tickformat == ".0%"
    assert_readable(fig)
    nine = [(1, "layer_sparsity", name, s / 10, s / 10) for name in layers for s in range(1, 10)]
    fig = F.layer_sparsity_heatmap(frame(nine), 1)
    assert len(fig.data) == F.MAX_PANELS and "(5 of 9 targets)" in fig.layout.title.text
    assert fig.layout.annotations[-1].text == "target 90%"  # the sparsest target is always drawn


def test_bert_layer_kinds_keep_the_shortest_unambiguous_name():
    names = ["encoder.layer.0.attention.self.query", "encoder.layer.0.attention.output.dense",
             "encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense", "classifier"]
    grouped = F.group_layers(pd.DataFrame({"series": names}))
    assert grouped["kind"].tolist() == ["query", "attention.output.dense", "intermediate.dense", "output.dense",
                                        "classifier"]
    assert grouped["block"].tolist() == ["block 0"] * 4 + ["classifier"]
    assert F.block_of("body.2") == (2, "body") and F.block_of("fc1") == (None, "fc1")


def test_per_layer_bars_of_210_layers_are_one_bar_per_block():
    rows = [(1, "layer_sparsity", name, 0.5, 0.4 if name.endswith("q_proj") else 0.6) for name in smollm_layers()]
    runs = pd.DataFrame({"id": [1], "kind": ["prune"], "method": ["wanda"], "model": ["smollm2-135m"],
                         "name": [None]})
    fig = pruning.layer_sparsity_pair(frame(rows), runs, 0.5)
    bars = fig.data[0]
    assert len(bars.x) == 30 and bars.x[0] == "block 0"
    assert bars.y[0] == pytest.approx((0.4 + 6 * 0.6) / 7)
    assert fig.layout.yaxis.tickformat == ".0%" and fig.layout.xaxis.type == "category"
    assert fig.layout.shapes[0].y0 == 0.5 and fig.layout.annotations[0].text == "target 50%"
    assert_readable(fig)


# ---------------------------------------------------------------- pruning views
def test_mask_view_has_a_kept_zero_legend():
    views = {"mask_layer": "body.0", "masks": {"0.5": [[1, 0, 1, 0], [0, 1, 0, 1]]}}
    fig = pruning.mask_view(views, "0.5")
    bar = fig.data[0].colorbar
    assert list(bar.ticktext) == ["zero (pruned)", "kept"] and list(bar.tickvals) == [0.25, 0.75]
    assert fig.data[0].showscale is not False
    assert fig.layout.title.text == "mask of body.0 at 50%: top-left 2x4, 50% kept"
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_size_bars_and_table_show_targets_in_percent():
    rows = [(1, key, "", s, v * (1 - s)) for s in (0.5, 0.9) for key, v in
            (("nonzeros", 1000.0), ("bytes_dense", 4e6), ("bytes_csr", 8e6))]
    table = pruning.size_table(frame(rows), 1)
    assert table.index.tolist() == ["50%", "90%"] and table["nonzeros"].tolist() == [500, 100]
    assert table["MB CSR"].tolist() == pytest.approx([4.0, 0.8])
    fig = pruning.size_figure(frame(rows), 1)
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.title.text == "size (MB)"
    assert_readable(fig)


# ---------------------------------------------------------------- explanations, SAE, kernels
def test_ranking_is_horizontal_bars_on_a_category_axis():
    ranking = pd.DataFrame({"index": [12, 7, 300], "alpha": [2.0, -1.5, 0.5], "label": ["7", "1", "3"]})
    fig = explain.ranking_figure(ranking)
    bars = fig.data[0]
    assert bars.orientation == "h" and list(bars.y) == ["#12 (7)", "#7 (1)", "#300 (3)"]
    assert fig.layout.yaxis.type == "category"  # plotly reads '#12' as the number 12: hairlines
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_logits_chart_has_axis_titles_and_a_legend():
    e = {"classes": ["0", "1"], "prediction": {"name": "1", "model_logits": [0.1, 2.0],
                                               "representer_logits": [0.2, 1.9]}}
    fig = explain.logits_figure(e)
    assert fig.layout.xaxis.title.text == "class" and "logit" in fig.layout.yaxis.title.text
    assert fig.layout.legend.orientation == "h" and fig.data[0].marker.color != fig.data[1].marker.color


def test_two_explanations_leave_missing_ranks_empty():
    a = {"excitatory": [{"index": 4, "label": "7", "value": 1.0}, {"index": 5, "label": "7", "value": 0.5}],
         "inhibitory": []}
    b = {"excitatory": [{"index": 4, "label": "7", "value": 0.9}], "inhibitory": []}
    table, _ = explain.explanation_pair(a, b)
    second = table.iloc[1]
    assert (second["A train #"], second["B train #"], second["B label"], second["B value"]) == ("5", "", "", "")
    assert not table.astype(str).apply(lambda c: c.str.contains(BAD)).any().any()


def test_sae_curves_and_tables_use_plain_labels():
    rows = [(1, "dead_fraction", "", 4096.0, 0.2), (1, "dead_fraction", "", 8192.0, 0.1),
            (1, "fve", "", np.nan, -0.13), (1, "l0", "", np.nan, 32.0), (1, "log_density", "", -1.0, 0.5)]
    fig = sae.training_curve(frame(rows), "dead_fraction")
    assert fig.layout.yaxis.tickformat == ".2~%" and fig.layout.yaxis.title.text == "dead latents"
    assert fig.layout.xaxis.title.text == "training tokens seen" and "%" not in fig.layout.xaxis.tickformat
    assert sae.final_metrics(frame(rows)).columns.tolist() == ["l0", "fve"]
    plain = sae.final_metrics(frame(rows), plain=True)
    assert plain.columns.tolist() == ["L0 (active latents per token)", "FVE (fraction of variance explained)"]
    assert F.readable_table(sae.final_metrics(frame(rows))).iloc[0].tolist() == [
        "32", "-0.13 (worse than predicting the mean)"]
    density = sae.density_histogram(frame(rows))
    assert density.layout.yaxis.tickformat == ".0%" and density.layout.xaxis.title.text


def test_kernel_figures_use_percent_sparsity_and_plain_layer_keys():
    rows = [(1, "speedup", f"{lay}|768x768|32", s, v) for lay, s, v in
            (("csr", 0.5, 0.7), ("csr", 0.9, 2.0), ("bsr", 0.5, 0.9), ("bsr", 0.9, 1.2))]
    fig = kernels.speedup_figure(frame(rows), 1, "768x768", 32)
    assert fig.layout.xaxis.tickformat == ".0%" and fig.data[0].line.color != fig.data[1].line.color
    assert_readable(fig)
    lat = [(1, "layer_latency_ms", f"{lay}|{name}", 0.5, 0.01) for lay in ("dense", "csr") for name in smollm_layers()]
    fig = kernels.layer_latency_figure(frame(lat), 1, 0.5)
    assert len(fig.data[0].x) == 30 and fig.data[0].y[0] == pytest.approx(0.07)  # 7 layers of a block, summed
    assert fig.layout.title.text == "each layer's real mask at sparsity 50%"
    table = kernels.sweep_table(frame(rows), 1)
    assert table.columns.tolist() == ["shape", "tokens", "sparsity", "layout", "speedup over dense (×)"]
    assert table["sparsity"].tolist() == ["50%", "50%", "90%", "90%"]


# ---------------------------------------------------------------- compare and the report
def _runs():
    def run(i, kind, method, parent=None, **spec):
        return SimpleNamespace(id=i, kind=kind, name=None, model="digits-mlp", method=method, status="succeeded",
                               parent_run_id=parent, created_at=pd.Timestamp("2026-01-01"), notes=None,
                               spec={"seed": 0, **spec}, info={}, error=None)
    return compare.runs_frame([run(1, "prune", "magnitude", scope="layer"), run(2, "prune", "wanda", scope="global"),
                               run(3, "kernel", None, parent=1)])


def test_config_and_summary_read_without_nan_none_or_float_ids():
    runs = _runs()
    config = compare.config_table(runs)
    assert config.loc["parent_run", "#3"] == "#1" and config.loc["method", "#3"] == "—"
    assert not config.apply(lambda c: c.str.contains(BAD)).any().any()
    metrics = frame([(3, "layer_latency_ms", "csr_tiled|body.0", 0.5, 0.2), (1, "sparsity", "", 0.5, 0.5),
                     (1, "accuracy", "", 0.5, 0.9)])
    summary = compare.metric_summary(metrics, runs)
    assert summary.columns.tolist() == ["accuracy", "layer latency (ms), csr_tiled, body.0", "measured sparsity"]
    assert compare.percent_columns(summary) == ["accuracy", "measured sparsity"]
    text = F.readable_table(summary)
    assert text.loc["#1"].tolist() == ["90%", "", "50%"] and text.loc["#3"].tolist() == ["", "0.2", ""]
    assert [F.label(r) for _, r in runs.iterrows()] == ["#3 kernel · digits-mlp", "#2 wanda · digits-mlp",
                                                        "#1 magnitude · digits-mlp"]


def test_parallel_coordinates_draw_at_most_the_chosen_axes():
    runs = _runs()
    metrics = frame([(r, f"m{j}", "", None, r * j / 10) for r in (1, 2, 3) for j in range(8)]
                    + [(r, "accuracy", "", None, 0.9 - r / 10) for r in (1, 2, 3)])
    summary = compare.metric_summary(metrics, runs)
    assert len(compare.parallel_axes(runs, summary)) == 3 + 9  # kind, method, scope; nine metrics
    fig = compare.parallel_figure(runs, summary)
    labels = [d.label for d in fig.data[0].dimensions]
    assert len(labels) == compare.MAX_PARALLEL_AXES and "accuracy" in labels
    accuracy = next(d for d in fig.data[0].dimensions if d.label == "accuracy")
    assert accuracy.tickformat == ".2~%"
    assert fig.data[0].line.colorbar.title.text == "accuracy"  # coloured by the first metric, quality first
    chosen = compare.parallel_figure(runs, summary, axes=["method", "m3"])
    assert [d.label for d in chosen.data[0].dimensions] == ["method", "m3"]


def test_html_report_has_no_nan_none_or_float_ids(store):
    from sparsity_core.reports.loaders import load_selection
    from sparsity_core.reports.seed import seed_kernel, seed_pruning

    a = seed_pruning("magnitude")
    k = seed_kernel(a)
    page = html_report.render_html(load_selection([a, k]))
    body = page.split("</script>", 1)[1]  # past the inlined plotly.js
    tables = re.sub(r"<script.*?</script>", "", body, flags=re.S)
    assert not BAD.search(tables), BAD.search(tables)
    # the kernel run's row: no method (an empty cell), its parent as '#1'
    assert re.search(rf"<td>#{k}</td><td>kernel</td><td>synthetic latency</td><td>digits-mlp</td>\s*"
                     rf"<td></td><td>succeeded</td><td>#{a}</td>", tables)
    assert "Per-layer sparsity at target 50%" in tables and "speedup over dense (×), csr" in tables
    runs, children, metrics = load_selection([a, k])
    for _, fig in html_report.report_figures(runs, children, metrics, compare.metric_summary(metrics, runs),
                                             "accuracy"):
        assert_readable(fig)


def test_overlap_with_captum_reads_in_percent():
    metrics = frame([(1, "topk_overlap", "tracin_proponents", 0.0, 0.6),
                     (1, "topk_overlap", "similarity_opponents", 0.0, 0.25)])
    table = explain.overlap_table(metrics)
    assert table.to_dict("records") == [
        {"captum method": "TracInCPFast", "captum list": "proponents", "representer list": "excitatory",
         "top-k shared": "60%"},
        {"captum method": "SimilarityInfluence (cosine)", "captum list": "opponents", "representer list": "inhibitory",
         "top-k shared": "25%"}]
