"""Figure builders of the pruning lab: weights before/after, a mask view, model size, generations,
per-layer sparsity of several runs side by side, a sparse model soup against its ingredients, and a
layer-wise allocation (OWL / ERK) against the sparsity each layer reached, and a WINA / TEAL run's
per-layer skipped and zero inputs.

They take what the store holds (the long metrics frame from `db.repo.metrics_frame`, and the
run's `views` JSON artifact as a dict) and return plotly figures or pandas frames, so the
Pruning page, the compare page and the HTML export draw the same thing. Curves of a metric
against sparsity and the per-layer heatmap are the shared builders in `reports/figures.py`.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsity_core.reports.figures import (
    MAX_LAYER_ROWS,
    PALETTE,
    PERCENT_KEYS,
    colours,
    empty,
    group_layers,
    label,
    legend_below,
    metric_curve,
    metric_label,
)

SIZE_LABELS = {"bytes_dense": "dense", "bytes_csr": "CSR", "bytes_2to4": "2:4 semi-structured"}
KEPT, ZERO = "#1F3A5F", "#F4F1EA"  # kept weights dark, zeros paper-light


def weight_histogram(views: dict[str, Any], target: str) -> go.Figure:
    """Distribution of the pruned layers' weights, dense vs pruned at `target` (a views key)."""
    hist = views["histogram"]
    edges = hist["edges"]
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=centres, y=hist["dense"]["counts"], name="dense", marker_color="#9DA5B4", opacity=0.6))
    pruned = views["pruned"][target]
    fig.add_trace(go.Bar(x=centres, y=pruned["counts"], name=f"pruned at {float(target):.0%}",
                         marker_color="#E45756", opacity=0.7))
    fig.update_layout(barmode="overlay", title=f"weights before / after ({pruned['zero_fraction']:.0%} exactly zero)",
                      xaxis_title="weight value", yaxis_title="count (sampled weights, log)", yaxis_type="log",
                      height=380, margin=dict(t=40, b=40))
    return legend_below(fig)


def mask_view(views: dict[str, Any], target: str) -> go.Figure:
    """The top-left corner of one layer's mask: kept weights dark, pruned light. N:M groups and
    blocks show as a regular texture; unstructured masks look like noise."""
    crop = np.asarray(views["masks"][target], dtype=float)
    # two flat colour bands and a two-tick colour bar: the legend says which colour is which
    fig = go.Figure(go.Heatmap(z=crop, colorscale=[[0, ZERO], [0.5, ZERO], [0.5, KEPT], [1, KEPT]], zmin=0, zmax=1,
                               xgap=1, ygap=1, hovertemplate="row %{y}, column %{x}: %{text}<extra></extra>",
                               text=np.where(crop > 0.5, "kept", "zero (pruned)"),
                               colorbar={"tickvals": [0.25, 0.75], "ticktext": ["zero (pruned)", "kept"],
                                         "len": 0.5, "thickness": 14}))
    kept = float(crop.mean()) if crop.size else 0.0
    fig.update_layout(title=f"mask of {views['mask_layer']} at {float(target):.0%}: top-left {crop.shape[0]}x"
                            f"{crop.shape[1] if crop.ndim > 1 else 0}, {kept:.0%} kept",
                      xaxis_title="input column", yaxis_title="output row", yaxis_autorange="reversed",
                      height=380, margin=dict(t=40, b=40))
    return fig


def size_table(frame: pd.DataFrame, run_id: int) -> pd.DataFrame:
    """Per target: nonzeros and MB as dense, CSR and 2:4 (blank where the mask is not 2:4)."""
    rows = frame[(frame["run_id"] == run_id) & (frame["series"] == "")]
    keys = ["nonzeros", *SIZE_LABELS]
    table = rows[rows["key"].isin(keys)].pivot_table(index="x", columns="key", values="value")
    out = pd.DataFrame(index=pd.Index([f"{x:.0%}" for x in table.index], name="target sparsity"))
    out["nonzeros"] = table["nonzeros"].round().astype("Int64").to_numpy() if "nonzeros" in table else pd.NA
    for key, fmt in SIZE_LABELS.items():
        if key in table:
            out[f"MB {fmt}"] = (table[key] / 1e6).to_numpy()
    return out


