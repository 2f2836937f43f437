"""What "auto" picked, from a hand-made kernel run info and `layers` artifact: every cell of the
table checked by hand, the per-layer bars in model order, and nothing at all for an old run."""

import pandas as pd
import pytest

from sparsity_core.catalog.kernels import LAYOUT_HELP
from sparsity_core.reports.figures import readable_table
from sparsity_core.reports.kernels import (
    AUTO_COLUMNS,
    auto_table,
    auto_words,
    layer_choice_figure,
    layout_words,
)

# the shape sparsity_core/kernels/run.py writes: sparsity keys as f"{s:g}"
INFO = {"model": {
    "layouts_chosen": {"0.5": {"dense": 2}, "0.9": {"csr": 1, "dense": 1}, "0.95": {"csr": 2}},
    "auto": {
        "0.9": {"chose": "per_layer", "dense_ms": 2.0, "per_layer_ms": 1.5, "dense_iqr_ms": 0.1,
                "per_layer_iqr_ms": 0.2},
        "0.5": {"chose": "dense", "dense_ms": 2.0, "per_layer_ms": 2.2, "dense_iqr_ms": 0.1,
                "per_layer_iqr_ms": 0.05},
        "0.95": {"chose": "per_layer", "dense_ms": 2.0, "per_layer_ms": 1.95, "dense_iqr_ms": 0.1,
                 "per_layer_iqr_ms": 0.1}}}}


def test_one_row_per_sparsity_with_auto_dense_and_their_ratio():
    table = auto_table(INFO)
    assert list(table.columns) == AUTO_COLUMNS
    assert table.to_dict("records") == [
        # auto kept dense: its time is dense's, the ratio exactly 1, the slower swapped model shown
        {"sparsity": 0.5, "auto picked": "dense (whole model)", "auto (ms)": 2.0, "dense (ms)": 2.0,
         "auto ÷ dense": 1.0, "per-layer model (ms)": 2.2, "noise (IQR, ms)": 0.1, "against dense": "is dense"},
        # 2.0 - 1.5 = 0.5 ms, beyond the larger IQR 0.2: a real win
        {"sparsity": 0.9, "auto picked": "per layer: CSR ×1, dense ×1", "auto (ms)": 1.5, "dense (ms)": 2.0,
         "auto ÷ dense": 0.75, "per-layer model (ms)": 1.5, "noise (IQR, ms)": 0.2, "against dense": "faster"},
        # 2.0 - 1.95 = 0.05 ms, inside the IQR 0.1: no more than noise
        {"sparsity": 0.95, "auto picked": "CSR in every layer (2)", "auto (ms)": 1.95, "dense (ms)": 2.0,
         "auto ÷ dense": pytest.approx(0.975), "per-layer model (ms)": 1.95, "noise (IQR, ms)": 0.1,
         "against dense": "same, within noise"}]
    assert (table["auto ÷ dense"] <= 1.0).all()  # auto is never slower than dense: dense is a candidate


def test_the_readable_table_has_percent_sparsities_and_no_nan_or_none():
    shown = readable_table(auto_table(INFO))
    assert list(shown["sparsity"]) == ["50%", "90%", "95%"]
    assert list(shown["auto ÷ dense"]) == ["1", "0.75", "0.975"]
    cells = " ".join(shown.astype(str).to_numpy().ravel())
    assert "nan" not in cells.lower() and "None" not in cells


def test_a_run_without_iqrs_has_no_noise_column_and_a_plain_verdict():
    info = {"model": {"auto": {"0.9": {"chose": "per_layer", "dense_ms": 4.0, "per_layer_ms": 3.0}}}}
    table = auto_table(info)
    assert "noise (IQR, ms)" not in table and table.iloc[0]["against dense"] == "faster"
    assert table.iloc[0]["auto picked"] == "per-layer layouts"  # no layouts_chosen kept: still words


