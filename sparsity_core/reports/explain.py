"""Figure builders of the explanations lab: digits as pictures, text with token highlights,
the per-class decomposition, the reconstruction scatter, the flipped-label curves, and two
explanations of one example side by side.

They take what an explain run stores (its `explanation@<variant>` / `influence` JSON as dicts, its
`reconstruction@<variant>` / `alpha_ranking` parquet and the long metrics frame from
`db.repo.metrics_frame`) and return plotly figures, pandas frames or escaped HTML, so the page,
the compare page and the HTML export draw the same thing. No torch here.
"""

from __future__ import annotations

import html
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sparsity_core.reports.figures import PALETTE, empty, legend_below, series_colours, text

INK = "Greys"  # digits are 0 (white) .. 16 (black), as scikit-learn draws them
DIVERGING = "RdBu"  # attributions: blue pushes the prediction up, red down, white nothing
MAX_SCATTER = 6000  # points in the reconstruction scatter; more only slows the browser
METHOD_NAMES = {"representer": "representer |alpha|", "tracin": "TracInCP self-influence", "random": "random order"}


def _escape(text: Any) -> str:
    return html.escape(str(text))


# ---------------------------------------------------------------- pictures
def digit_figure(image: Sequence[Sequence[float]], title: str = "", height: int = 260) -> go.Figure:
    """One 8x8 digit, drawn as scikit-learn's pixels 0..16."""
    fig = go.Figure(go.Heatmap(z=np.asarray(image, dtype=float), colorscale=INK, zmin=0, zmax=16, showscale=False))
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x")
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title=_escape(title), height=height, margin=dict(t=40, b=10, l=10, r=10))
    return fig


def attribution_figure(pixels: Sequence[Sequence[float]], delta: Optional[float] = None) -> go.Figure:
    """Integrated-gradients attribution of each pixel, centred on zero."""
    z = np.asarray(pixels, dtype=float)
    bound = float(np.abs(z).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=z, colorscale=DIVERGING, zmid=0, zmin=-bound, zmax=bound,
                               colorbar={"title": {"text": "push"}, "tickvals": [-bound, 0, bound],
                                         "ticktext": ["down", "none", "up"], "thickness": 12}))
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x")
    fig.update_xaxes(showticklabels=False)
    title = "pixel attributions (IntegratedGradients)" + ("" if delta is None else f", delta {delta:.1e}")
    fig.update_layout(title=title, height=260, margin=dict(t=40, b=10, l=10, r=10))
    return fig


def digit_grid(examples: list[dict[str, Any]], title: str) -> go.Figure:
    """Training digits in a row, each titled `#index label (value)`."""
    if not examples:
        return empty(f"{title}: none", height=160)
    fig = make_subplots(rows=1, cols=len(examples), horizontal_spacing=0.01,
                        subplot_titles=[f"#{e['index']} '{_escape(e['label'])}' {e.get('value', 0):+.2f}" for e in examples])
    for i, e in enumerate(examples, start=1):
        fig.add_trace(go.Heatmap(z=np.asarray(e["image"], dtype=float), colorscale=INK, zmin=0, zmax=16,
                                 showscale=False), row=1, col=i)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=_escape(title), height=190, margin=dict(t=60, b=5, l=5, r=5))
    return fig


# ---------------------------------------------------------------- text
def token_html(tokens: Sequence[str], values: Sequence[float]) -> str:
    """Tokens with a background by attribution (green up, red down), word pieces joined, escaped."""
    bound = max((abs(v) for v in values), default=0.0) or 1.0
    parts = []
    for tok, v in zip(tokens, values):
        if tok in ("[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"):
            continue
        colour = "0,150,60" if v >= 0 else "220,40,40"
        alpha = min(1.0, abs(v) / bound)
        text = _escape(tok[2:] if tok.startswith("##") else tok)
        sep = "" if tok.startswith("##") else " "
        parts.append(f'{sep}<span title="{v:+.3f}" style="background: rgba({colour},{alpha:.2f}); '
                     f'border-radius: 3px; padding: 0 2px">{text}</span>')
    return "<div style='line-height: 2'>" + "".join(parts).strip() + "</div>"


