"""Kernel figure builders on a hand-made metrics frame: the lines a reader relies on are there."""

import pandas as pd
import pytest

from sparsity_core.reports.kernels import (
    heatmap_figure,
    layer_latency_figure,
    model_frame,
    quality_speed_figure,
    speedup_figure,
    sweep_frame,
)


def frame(rows):
    return pd.DataFrame([{"run_id": 1, "series": "", **r} for r in rows],
                        columns=["run_id", "key", "series", "x", "value"])


SWEEP = frame([{"key": "speedup", "series": f"{layout}|3072x768|{t}", "x": s, "value": v}
               for layout, t, s, v in [("dense", 32, 0.5, 1.0), ("csr", 32, 0.5, 0.7), ("csr", 32, 0.9, 3.5),
                                       ("csr", 512, 0.5, 0.5), ("csr", 512, 0.9, 1.5),
                                       ("semi24", 32, 0.5, 1.2)]])


def test_sweep_series_split_into_layout_shape_tokens():
    rows = sweep_frame(SWEEP, 1)
    assert set(rows["layout"]) == {"dense", "csr", "semi24"}
    assert sorted(set(rows["tokens"])) == [32, 512] and set(rows["shape"]) == {"3072x768"}


def test_speedup_figure_has_break_even_ideal_and_two_four_bounds():
    fig = speedup_figure(SWEEP, 1, "3072x768", 32)
    names = [t.name for t in fig.data]
    assert names[:2] == ["csr", "semi24"]  # dense (always 1) is the break-even line instead
    ideal = next(t for t in fig.data if t.name.startswith("ideal"))
    assert ideal.y[-1] == pytest.approx(1 / (1 - ideal.x[-1]))
    assert {"2:4 compute bound 2x", "2:4 memory bound 16/9"} <= set(names)
    assert fig.layout.shapes[0].y0 == 1.0  # the break-even line


def test_heatmap_is_tokens_by_sparsity():
    fig = heatmap_figure(SWEEP, 1, "csr", "3072x768")
    assert list(fig.data[0].y) == ["32", "512"] and list(fig.data[0].x) == ["50%", "90%"]
    assert fig.layout.xaxis.type == "category"  # else plotly reads '50%' as the number 50
    assert fig.data[0].text.tolist() == [[0.7, 3.5], [0.5, 1.5]]


def test_model_frame_and_quality_figure():
    metrics = frame([{"key": "latency_ms", "series": "model:dense", "x": 0.9, "value": 150.0},
                     {"key": "latency_ms", "series": "model:auto", "x": 0.9, "value": 100.0},
                     {"key": "speedup", "series": "model:auto", "x": 0.9, "value": 1.5},
                     {"key": "rel_error", "series": "model:auto", "x": 0.9, "value": 1e-7}])
    model = model_frame(metrics, 1)
    assert model.iloc[0].to_dict() == {"sparsity": 0.9, "dense_ms": 150.0, "auto_ms": 100.0,
                                       "speedup": 1.5, "rel_error": 1e-7}
    quality = frame([{"key": "accuracy", "x": 0.9, "value": 0.8}])
    fig = quality_speed_figure(model, quality)
    assert [t.name for t in fig.data] == ["end-to-end speedup", "accuracy"]


def test_layer_latency_bars_per_layout():
    metrics = frame([{"key": "layer_latency_ms", "series": f"{lay}|encoder.layer.0.{n}", "x": 0.9, "value": v}
                     for lay, n, v in [("dense", "q", 2.0), ("csr", "q", 1.0), ("dense", "up", 7.0)]])
    fig = layer_latency_figure(metrics, 1, 0.9)
    assert {t.name: list(t.y) for t in fig.data} == {"csr": [1.0], "dense": [2.0, 7.0]}
