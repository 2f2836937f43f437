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
from plotly.subplots import make_subplots

from sparsity_core.catalog.sae import LETTERS
from sparsity_core.reports.figures import PALETTE, PERCENT_KEYS, empty, legend_below, metric_curve, metric_label, text
from sparsity_core.sae.compare import MATCH_THRESHOLD, match_features, split_counts  # noqa: F401 (for the pages)

FINAL_KEYS = ("l0", "fve", "nmse", "dead_fraction", "eval_dead_fraction", "dense_fraction", "tokens_per_s",
              "ce_recovered",
              "ce_clean", "ce_sae", "ce_zero", "probe_accuracy", "probe_accuracy_clean", "probe_accuracy_zero",
              "embedding_cosine", "embedding_cosine_zero", "cosine_recovered", "absorption_rate", "absorption_fraction",
              "absorption_split", "absorption_latent_f1")
ACT_BINS = np.linspace(-2.0, 1.5, 36)  # must match sparsity_core.sae.features.ACT_BINS (a test checks)
DOWNSTREAM_KEYS = ("ce_recovered", "cosine_recovered", "accuracy_recovered")  # LMs, encoders, MLP classifiers
SOURCE_WORDS = {"sae": "SAE latents", "raw": "raw activations", "pca": "principal components"}
SOURCE_DASH = {"sae": "solid", "raw": "dash", "pca": "dot"}


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


# ---------------------------------------------------------------- the SAEBench-style suite
def downstream_key(frame: pd.DataFrame) -> Optional[str]:
    """The downstream cost these runs measured: CE recovered (LMs), cosine recovered (encoders) or
    accuracy recovered (MLP classifiers); None when none did."""
    keys = set(frame["key"])
    return next((k for k in DOWNSTREAM_KEYS if k in keys or f"sweep_{k}" in keys), None)


def pareto_points(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """(run_id, k, l0, value) of every SAE in `frame`: each point of a run's L0 sweep
    (`sweep_<key>`, x = L0), and a run without a sweep as one point (its final `l0` and `key`)."""
    swept = frame[frame["key"] == f"sweep_{key}"]
    points = [pd.DataFrame({"run_id": swept["run_id"], "k": swept["series"].str.removeprefix("k="),
                            "l0": swept["x"], "value": swept["value"]})]
    finals = frame[frame["x"].isna() & (frame["series"] == "")]
    table = finals.pivot_table(index="run_id", columns="key", values="value", aggfunc="last")
    if {"l0", key} <= set(table.columns):
        alone = table.loc[~table.index.isin(swept["run_id"]), ["l0", key]].dropna()
        points.append(pd.DataFrame({"run_id": alone.index, "k": "", "l0": alone["l0"].to_numpy(),
                                    "value": alone[key].to_numpy()}))
    return pd.concat(points, ignore_index=True).sort_values(["run_id", "l0"], kind="stable")


def pareto_figure(frame: pd.DataFrame, key: str = "fve", labels: Optional[dict[int, str]] = None,
                  groups: Optional[dict[int, str]] = None) -> go.Figure:
    """`key` (FVE, or a downstream cost) against L0 for every SAE of these runs: one line per group
    (`groups`: run -> e.g. its variant, so separate runs of one variant join a line; default one
    per run), L0 on a log axis as SAEBench draws it."""
    points = pareto_points(frame, key)
    if points.empty:
        return empty(f"no SAE here measured {metric_label(key)}")
    names = {r: (groups or {}).get(r) or (labels or {}).get(r, f"run #{text(r)}") for r in points["run_id"].unique()}
    points["group"] = points["run_id"].map(names)
    fig = go.Figure()
    for i, (name, part) in enumerate(points.groupby("group", sort=False)):
        part = part.sort_values("l0")
        hover = [f"{html.escape((labels or {}).get(r, f'run #{text(r)}'))}" + (f", k={k}" if k else "")
                 for r, k in zip(part["run_id"], part["k"])]
        fig.add_trace(go.Scatter(x=part["l0"], y=part["value"], mode="lines+markers", name=html.escape(str(name)),
                                 text=hover, hovertemplate="%{text}<br>L0 %{x:.1f}: %{y:.3f}<extra></extra>",
                                 line_color=PALETTE[i % len(PALETTE)]))
    percent = key in PERCENT_KEYS
    fig.update_layout(title=f"{metric_label(key)} against L0 (each point one SAE)", xaxis_type="log",
                      xaxis_title="L0: active latents per token, held-out (log)", yaxis_title=metric_label(key),
                      yaxis_tickformat=".0%" if percent else "~g", height=360, margin=dict(t=40, b=40))
    return legend_below(fig)


def sparse_probing_figure(frame: pd.DataFrame, labels: Optional[dict[int, str]] = None) -> go.Figure:
    """k-sparse probe accuracy against k, one panel per labelled task: the SAE's latents (solid),
    the raw activations (dashed) and their principal components (dotted); one colour per run."""
    rows = frame[frame["key"] == "sparse_probe_accuracy"]
    if rows.empty:
        return empty("no sparse probing in these runs (tick 'sparse probing' when training)")
    parts = rows["series"].str.split("|", n=1, expand=True)
    rows = rows.assign(task=parts[0], source=parts[1])
    tasks = list(dict.fromkeys(rows["task"]))
    fig = make_subplots(rows=1, cols=len(tasks), shared_yaxes=True, subplot_titles=[t.replace("_", " ") for t in tasks])
    runs = list(dict.fromkeys(rows["run_id"]))
    for col, task in enumerate(tasks, start=1):
        for i, run_id in enumerate(runs):
            for source in SOURCE_WORDS:
                part = rows[(rows["task"] == task) & (rows["source"] == source) & (rows["run_id"] == run_id)]
                if part.empty:
                    continue
                part = part.sort_values("x")
                name = SOURCE_WORDS[source] if len(runs) == 1 else \
                    f"{(labels or {}).get(run_id, f'run #{text(run_id)}')}: {SOURCE_WORDS[source]}"
                colour = PALETTE[list(SOURCE_WORDS).index(source)] if len(runs) == 1 else PALETTE[i % len(PALETTE)]
                fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="lines+markers", name=html.escape(name),
                                         legendgroup=name, showlegend=col == 1, line_color=colour,
                                         line_dash=SOURCE_DASH[source]), row=1, col=col)
    ks = sorted(rows["x"].unique())
    fig.update_xaxes(type="log", tickvals=ks, ticktext=[text(k) for k in ks], title_text="k (dimensions the probe reads)")
    fig.update_yaxes(tickformat=".0%", row=1, col=1, title_text="test accuracy (50% chance)")
    fig.update_layout(title="sparse probing: how well k latents alone tell the classes apart", height=380,
                      margin=dict(t=60, b=40))
    return legend_below(fig)


