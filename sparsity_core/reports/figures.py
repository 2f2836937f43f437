"""Figure builders shared by the pages, the compare page and the HTML export, and their parts.

Each takes a long-format metrics frame (run_id, key, series, x, value, as `db.repo.metrics_frame`
returns) and returns a plotly Figure; nothing here reads Streamlit state or the store.
"""

from __future__ import annotations

import html
from typing import Any, Optional

import pandas as pd
import plotly.graph_objects as go

LABELS = {
    "accuracy": "accuracy", "perplexity": "perplexity (lower is better)",
    "embedding_cosine": "cosine to dense embeddings", "sparsity": "measured sparsity",
}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def label(run: Any, escape: bool = True) -> str:
    """'#7 magnitude · digits-mlp “name”', with the user's text escaped: plotly renders a few HTML
    tags in labels, so a run named <b>x</b> must show as typed, not bold (or worse). Widgets show
    text as typed already: they take escape=False."""
    get = run.get if isinstance(run, (dict, pd.Series)) else lambda k: getattr(run, k, None)
    name = get("name")
    text = f"#{get('id')} {get('method') or get('kind')} · {get('model')}"
    if isinstance(name, str) and name:
        text += f" “{name}”"
    return html.escape(text) if escape else text


def colours(runs: pd.DataFrame) -> dict[int, str]:
    """One colour per run of a runs frame, in its order: the same run keeps it in every figure."""
    return {int(r): PALETTE[i % len(PALETTE)] for i, r in enumerate(runs["id"])}


def empty(message: str, height: int = 200) -> go.Figure:
    """A blank figure that says why there is nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(text=html.escape(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(height=height, xaxis_visible=False, yaxis_visible=False)
    return fig


def metric_curve(frame: pd.DataFrame, key: str, run_labels: Optional[dict[int, str]] = None,
                 x_title: str = "target sparsity") -> go.Figure:
    """One line per run: `key` against x (usually the target sparsity)."""
    fig = go.Figure()
    rows = frame[(frame["key"] == key) & (frame["series"] == "")].sort_values("x")
    for run_id, part in rows.groupby("run_id", sort=True):
        name = (run_labels or {}).get(run_id, f"run #{run_id}")
        fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="lines+markers", name=name))
    fig.update_layout(xaxis_title=x_title, yaxis_title=LABELS.get(key, key), title=LABELS.get(key, key),
                      legend_title="run", margin=dict(t=40, b=40), height=360)
    if key == "perplexity":
        fig.update_yaxes(type="log")
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