def examples_table(examples: list[dict[str, Any]]) -> pd.DataFrame:
    """Training examples as rows: index, label, value (and the text for text models)."""
    rows = [{"train #": e["index"], "label": e["label"], "value": e.get("value", e.get("score", np.nan)),
             **({"text": e["text"]} if "text" in e else {})} for e in examples]
    return pd.DataFrame(rows, columns=["train #", "label", "value", "text"] if any("text" in e for e in examples)
                        else ["train #", "label", "value"])


# ---------------------------------------------------------------- the decomposition
def per_label_figure(explanation: dict[str, Any]) -> go.Figure:
    """Summed representer values for the predicted class, grouped by the training points' label."""
    per_label = explanation["per_label"]
    values = list(per_label.values())
    fig = go.Figure(go.Bar(x=[_escape(k) for k in per_label], y=values,
                           marker_color=["#2E7D32" if v >= 0 else "#C62828" for v in values]))
    pred = _escape(explanation["prediction"]["name"])
    fig.update_layout(title=f"who pushes '{pred}': training points by their label", height=340,
                      xaxis_title="label of the training points", xaxis_type="category",
                      yaxis_title=f"summed push on the '{pred}' logit", yaxis_tickformat="~g", margin=dict(t=40, b=40))
    return fig


def logits_figure(explanation: dict[str, Any]) -> go.Figure:
    """The model's logits beside the decomposition's (sum over training points), per class."""
    classes = [_escape(c) for c in explanation["classes"]]
    pred = explanation["prediction"]
    fig = go.Figure([go.Bar(x=classes, y=pred["model_logits"], name="the model", marker_color=PALETTE[0]),
                     go.Bar(x=classes, y=pred["representer_logits"], name="sum over training points (representer)",
                            marker_color=PALETTE[1])])
    fig.update_layout(barmode="group", title="logits per class: the model vs its decomposition", height=360,
                      xaxis_title="class", xaxis_type="category", yaxis_title="logit (score before softmax)",
                      yaxis_tickformat="~g", margin=dict(t=40, b=40))
    return legend_below(fig)


def reconstruction_figure(frame: pd.DataFrame, pearson: dict[str, float]) -> go.Figure:
    """Model probability vs softmax(F F_t^T alpha), every class of every point; y = x is exact."""
    fig = go.Figure()
    colour = series_colours(frame["split"])
    for split, group in frame.groupby("split", sort=False):
        if len(group) > MAX_SCATTER:
            group = group.sample(MAX_SCATTER, random_state=0)  # fixed: the same picture every time
        r = pearson.get(split)
        fig.add_trace(go.Scattergl(x=group["model_prob"], y=group["representer_prob"], mode="markers",
                                   marker=dict(size=4, opacity=0.5, color=colour[split]),
                                   name=f"{split}" + ("" if r is None else f" (r = {r:.4f})")))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="y = x"))
    fig.update_layout(title="does the decomposition rebuild the model?", xaxis_title="model's probability",
                      yaxis_title="probability from the decomposition", xaxis_tickformat=".0%", yaxis_tickformat=".0%",
                      height=400, margin=dict(t=40, b=40))
    return legend_below(fig)


# ---------------------------------------------------------------- global view
def ranking_figure(ranking: pd.DataFrame, top: int = 20) -> go.Figure:
    """The training points with the largest |alpha| at their own label (most influential overall),
    as horizontal bars, largest on top, each named by its index and label."""
    head = ranking.head(top)
    names = [f"#{text(i)} ({_escape(lab)})" for i, lab in zip(head["index"], head["label"])]
    # a category axis: plotly reads '#123' as the number 123, which spread the bars into hairlines
    fig = go.Figure(go.Bar(y=names, x=head["alpha"], orientation="h",
                           marker_color=["#2E7D32" if a >= 0 else "#C62828" for a in head["alpha"]],
                           hovertemplate="training point %{y}: alpha %{x:.3g}<extra></extra>"))
    fig.update_layout(title=f"top {len(head)} training points by |alpha|", height=120 + 22 * max(len(head), 3),
                      yaxis={"type": "category", "autorange": "reversed", "title": "training point (its label)"},
                      xaxis={"title": "alpha at its own label (green pushes up, red down)", "tickformat": "~g"},
                      margin=dict(t=40, b=40))
    return fig