def size_figure(frame: pd.DataFrame, run_id: int) -> go.Figure:
    """Bytes of the pruned layers in each storage format, against the target sparsity."""
    table = size_table(frame, run_id)
    fig = go.Figure()
    for i, fmt in enumerate(SIZE_LABELS.values()):
        col = f"MB {fmt}"
        if col in table:
            fig.add_trace(go.Bar(x=list(table.index), y=table[col], name=fmt, marker_color=PALETTE[i]))
    # category axis: plotly would read '50%' as the number 50 and space the bars on a 0-100 line
    fig.update_layout(barmode="group", title="size of the pruned layers", xaxis_title="target sparsity",
                      xaxis_type="category", yaxis_title="size (MB)", yaxis_tickformat="~g", height=380,
                      margin=dict(t=40, b=40))
    return legend_below(fig)


def generation_table(views: dict[str, Any], word: str = "pruned") -> pd.DataFrame:
    """The same prompt continued greedily by the dense and each pruned model (`word` names the
    targets: 'activation-sparse' for WINA / TEAL runs)."""
    gen = views.get("generation")
    if not gen:
        return pd.DataFrame(columns=["model", "continuation"])
    rows = [{"model": "dense", "continuation": gen["dense"]}]
    rows += [{"model": f"{word} {float(t):.0%}", "continuation": text} for t, text in gen["pruned"].items()]
    return pd.DataFrame(rows)


def recovery_curves(frame: pd.DataFrame, run_id: int) -> go.Figure:
    """Training loss per step of a fine-tune / distill run, and the sparsity the cubic schedule
    asked for (right axis), one colour per target segment."""
    from plotly.subplots import make_subplots

    mine = frame[frame["run_id"] == run_id]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    segments = sorted(set(mine.loc[mine["key"].isin(["train_loss", "schedule_sparsity"]), "series"]), key=float)
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(segments)}
    for series, part in mine[mine["key"] == "train_loss"].groupby("series"):
        fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="lines", name=f"loss, to {float(series):.0%}",
                                 line={"color": colour[series]}))
    for series, part in mine[mine["key"] == "schedule_sparsity"].groupby("series"):
        fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="lines+markers", line_shape="hv",
                                 name=f"sparsity, to {float(series):.0%}",
                                 line={"dash": "dot", "color": colour[series]}), secondary_y=True)
    fig.update_layout(title="recovery: training loss and the cubic sparsity schedule", xaxis_title="optimizer step",
                      height=380)
    fig.update_yaxes(title_text="training loss", tickformat="~g", secondary_y=False)
    fig.update_yaxes(title_text="mask sparsity", range=[0, 1], tickformat=".0%", secondary_y=True)
    return legend_below(fig)


def soup_key(frame: pd.DataFrame, run_id: int) -> str | None:
    """The quality key a run's soup ingredients were scored by (accuracy), or None: no soup."""
    mine = frame[(frame["run_id"] == run_id) & frame["series"].astype(str).str.startswith("ingredient ")]
    return None if mine.empty else str(mine["key"].iloc[0])