@pytest.mark.parametrize("info", [None, {}, {"model": None}, {"device": {"name": "cpu"}},
                                  {"model": {"layouts_chosen": {"0.9": {"csr": 2}}}},  # before auto was kept
                                  {"model": {"auto": {"0.9": {"chose": "dense"}}}}])  # not the shape
def test_an_old_run_gives_an_empty_table(info):
    table = auto_table(info)
    assert table.empty


def test_layouts_in_words():
    assert {k: layout_words(k) for k in ("dense", "csr", "semi24")} == {"dense": "dense", "csr": "CSR",
                                                                        "semi24": "2:4 (cuSPARSELt)"}
    assert layout_words("bsr", block=16) == "BSR 16x16" and layout_words("bsr") == "BSR"
    assert all(layout_words(k) != k or k == "dense" for k in LAYOUT_HELP)  # every catalog layout has words
    assert auto_words("per_layer", {"bsr": 3}, block=32) == "BSR 32x32 in every layer (3)"
    assert auto_words("per_layer", {"dense": 1, "csr": 3, "shrunk": 0}) == "per layer: CSR ×3, dense ×1"


LAYERS = pd.DataFrame([
    {"sparsity": 0.9, "layer": "body.0", "layout": "csr", "dense_ms": 1.0, "chosen_ms": 0.4},
    {"sparsity": 0.9, "layer": "body.2", "layout": "dense", "dense_ms": 0.3, "chosen_ms": 0.3},
    {"sparsity": 0.5, "layer": "body.0", "layout": "dense", "dense_ms": 1.0, "chosen_ms": 1.0},
    {"sparsity": 0.5, "layer": "body.2", "layout": "dense", "dense_ms": 0.3, "chosen_ms": 0.3}])


def test_per_layer_bars_are_coloured_by_the_chosen_layout():
    fig = layer_choice_figure(LAYERS, 0.9)
    bars = {t.name: (list(t.x), list(t.y)) for t in fig.data if t.type == "bar"}
    assert bars == {"CSR": ([0.4], ["body.0"]), "dense": ([0.3], ["body.2"])}
    assert all(t.orientation == "h" for t in fig.data if t.type == "bar")
    (ticks,) = [t for t in fig.data if t.type == "scatter"]  # the same layer's dense time
    assert (list(ticks.x), list(ticks.y)) == ([1.0, 0.3], ["body.0", "body.2"])
    assert "ms" in fig.layout.xaxis.title.text and fig.layout.yaxis.title.text == "layer"
    assert list(fig.layout.yaxis.categoryarray) == ["body.0", "body.2"]  # model order, first on top
    assert fig.layout.title.text == "layout chosen for each layer at sparsity 90%"


def test_many_layers_are_summed_per_block():
    rows = [{"sparsity": 0.5, "layer": f"model.layers.{b}.{kind}", "layout": "csr" if kind == "up" else "dense",
             "dense_ms": 1.0, "chosen_ms": 0.5 if kind == "up" else 1.0}
            for b in range(20) for kind in ("q", "up")]  # 40 layers: beyond MAX_LAYER_ROWS
    fig = layer_choice_figure(pd.DataFrame(rows), 0.5)
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert list(bars["CSR"].y) == [f"block {b}" for b in range(20)] and set(bars["CSR"].x) == {0.5}
    assert set(bars["dense"].x) == {1.0} and fig.layout.barmode == "stack"
    (ticks,) = [t for t in fig.data if t.type == "scatter"]
    assert set(ticks.x) == {2.0}  # both layers' dense time, summed per block
    assert fig.layout.yaxis.title.text == "block"


@pytest.mark.parametrize("layers", [pd.DataFrame(), LAYERS.drop(columns="chosen_ms"), LAYERS])
def test_missing_choices_give_a_figure_that_says_so(layers):
    fig = layer_choice_figure(layers, 0.7)  # LAYERS has no 70%
    assert not fig.data and fig.layout.annotations[0].text.startswith("no per-layer layout choices")