def absorption_figure(frame: pd.DataFrame) -> go.Figure:
    """Per first letter, the full absorption rate and the absorption fraction (bars side by side);
    letters the ground-truth probe could not read are left out (`sae.absorption`)."""
    rows = frame[frame["key"] == "absorption_by_letter"]
    if rows.empty:
        return empty("no feature absorption in this run (tick 'feature absorption' when training)")
    fig = go.Figure()
    for i, series in enumerate(("full absorption", "absorption fraction")):
        part = rows[rows["series"] == series].sort_values("x")
        fig.add_trace(go.Bar(x=[LETTERS[int(x)].upper() for x in part["x"]], y=part["value"], name=series,
                             marker_color=PALETTE[i]))
    fig.update_layout(title="feature absorption by first letter: how often the letter's own latents are bypassed",
                      barmode="group", xaxis_title="first letter of the word",
                      yaxis_title="share of the probe's correct words", yaxis_tickformat=".0%", height=340,
                      margin=dict(t=40, b=40))
    return legend_below(fig)


def absorption_table(letters: list[dict]) -> pd.DataFrame:
    """One row per scored letter: its main latents, how well they find the letter's words against the
    ground-truth probe, the two rates, and absorbed words with the latent that took each."""
    return pd.DataFrame([{
        "letter": r["letter"].upper(), "main latents": ", ".join(map(str, r["main"])),
        "latents' F1": r["split_f1"][-1], "probe F1": r["probe_f1"], "words probed right": r["true_positives"],
        "full absorption": r["full"], "absorption fraction": r["fraction"],
        "absorbed words (latent that took it)": ", ".join(f"{w} ({j})" for w, j in r["examples"])}
        for r in letters])


def splitting_histogram(children: np.ndarray, label_small: str, label_big: str) -> go.Figure:
    """How many latents of the big dictionary each latent of the small one has above the cosine
    threshold (`sae.compare.split_counts`): 1 kept as it was, 2+ split, 0 not found."""
    top = 5
    binned = np.minimum(np.asarray(children), top)
    counts = np.bincount(binned, minlength=top + 1)
    split = float((binned >= 2).mean()) if len(binned) else 0.0
    ticks = [str(c) for c in range(top)] + [f"{top}+"]
    fig = go.Figure(go.Bar(x=ticks, y=counts, marker_color=PALETTE[0]))
    fig.update_layout(title=f"feature splitting: latents of {html.escape(label_big)} matching each latent of "
                            f"{html.escape(label_small)} (cos > {MATCH_THRESHOLD}); {split:.0%} split into 2 or more",
                      xaxis_title=f"matching latents in {html.escape(label_big)}", xaxis_type="category",
                      yaxis_title=f"latents of {html.escape(label_small)}", height=320, margin=dict(t=40, b=40))
    return fig
