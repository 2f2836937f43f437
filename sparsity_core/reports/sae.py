"""SAE lab figures and tables, shared by the SAE page, the compare page and the HTML export.

Inputs are pandas frames: the long metrics frame from `db.repo.metrics_frame`, the feature /
context tables the SAE job stores as parquet, and the matches of two SAEs' latents
(`sae.compare.match_features`). Nothing here reads Streamlit state, the store or torch.
"""

from __future__ import annotations

import html
from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsity_core.reports.figures import PALETTE, legend_below, metric_curve, metric_label, text
from sparsity_core.sae.compare import MATCH_THRESHOLD

FINAL_KEYS = ("l0", "fve", "nmse", "dead_fraction", "eval_dead_fraction", "tokens_per_s", "ce_recovered",
              "ce_clean", "ce_sae", "ce_zero", "probe_accuracy", "probe_accuracy_clean", "probe_accuracy_zero",
              "embedding_cosine", "embedding_cosine_zero", "cosine_recovered")
ACT_BINS = np.linspace(-2.0, 1.5, 36)  # must match sparsity_core.sae.features.ACT_BINS (a test checks)


def final_metrics(frame: pd.DataFrame, labels: Optional[dict[int, str]] = None, plain: bool = False) -> pd.DataFrame:
    """One row per run, one column per final (x-less) metric, in a fixed readable order; with
    `plain`, the columns are the metrics' plain labels (`figures.metric_label`) instead of keys."""
    rows = frame[frame["x"].isna() & (frame["series"] == "")]
    table = rows.pivot_table(index="run_id", columns="key", values="value", aggfunc="last")
    table = table[[k for k in FINAL_KEYS if k in table.columns]]
    if labels:
        table.index = [labels.get(i, f"run #{text(i)}") for i in table.index]
    if plain:
        table.columns = [metric_label(k) for k in table.columns]
    return table


def training_curve(frame: pd.DataFrame, key: str, labels: Optional[dict[int, str]] = None) -> go.Figure:
    """One training metric against the tokens seen, one line per run."""
    return metric_curve(frame[frame["x"].notna()], key, labels, x_title="training tokens seen", x_percent=False)


def density_histogram(frame: pd.DataFrame, labels: Optional[dict[int, str]] = None) -> go.Figure:
    """Share of latents per log10(firing density) bin; the leftmost bin holds dead latents."""
    fig = go.Figure()
    rows = frame[frame["key"] == "log_density"].sort_values("x")
    for i, (run_id, part) in enumerate(rows.groupby("run_id", sort=True)):
        fig.add_trace(go.Bar(x=part["x"], y=part["value"], name=(labels or {}).get(run_id, f"run #{text(run_id)}"),
                             opacity=0.7, marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(barmode="overlay", title="how often each latent fires (held-out tokens)",
                      xaxis_title="firing frequency, log10 (−2: once per 100 tokens; leftmost bin: never fired)",
                      yaxis_title="share of latents", yaxis_tickformat=".0%", height=360, margin=dict(t=40, b=40))
    return legend_below(fig)


def activation_histogram(row: pd.Series) -> go.Figure:
    """One latent's activations on held-out tokens (log10 bins)."""
    centres = 10 ** ((ACT_BINS[:-1] + ACT_BINS[1:]) / 2)
    fig = go.Figure(go.Bar(x=centres, y=list(row["act_hist"]), marker_color=PALETTE[0]))
    fig.update_layout(title=f"latent {int(row['latent'])}: activation histogram", xaxis_type="log",
                      xaxis_title="activation (normalised units, log)", yaxis_title="held-out tokens", height=280,
                      margin=dict(t=40, b=40))
    return fig


def search_features(features: pd.DataFrame, contexts: pd.DataFrame, query: str, by: str = "token") -> pd.DataFrame:
    """Latents whose top contexts contain `query`: as the highlighted token, or anywhere in the text."""
    q = query.strip().lower()
    if not q:
        return features
    if by == "token":
        hit = contexts["token"].str.strip().str.lower().str.lstrip("#") == q.lstrip("#")
    else:
        hit = (contexts["left"] + " " + contexts["token"] + " " + contexts["right"]).str.lower().str.contains(q, regex=False)
    counts = contexts[hit].groupby("latent").size().rename("matches")
    found = features.merge(counts, left_on="latent", right_index=True)
    return found.sort_values("matches", ascending=False)


def match_histogram(matches: pd.DataFrame, label_a: str, label_b: str) -> go.Figure:
    """Best-match cosines of A's latents in B (`sae.compare.match_features`), with the share above
    the 'same feature' threshold."""
    share = float((matches["cosine"] >= MATCH_THRESHOLD).mean()) if len(matches) else 0.0
    fig = go.Figure(go.Histogram(x=matches["cosine"], nbinsx=40, marker_color=PALETTE[0]))
    fig.add_vline(x=MATCH_THRESHOLD, line_dash="dash",
                  annotation_text=f"{share:.0%} of latents matched (cos ≥ {MATCH_THRESHOLD})")
    fig.update_layout(title=f"best decoder-cosine match in {html.escape(label_b)} for each latent of "
                            f"{html.escape(label_a)}", xaxis_title="cosine similarity of decoder directions",
                      yaxis_title="latents",
                      xaxis_range=[-0.05, 1.05], height=320, margin=dict(t=40, b=40))
    return fig