def soup_figure(frame: pd.DataFrame, run_id: int) -> go.Figure:
    """A sparse model soup (Zimmer et al. 2023) per target: each fine-tuned ingredient as a dot,
    their mean and the best of them, and the soup (their average, the run's result) as the line."""
    key = soup_key(frame, run_id)
    if key is None:
        return empty("this run cooked no soup (soup_ingredients 0 or 1)")
    mine = frame[(frame["run_id"] == run_id) & (frame["key"] == key)]
    ingredients = mine[mine["series"].astype(str).str.fullmatch(r"ingredient \d+")]
    targets = sorted(ingredients["x"].unique())
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ingredients["x"], y=ingredients["value"], mode="markers", name="ingredients",
                             text=ingredients["series"], hovertemplate="%{text}: %{y}<extra></extra>",
                             marker={"color": "#9DA5B4", "size": 9, "line": {"width": 1, "color": "#555"}}))
    for series, style in (("ingredient mean", {"color": PALETTE[1], "symbol": "line-ew-open", "size": 22}),
                          ("ingredient best", {"color": PALETTE[2], "symbol": "triangle-up-open", "size": 11})):
        part = mine[mine["series"] == series].sort_values("x")
        fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="markers", name=series.replace("ingredient ", "ingredients' "),
                                 marker={**style, "line": {"width": 2, "color": style["color"]}}))
    soup = mine[(mine["series"] == "") & mine["x"].isin(targets)].sort_values("x")
    fig.add_trace(go.Scatter(x=soup["x"], y=soup["value"], mode="lines+markers", name="soup (their average)",
                             line={"color": PALETTE[3], "width": 3}, marker={"size": 10}))
    fig.update_layout(title=f"sparse model soup: {metric_label(key)} of each ingredient, their mean, the soup",
                      xaxis_title="target sparsity", xaxis_tickformat=".0%", yaxis_title=metric_label(key),
                      height=380, margin=dict(t=40, b=40))
    if key in PERCENT_KEYS:
        fig.update_yaxes(tickformat=".1%")
    return legend_below(fig)


def layer_sparsity_pair(metrics: pd.DataFrame, runs: pd.DataFrame, x: float) -> go.Figure:
    """Per-layer sparsity of pruning runs at one target: bars side by side per layer, which shows
    where a global threshold or an activation-aware method puts the zeros."""
    rows = metrics[(metrics["key"] == "layer_sparsity") & np.isclose(metrics["x"].astype(float), x)]
    if rows.empty:
        return empty(f"no per-layer sparsity measured at {x:.0%}")
    grouped = rows["series"].nunique() > MAX_LAYER_ROWS  # SmolLM2's 210 layers: one bar per block
    if grouped:
        rows = group_layers(rows).groupby(["run_id", "block", "block_index"], as_index=False)["value"].mean()
        rows = rows.sort_values("block_index").rename(columns={"block": "series"})
    fig = go.Figure()
    colour = colours(runs)
    for _, run in runs.iterrows():
        group = rows[rows["run_id"] == run["id"]]
        if len(group):
            fig.add_trace(go.Bar(x=group["series"], y=group["value"], name=label(run),
                                 marker={"color": colour[int(run["id"])]}))
    fig.add_hline(y=x, line_dash="dot", annotation_text=f"target {x:.0%}")
    fig.update_layout(barmode="group", yaxis_title="zeros in the layer" + (" (mean of the block)" if grouped else ""),
                      xaxis_title="block" if grouped else "layer", xaxis_type="category", height=400,
                      yaxis_range=[0, 1], yaxis_tickformat=".0%", title=f"{metric_label('layer_sparsity')} at target "
                                                                         f"{x:.0%}")
    return legend_below(fig)


def activation_curve(frame: pd.DataFrame, key: str, run_labels: Optional[dict[int, str]] = None,
                     run_id: Optional[int] = None) -> go.Figure:
    """Quality of WINA / TEAL runs against the activation sparsity they targeted (one line per run,
    so WINA and TEAL on the same model overlay), with the dense model at 0 as a dotted reference:
    `run_id`'s own (an overlaid run may have evaluated other samples), else the first run's."""
    fig = metric_curve(frame, key, run_labels, x_title="activation sparsity (share of each layer's inputs skipped "
                                                       "per token)")
    dense = frame[(frame["key"] == key) & (frame["series"] == "") & np.isclose(frame["x"].astype(float), 0.0)
                  & ((frame["run_id"] == run_id) if run_id is not None else True)]
    if len(dense):
        fig.add_hline(y=float(dense["value"].iloc[0]), line={"dash": "dot", "color": "grey"},
                      annotation_text="dense (activation sparsity 0)")
    fig.update_layout(title=f"{metric_label(key)} against activation sparsity")
    return fig