def mislabel_figure(metrics: pd.DataFrame, run_id: Optional[int] = None) -> go.Figure:
    """Fraction of flipped labels found vs fraction of training data inspected, per ranking."""
    rows = metrics[metrics["key"] == "mislabel_found"]
    if run_id is not None:
        rows = rows[rows["run_id"] == run_id]
    if rows.empty:
        return empty("no flipped-label experiment in this run", height=160)
    areas = metrics[metrics["key"] == "mislabel_auc"].set_index("series")["value"].to_dict()
    fig = go.Figure()
    colour = series_colours(rows["series"])
    for series, group in rows.groupby("series", sort=False):
        name = METHOD_NAMES.get(series, series) + (f" (score {areas[series]:.2f})" if series in areas else "")
        fig.add_trace(go.Scatter(x=group["x"], y=group["value"], mode="lines+markers", name=_escape(name),
                                 line={"color": colour[series]}))
    fig.update_layout(title="finding flipped labels", xaxis_title="training data inspected, in ranking order",
                      yaxis_title="flipped labels found", height=400, yaxis_range=[0, 1.02], xaxis_tickformat=".0%",
                      yaxis_tickformat=".0%", margin=dict(t=40, b=40))
    return legend_below(fig)


def overlap_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """How much of captum's top-k each representer top-k shares, in percent (100%: the same points)."""
    rows = metrics[metrics["key"] == "topk_overlap"]
    out = []
    for series, value in zip(rows["series"], rows["value"]):
        method, side = series.rsplit("_", 1)
        ours = "excitatory" if side == "proponents" else "inhibitory"
        out.append({"captum method": "TracInCPFast" if method == "tracin" else "SimilarityInfluence (cosine)",
                    "captum list": side, "representer list": ours, "top-k shared": f"{value:.0%}"})
    return pd.DataFrame(out)


# ---------------------------------------------------------------- two explanations
def same_example(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("input", {}).get("item") == b.get("input", {}).get("item")


def explanation_pair(a: dict[str, Any], b: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, float]]:
    """Two explanations of one test example side by side: rank by rank, the training examples
    that pushed the prediction up (excitatory) or down (inhibitory), and how many of the top-k
    the two share (1.0: the same training points explain both models' predictions)."""
    rows, overlap = [], {}
    for side in ("excitatory", "inhibitory"):
        left, right = a.get(side, []), b.get(side, [])
        for rank in range(max(len(left), len(right))):
            row = {"side": side, "rank": rank + 1}
            for tag, items in (("A", left), ("B", right)):
                # a shorter list leaves its cells empty (text), not None
                item = items[rank] if rank < len(items) else {}
                row[f"{tag} train #"] = text(item.get("index"))
                row[f"{tag} label"] = text(item.get("label"))
                row[f"{tag} value"] = "" if item.get("value") is None else f"{item['value']:+.3f}"
            rows.append(row)
        ids_a, ids_b = {i["index"] for i in left}, {i["index"] for i in right}
        overlap[side] = len(ids_a & ids_b) / max(1, min(len(ids_a), len(ids_b)))
    return pd.DataFrame(rows), overlap


def explanation_pair_figure(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> go.Figure:
    """How much each training label contributes to the predicted class's logit, for both."""
    fig = go.Figure()
    for i, (name, data) in enumerate(zip(names, (a, b))):
        per_label = data.get("per_label", {})
        fig.add_trace(go.Bar(x=[_escape(k) for k in per_label], y=list(per_label.values()), name=_escape(name),
                             marker_color=PALETTE[i]))
    fig.update_layout(barmode="group", xaxis_title="label of the training points", xaxis_type="category",
                      height=380, yaxis_title="summed push on the predicted class's logit", yaxis_tickformat="~g",
                      title="which training labels drive each prediction")
    return legend_below(fig)
