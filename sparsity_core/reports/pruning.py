"""Figure builders of the pruning lab: weights before/after, a mask view, model size, generations,
and per-layer sparsity of several runs side by side.

They take what the store holds (the long metrics frame from `db.repo.metrics_frame`, and the
run's `views` JSON artifact as a dict) and return plotly figures or pandas frames, so the
Pruning page, the compare page and the HTML export draw the same thing. Curves of a metric
against sparsity and the per-layer heatmap are the shared builders in `reports/figures.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsity_core.reports.figures import colours, empty, label

SIZE_LABELS = {"bytes_dense": "dense", "bytes_csr": "CSR", "bytes_2to4": "2:4 semi-structured"}


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
                      height=360, margin=dict(t=40, b=40))
    return fig


def mask_view(views: dict[str, Any], target: str) -> go.Figure:
    """The top-left corner of one layer's mask: kept weights dark, pruned light. N:M groups and
    blocks show as a regular texture; unstructured masks look like noise."""
    crop = views["masks"][target]
    fig = go.Figure(go.Heatmap(z=crop, colorscale=[[0, "#F4F1EA"], [1, "#1F3A5F"]], zmin=0, zmax=1,
                               showscale=False, xgap=1, ygap=1))
    fig.update_layout(title=f"mask of {views['mask_layer']} at {float(target):.0%} (top-left {len(crop)}x{len(crop[0])})",
                      xaxis_title="input column", yaxis_title="output row", yaxis_autorange="reversed",
                      height=380, margin=dict(t=40, b=40))
    return fig


def size_table(frame: pd.DataFrame, run_id: int) -> pd.DataFrame:
    """Per target: nonzeros and MB as dense, CSR and 2:4 (blank where the mask is not 2:4)."""
    rows = frame[(frame["run_id"] == run_id) & (frame["series"] == "")]
    keys = ["nonzeros", *SIZE_LABELS]
    table = rows[rows["key"].isin(keys)].pivot_table(index="x", columns="key", values="value")
    out = pd.DataFrame(index=table.index)
    out.index.name = "target sparsity"
    out["nonzeros"] = table.get("nonzeros")
    for key, fmt in SIZE_LABELS.items():
        if key in table:
            out[f"MB {fmt}"] = table[key] / 1e6
    return out


def size_figure(frame: pd.DataFrame, run_id: int) -> go.Figure:
    """Bytes of the pruned layers in each storage format, against the target sparsity."""
    table = size_table(frame, run_id)
    fig = go.Figure()
    for fmt in SIZE_LABELS.values():
        col = f"MB {fmt}"
        if col in table:
            fig.add_trace(go.Bar(x=[f"{x:.0%}" for x in table.index], y=table[col], name=fmt))
    fig.update_layout(barmode="group", title="size of the pruned layers", xaxis_title="target sparsity",
                      yaxis_title="MB", height=360, margin=dict(t=40, b=40))
    return fig


def generation_table(views: dict[str, Any]) -> pd.DataFrame:
    """The same prompt continued greedily by the dense and each pruned model."""
    gen = views.get("generation")
    if not gen:
        return pd.DataFrame(columns=["model", "continuation"])
    rows = [{"model": "dense", "continuation": gen["dense"]}]
    rows += [{"model": f"pruned {float(t):.0%}", "continuation": text} for t, text in gen["pruned"].items()]
    return pd.DataFrame(rows)


def recovery_curves(frame: pd.DataFrame, run_id: int) -> go.Figure:
    """Training loss per step of a fine-tune / distill run, and the sparsity the cubic schedule
    asked for (right axis), one colour per target segment."""
    from plotly.subplots import make_subplots

    mine = frame[frame["run_id"] == run_id]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for series, part in mine[mine["key"] == "train_loss"].groupby("series"):
        fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="lines", name=f"loss, to {float(series):.0%}"))
    for series, part in mine[mine["key"] == "schedule_sparsity"].groupby("series"):
        fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="lines+markers", line_shape="hv",
                                 name=f"sparsity, to {float(series):.0%}", line_dash="dot"), secondary_y=True)
    fig.update_layout(title="recovery: training loss and the cubic sparsity schedule", xaxis_title="optimizer step")
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="mask sparsity", range=[0, 1], secondary_y=True)
    return fig


def layer_sparsity_pair(metrics: pd.DataFrame, runs: pd.DataFrame, x: float) -> go.Figure:
    """Per-layer sparsity of pruning runs at one target: bars side by side per layer, which shows
    where a global threshold or an activation-aware method puts the zeros."""
    rows = metrics[(metrics["key"] == "layer_sparsity") & np.isclose(metrics["x"].astype(float), x)]
    if rows.empty:
        return empty(f"no per-layer sparsity measured at {x:g}")
    fig = go.Figure()
    colour = colours(runs)
    for _, run in runs.iterrows():
        group = rows[rows["run_id"] == run["id"]]
        if len(group):
            fig.add_trace(go.Bar(x=group["series"], y=group["value"], name=label(run),
                                 marker={"color": colour[int(run["id"])]}))
    fig.add_hline(y=x, line_dash="dot", annotation_text=f"target {x:g}")
    fig.update_layout(barmode="group", yaxis_title="fraction of zeros", xaxis_title="layer", height=380,
                      yaxis_range=[0, 1])
    return fig