def allocation_targets(frame: pd.DataFrame, run_id: int) -> list[float]:
    """Targets at which a run recorded a layer-wise allocation (OWL / ERK), or [] for uniform."""
    mine = frame[(frame["run_id"] == run_id) & (frame["key"] == "layer_target")]
    return sorted(float(x) for x in mine["x"].unique())


def allocation_bars(frame: pd.DataFrame, run_id: int, x: float) -> go.Figure:
    """Per-layer sparsity an OWL / ERK allocation asked for against what pruning reached, at
    target `x`; more than MAX_LAYER_ROWS layers (SmolLM2's 210) as one pair of bars per block."""
    return layer_pair_bars(frame, run_id, x, (("layer_target", "allocated", "#9DA5B4"),
                                              ("layer_sparsity", "reached", PALETTE[0])),
                           f"layer-wise allocation at target {x:.0%}: allocated vs reached", "zeros in the layer",
                           f"no layer-wise allocation at {x:.0%} (a uniform run gives every layer the target)")


def activation_layer_bars(frame: pd.DataFrame, run_id: int, x: float) -> go.Figure:
    """A WINA / TEAL run at activation-sparsity target `x`: per layer, the share of its inputs the
    method skipped per token, and the share that is zero after it (the model's own zeros, e.g. after
    a ReLU, included): where the two differ the layer's input was sparse before the method came."""
    return layer_pair_bars(frame, run_id, x, (("layer_activation_sparsity", "skipped by the method", PALETTE[0]),
                                              ("layer_activation_zeros", "zero after it", "#9DA5B4")),
                           f"each layer's inputs at activation sparsity {x:.0%}", "share of the layer's inputs",
                           f"no per-layer activation sparsity measured at {x:.0%}")


def layer_pair_bars(frame: pd.DataFrame, run_id: int, x: float, bars: tuple, title: str, y_title: str,
                    missing: str) -> go.Figure:
    """Two per-layer metrics of one run at target `x` as bars side by side, layer by layer (one pair
    per block, the mean of its layers, past MAX_LAYER_ROWS), with the target as a dotted line.
    bars: ((key, name, colour), ...); the first key must be there, else the `missing` note."""
    keys = [key for key, _, _ in bars]
    rows = frame[(frame["run_id"] == run_id) & frame["key"].isin(keys) & np.isclose(frame["x"].astype(float), x)]
    if not (rows["key"] == keys[0]).any():
        return empty(missing)
    grouped = rows["series"].nunique() > MAX_LAYER_ROWS  # SmolLM2's 210 layers: one pair of bars per block
    if grouped:
        rows = group_layers(rows).groupby(["key", "block", "block_index"], as_index=False)["value"].mean()
        rows = rows.sort_values("block_index").rename(columns={"block": "series"})
    fig = go.Figure()
    for key, name, colour in bars:
        part = rows[rows["key"] == key]
        fig.add_trace(go.Bar(x=part["series"], y=part["value"], name=name, marker={"color": colour},
                             hovertemplate="%{x}: %{y:.1%} " + name + "<extra></extra>"))
    fig.add_hline(y=x, line_dash="dot", annotation_text=f"target {x:.0%}")
    fig.update_layout(barmode="group", title=title,
                      yaxis_title=y_title + (" (mean of the block's layers)" if grouped else ""),
                      xaxis_title="block" if grouped else "layer", xaxis_type="category", yaxis_range=[0, 1],
                      yaxis_tickformat=".0%", height=400, margin=dict(t=40, b=40))
    return legend_below(fig)
