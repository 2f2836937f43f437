"""Figures of WINA / TEAL runs from hand-made metrics: quality against activation sparsity (two runs
overlaid, dense as the reference), the compare page's shared curves, and the kernel lab's
batch-1 GEMV figure and table."""

import pandas as pd

from sparsity_core.reports.compare import curves_figures
from sparsity_core.reports.figures import readable_table
from sparsity_core.reports.kernels import gemv_figure, gemv_frame
from sparsity_core.reports.pruning import activation_curve, activation_layer_bars


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["run_id", "key", "series", "x", "value"])


QUALITY = frame([(r, k, "", x, v) for r, acc in ((1, (0.98, 0.97, 0.90)), (2, (0.98, 0.96, 0.85)))
                 for x, a in zip((0.0, 0.5, 0.75), acc) for k, v in (("accuracy", a), ("activation_sparsity", x))])
RUNS = pd.DataFrame([{"id": 1, "kind": "prune", "method": "wina", "model": "digits-mlp", "name": None},
                     {"id": 2, "kind": "prune", "method": "teal", "model": "digits-mlp", "name": None}])


def test_quality_against_activation_sparsity_overlays_runs_with_dense_as_reference():
    fig = activation_curve(QUALITY, "accuracy", {1: "#1 wina", 2: "#2 teal"})
    assert [t.name for t in fig.data] == ["#1 wina", "#2 teal"]
    assert list(fig.data[1].y) == [0.98, 0.96, 0.85]
    assert fig.layout.shapes[0].y0 == 0.98  # the dense model, activation sparsity 0
    assert fig.layout.title.text == "accuracy against activation sparsity"
    assert fig.layout.xaxis.title.text.startswith("activation sparsity")


def test_per_layer_bars_show_what_the_method_skipped_and_what_was_zero_anyway():
    layers = frame([(1, key, layer, 0.5, v) for layer, skipped, zero in (("body.0", 0.5, 0.62), ("body.2", 0.5, 0.81))
                    for key, v in (("layer_activation_sparsity", skipped), ("layer_activation_zeros", zero))])
    fig = activation_layer_bars(layers, 1, 0.5)
    assert [t.name for t in fig.data] == ["skipped by the method", "zero after it"]
    assert list(fig.data[0].x) == ["body.0", "body.2"] and list(fig.data[1].y) == [0.62, 0.81]
    assert fig.layout.shapes[0].y0 == 0.5  # the target
    assert "no per-layer activation sparsity measured at 75%" in activation_layer_bars(layers, 1, 0.75).layout.annotations[0].text


def test_wina_and_teal_share_their_keys_on_the_compare_page():
    titles = [f.layout.title.text for f in curves_figures(QUALITY, RUNS)]
    assert titles == ["accuracy", "measured activation sparsity"]
    assert all(len(f.data) == 2 for f in curves_figures(QUALITY, RUNS))


def test_batch_one_gemv_figure_and_table():
    rows = [(7, "latency_ms", "gemv:dense", x, 20.0) for x in (0.0, 0.5)]
    rows += [(7, "latency_ms", "gemv:gathered", 0.0, 25.0), (7, "latency_ms", "gemv:gathered", 0.5, 10.0),
             (7, "latency_ms", "gemv:topk+gathered", 0.5, 12.5), (7, "speedup", "gemv:gathered", 0.5, 2.0),
             (7, "rel_error", "gemv:gathered", 0.5, 3e-7), (7, "layer_latency_ms", "dense|body.0", 0.5, 1.0)]
    metrics = frame(rows)
    fig = gemv_figure(metrics, 7)
    assert [t.name for t in fig.data] == ["dense GEMV (all columns)", "kept columns only (gathered GEMV)",
                                          "top-k selection + kept columns"]
    assert list(fig.data[1].y) == [25.0, 10.0] and fig.data[0].line.dash == "dash"
    table = readable_table(gemv_frame(metrics, 7))
    assert table.to_dict("records")[1] == {"activation sparsity": "50%", "dense_ms": "20", "gathered_ms": "10",
                                           "topk_gathered_ms": "12.5", "speedup": "2", "rel_error": "3e-07"}
    # the C kernel's rows, where it ran: a line of its own and two more columns
    with_c = frame(rows + [(7, "latency_ms", "gemv:gathered_c", 0.5, 5.0), (7, "speedup", "gemv:gathered_c", 0.5, 4.0)])
    assert [t.name for t in gemv_figure(with_c, 7).data][-1] == "kept columns, the lab's C kernel"
    record = readable_table(gemv_frame(with_c, 7)).to_dict("records")[1]
    assert (record["gathered_c_ms"], record["speedup_c"]) == ("5", "4")
    # on a GPU the Triton kernel's: its own line and columns, before rel_error
    with_triton = frame(rows + [(7, "latency_ms", "gemv:gathered_triton", 0.5, 4.0),
                                (7, "speedup", "gemv:gathered_triton", 0.5, 5.0)])
    assert [t.name for t in gemv_figure(with_triton, 7).data][-1] == "kept columns, the lab's Triton kernel"
    table = gemv_frame(with_triton, 7)
    assert list(table.columns)[-3:] == ["gathered_triton_ms", "speedup_triton", "rel_error"]
    assert table.attrs["metric_keys"]["speedup_triton"] == "speedup"
    assert (table["gathered_triton_ms"].iloc[1], table["speedup_triton"].iloc[1]) == (4.0, 5.0)
    assert "no batch-1 GEMVs" in gemv_figure(metrics, 8).layout.annotations[0].text
