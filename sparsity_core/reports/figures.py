"""Figure builders shared by the pages, the compare page and the HTML export.

Each takes a long-format metrics frame (run_id, key, series, x, value, as `db.repo.metrics_frame`
returns) and returns a plotly Figure; nothing here reads Streamlit state or the store.
"""

from __future__ import annotations

from typing import Optional

import pandas as pd
import plotly.graph_objects as go

LABELS = {
    "accuracy": "accuracy", "perplexity": "perplexity (lower is better)",
    "embedding_cosine": "cosine to dense embeddings", "sparsity": "measured sparsity",
}


def metric_curve(frame: pd.DataFrame, key: str, run_labels: Optional[dict[int, str]] = None,
                 x_title: str = "target sparsity") -> go.Figure:
    """One line per run: `key` against x (usually the target sparsity)."""
    fig = go.Figure()
    rows = frame[(frame["key"] == key) & (frame["series"] == "")].sort_values("x")
    for run_id, part in rows.groupby("run_id", sort=True):
        label = (run_labels or {}).get(run_id, f"run #{run_id}")
        fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="lines+markers", name=label))
    fig.update_layout(xaxis_title=x_title, yaxis_title=LABELS.get(key, key), title=LABELS.get(key, key),
                      legend_title="run", margin=dict(t=40, b=40), height=360)
    if key == "perplexity":
        fig.update_yaxes(type="log")
    return fig


def layer_sparsity(frame: pd.DataFrame, run_id: int, x: Optional[float] = None) -> go.Figure:
    """Measured sparsity of each layer of one run at one target (the highest if x is None)."""
    rows = frame[(frame["run_id"] == run_id) & (frame["key"] == "layer_sparsity")]
    if rows.empty:
        return go.Figure()
    x = rows["x"].max() if x is None else x
    rows = rows[rows["x"] == x]
    fig = go.Figure(go.Bar(x=rows["series"], y=rows["value"], marker_color="#4C78A8"))
    fig.add_hline(y=x, line_dash="dash", annotation_text=f"target {x:.0%}")
    fig.update_layout(title=f"per-layer sparsity at target {x:.0%}", xaxis_title="layer",
                      yaxis_title="fraction of zeros", yaxis_range=[0, 1], height=360, margin=dict(t=40, b=40))
    return fig


def layer_sparsity_heatmap(frame: pd.DataFrame, run_id: int) -> go.Figure:
    """Layers x target sparsity, coloured by measured sparsity (global scope shows uneven layers)."""
    rows = frame[(frame["run_id"] == run_id) & (frame["key"] == "layer_sparsity")]
    if rows.empty:
        return go.Figure()
    table = rows.pivot_table(index="series", columns="x", values="value", sort=False)
    fig = go.Figure(go.Heatmap(z=table.values, x=[f"{c:.0%}" for c in table.columns], y=list(table.index),
                               colorscale="Viridis", zmin=0, zmax=1, colorbar_title="zeros"))
    fig.update_layout(title="measured sparsity per layer", xaxis_title="target sparsity",
                      height=max(300, 18 * len(table) + 120), margin=dict(t=40, b=40))
    return fig
