"""Figure builders shared by the pages, the compare page and the HTML export, and their parts:
plain labels and one-line help for every metric the labs write, one unit for sparsity (percent),
one qualitative palette, and the per-layer views that stay readable at 200+ layers.

Each builder takes a long-format metrics frame (run_id, key, series, x, value, as
`db.repo.metrics_frame` returns) and returns a plotly Figure; nothing here reads Streamlit state
or the store.
"""

from __future__ import annotations

import html
import math
import numbers
import re
from typing import Any, Iterable, Optional

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sparsity_core.catalog.sae import SWEEP_KEYS

# key -> (plain label, one-line help), for every metric the labs write (a test scans the labs)
METRIC_LABELS: dict[str, tuple[str, str]] = {
    # pruning
    "sparsity": ("measured sparsity", "share of the pruned layers' weights that are exactly zero, counted after pruning"),
    "layer_sparsity": ("sparsity of the layer", "share of this layer's weights that are exactly zero"),
    "layer_target": ("allocated sparsity of the layer",
                     "the share of this layer's weights an OWL / ERK allocation asked to prune at this target"),
    "unit_sparsity": ("units removed", "structured pruning: share of neurons, heads or channels taken out"),
    "schedule_sparsity": ("scheduled sparsity", "the sparsity the gradual (cubic) schedule asks for at this step"),
    "model_params": ("model parameters", "parameters of the whole model after pruning (structured pruning shrinks it)"),
    "nonzeros": ("nonzero weights", "weights of the pruned layers that are not zero"),
    "params": ("weights in pruned layers", "every weight of the layers pruning works on, zero or not"),
    "bytes_dense": ("size stored dense (bytes)", "the pruned layers stored as plain dense matrices, zeros included"),
    "bytes_csr": ("size stored as CSR (bytes)", "values plus a 4-byte column index per nonzero, and row pointers"),
    "bytes_2to4": ("size stored as 2:4 (bytes)", "half the values plus 2 bits of position each; 2:4 masks only"),
    "accuracy": ("accuracy", "share of test examples the model classifies correctly (higher is better)"),
    "embedding_cosine": ("cosine to dense embeddings",
                         "how close the sentence embeddings stay to the dense model's: 1 is identical"),
    "perplexity": ("perplexity (lower is better)",
                   "exp of the mean next-token loss on held-out text: the number of words the model hesitates between"),
    "train_loss": ("training loss", "loss of the recovery fine-tune or distillation at each optimizer step"),
    "activation_sparsity": ("measured activation sparsity",
                            "WINA / TEAL: share of the layers' input elements skipped, per token, over the evaluation"),
    "layer_activation_sparsity": ("activation sparsity of the layer",
                                  "share of this layer's input elements skipped, per token"),
    "layer_activation_zeros": ("zero inputs of the layer",
                               "share of this layer's inputs exactly zero after activation sparsity, its own zeros included"),
    "activation_zeros": ("zero inputs", "share of the layers' inputs exactly zero after activation sparsity, "
                                        "the model's own zeros (e.g. after ReLU) included"),
    # kernels
    "latency_ms": ("latency (ms)", "median wall-clock time of one call, in milliseconds (lower is better)"),
    "latency_iqr_ms": ("latency spread (ms)", "interquartile range of the timed calls: how noisy the timing is"),
    "layer_latency_ms": ("layer latency (ms)", "median time of one call of a layer with the run's real mask"),
    "speedup": ("speedup over dense (×)", "dense time / sparse time: above 1 the sparse layout is faster, below slower"),
    "rel_error": ("relative error vs dense",
                  "|sparse output − dense output| / |dense output|: about 1e-6 is float rounding, more is a bug"),
    # explanations
    "attribution_delta": ("attribution convergence delta",
                          "integrated gradients' own check: how far the attributions' sum misses the output change"),
    "precompute_s": ("representer fit time (s)", "seconds to fit the representer weights (alpha) once"),
    "grad_norm_start": ("gradient norm before the fit", "how far the classifier head is from the fit's optimum"),
    "grad_norm_final": ("gradient norm after the fit", "near 0: the representer fit found its optimum"),
    "fit_iterations": ("fit iterations", "optimizer iterations the representer fit took"),
    "pearson_train": ("reconstruction r, training points",
                      "Pearson r between the model's probabilities and the decomposition's: 1 is exact"),
    "pearson_test": ("reconstruction r, test points",
                     "Pearson r between the model's probabilities and the decomposition's: 1 is exact"),
    "featurize_ms": ("feature extraction time (ms)", "time to compute the features of the training set"),
    "explain_ms": ("explanation time (ms)", "time to explain one prediction once alpha is fitted (median)"),
    "tracin_topk_s": ("TracIn top-k time (s)", "seconds captum's TracInCPFast takes for the same top-k"),
    "similarity_topk_s": ("similarity top-k time (s)", "seconds captum's SimilarityInfluence takes for the top-k"),
    "topk_overlap": ("top-k shared with captum", "share of captum's top-k training points the representer lists too"),
    "mislabel_found": ("flipped labels found",
                       "share of deliberately flipped training labels found after inspecting the top of a ranking"),
    "mislabel_auc": ("flipped-label search score", "area under found vs inspected: 1 finds all at once, 0.5 is random"),
    # sparse autoencoders
    "train_l0": ("L0 while training", "active latents per token on the training batches"),
    "train_fve": ("FVE while training", "fraction of variance explained on the training batches"),
    "train_mse": ("reconstruction error while training", "mean squared error on the training batches"),
    "coeff": ("penalty coefficient", "weight of the sparsity penalty at this point of training"),
    "dead_fraction": ("dead latents", "share of latents that did not fire in the last window of training tokens"),
    "eval_dead_fraction": ("dead latents, held-out", "share of latents that never fired on the held-out tokens"),
    "log_density": ("share of latents", "how often each latent fires, as a histogram over log10(frequency)"),
    "l0": ("L0 (active latents per token)", "how many latents are nonzero for one token on average: lower is sparser"),
    "fve": ("FVE (fraction of variance explained)",
            "1 − error / variance of the activations: 1 is perfect, 0 is as good as predicting the mean"),
    "nmse": ("NMSE (normalised reconstruction error)", "squared error / squared activation norm: 0 is perfect"),
    "tokens_per_s": ("training speed (tokens/s)", "activation tokens the SAE trained on per second"),
    "ce_recovered": ("CE loss recovered",
                     "next-token loss kept with the SAE spliced in: 100% as good as the model, 0% as bad as zeroing"),
    "ce_clean": ("CE loss, model as is", "mean next-token cross-entropy of the unchanged model (nats)"),
    "ce_sae": ("CE loss, SAE spliced in", "mean next-token cross-entropy with the layer replaced by the SAE (nats)"),
    "ce_zero": ("CE loss, layer zeroed", "mean next-token cross-entropy with the layer's output set to zero (nats)"),
    "probe_accuracy": ("probe accuracy, SAE spliced in", "a linear probe's accuracy on the model with the SAE"),
    "probe_accuracy_clean": ("probe accuracy, model as is", "a linear probe's accuracy on the unchanged model"),
    "probe_accuracy_zero": ("probe accuracy, layer zeroed", "a linear probe's accuracy with the layer zeroed"),
    "embedding_cosine_zero": ("cosine to clean embeddings, layer zeroed",
                              "sentence embeddings with the layer zeroed against the unchanged model's"),
    "cosine_recovered": ("cosine recovered",
                         "embedding similarity kept with the SAE: 100% as good as the model, 0% as bad as zeroing"),
    # the SAEBench-style suite (sae/probing.py, sae/metrics.dense_and_dead)
    "dense_fraction": ("dense latents, held-out",
                       "share of latents firing on more than 10% of held-out tokens: a latent that dense seldom "
                       "means one thing (lower is better)"),
    "accuracy_recovered": ("accuracy recovered",
                           "classifier accuracy kept with the SAE: 100% as good as the model, 0% as bad as zeroing"),
    "sparse_probe_accuracy": ("k-sparse probe accuracy",
                              "a logistic regression on the k latents (or dimensions, or principal components) whose "
                              "class means differ most, one class against the rest, balanced: 50% is chance"),
    # feature absorption (sae/absorption.py)
    "absorption_rate": ("full absorption rate",
                        "share of the words a first-letter probe reads right on which the letter's own latents stay "
                        "silent and one other latent carries the letter instead (lower is better)"),
    "absorption_fraction": ("absorption fraction",
                            "share of a word's first-letter direction carried by other latents in place of the "
                            "letter's own, averaged over words and letters (lower is better)"),
    "absorption_split": ("main latents per letter",
                         "latents a k-sparse probe needs for 'starts with <letter>': more than 1 is feature splitting"),
    "absorption_latent_f1": ("letter latents' F1",
                             "how well the letters' main latents alone find the words of their letter (1 is "
                             "perfect); far below the probe's, the SAE has few letter latents to absorb from"),
    "absorption_by_letter": ("absorption by first letter", "full absorption rate and absorption fraction, per letter"),
}
# an SAE run's L0 sweep stores each swept metric again as sweep_<key>, x = that SAE's measured L0
METRIC_LABELS.update({f"sweep_{key}": (f"{METRIC_LABELS[key][0]}, L0 sweep",
                                       f"{METRIC_LABELS[key][1]} (one SAE of the sweep; x: its L0)")
                      for key in SWEEP_KEYS})
# fractions of a whole, shown as percent on every axis, colour bar and table
PERCENT_KEYS = frozenset({
    "sparsity", "layer_sparsity", "layer_target", "unit_sparsity", "schedule_sparsity", "accuracy", "activation_sparsity",
    "layer_activation_sparsity", "layer_activation_zeros", "activation_zeros", "topk_overlap", "mislabel_found",
    "dead_fraction", "eval_dead_fraction", "log_density", "ce_recovered", "cosine_recovered", "probe_accuracy",
    "probe_accuracy_clean", "probe_accuracy_zero", "dense_fraction", "accuracy_recovered", "sparse_probe_accuracy",
    "absorption_rate", "absorption_fraction", "absorption_by_letter"})
PERCENT_KEYS |= {f"sweep_{key}" for key in SWEEP_KEYS if key in PERCENT_KEYS}
# below these a number needs a word: it is worse than the trivial baseline the metric is built on
WORSE_THAN = {"fve": "worse than predicting the mean", "train_fve": "worse than predicting the mean",
              "ce_recovered": "worse than zeroing the layer", "cosine_recovered": "worse than zeroing the layer"}
SERIES_WORDS = {"model:dense": "whole model, dense", "model:auto": "whole model, auto",
                "model:per_layer": "whole model, per-layer best", "gemv:dense": "batch-1 GEMVs, dense",
                "gemv:gathered": "batch-1 GEMVs, kept columns only",
                "gemv:topk+gathered": "batch-1 GEMVs, top-k selection + kept columns"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]  # tab10: ten colours a reader tells apart; series beyond ten repeat
MAX_LAYER_ROWS = 30  # more layers than this are grouped by block (SmolLM2: 210 layers -> 30 blocks)
MAX_PANELS = 5  # targets drawn side by side in the grouped heatmap
ROW_PX = 18
_RAW_KEY = re.compile(r"^([^\[\]]+)\[(.*)\]$")


# ---------------------------------------------------------------- words
def _base(key: str) -> tuple[str, str]:
    """A metric's own key and the prefix words: `dense_accuracy` is accuracy of the dense model."""
    if key not in METRIC_LABELS and key.startswith("dense_") and key[6:] in METRIC_LABELS:
        return key[6:], "dense model: "
    return key, ""


def metric_label(key: str, series: str = "") -> str:
    """The plain label of a metric key, with its series in words: `layer_latency_ms`, `csr|body.0`
    (or the raw column `layer_latency_ms[csr|body.0]`) reads 'layer latency (ms), csr, body.0'."""
    match = _RAW_KEY.match(key) if not series else None
    if match:
        key, series = match.groups()
    base, prefix = _base(key)
    text = prefix + METRIC_LABELS.get(base, (base.replace("_", " "), ""))[0]
    return f"{text}, {series_words(series)}" if series else text


def series_words(series: str) -> str:
    """A series in words: 'csr|3072x768|32' is 'csr, 3072x768 layer, 32 tokens'."""
    if series in SERIES_WORDS:
        return SERIES_WORDS[series]
    parts = series.split("|")
    if len(parts) == 3 and parts[2].isdigit():
        return f"{parts[0]}, {parts[1]} layer, {parts[2]} tokens"
    return ", ".join(p.removeprefix("model:") for p in parts)


def metric_help(key: str) -> str:
    """One line that says what the metric measures and which way is better ('' when unknown)."""
    match = _RAW_KEY.match(key)
    base = _base(match.group(1) if match else key)[0]
    return METRIC_LABELS.get(base, ("", ""))[1]


def is_percent(key: str) -> bool:
    match = _RAW_KEY.match(key)
    return _base(match.group(1) if match else key)[0] in PERCENT_KEYS


def metric_word(key: str, value: Optional[float]) -> str:
    """A word a bare number needs: FVE -0.13 is 'worse than predicting the mean' ('' otherwise)."""
    base = _base(key)[0]
    if base in WORSE_THAN and value is not None and not math.isnan(value) and value < 0:
        return WORSE_THAN[base]
    return ""


def format_metric(key: str, value: Any) -> str:
    """One value as a reader should see it: percent for fractions, plain decimals, '' for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    if is_percent(key):
        text = f"{value:.0%}" if abs(value * 100 - round(value * 100)) < 1e-6 else f"{value:.1%}"
    elif value.is_integer() and abs(value) >= 1e4:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.4g}"
    word = metric_word(key, value)
    return f"{text} ({word})" if word else text


def axis_format(key: str) -> dict[str, str]:
    """Tick format of an axis (or colour bar) that shows `key`: percent for fractions, else plain
    numbers (plotly's default writes 0.0003 as '300μ')."""
    # ".2~%": 50%, 12.3%, 0.05% (".0%" wrote every tick of a 0..0.1% dead-latent axis as "0%")
    return {"tickformat": ".2~%"} if is_percent(key) else {"tickformat": "~g"}


def text(value: Any) -> str:
    """A cell or label part: '' for None / NaN, whole floats as integers (a run id 2.0 is 2)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def run_ref(run_id: Any) -> str:
    """'#7' for a run id however it was stored (7, 7.0, '7'); '' for none."""
    value = text(run_id)
    return f"#{value}" if value else ""


def label(run: Any, escape: bool = True) -> str:
    """'#7 magnitude · digits-mlp “name”' ('#7 kernel · digits-mlp' when a run has no method),
    with the user's text escaped: plotly renders a few HTML tags in labels, so a run named
    <b>x</b> must show as typed, not bold (or worse). Widgets show text as typed already: they
    take escape=False."""
    get = run.get if isinstance(run, (dict, pd.Series)) else lambda k: getattr(run, k, None)
    name, model = text(get("name")), text(get("model"))
    out = f"{run_ref(get('id'))} {text(get('method')) or text(get('kind'))}" + (f" · {model}" if model else "")
    if name:
        out += f" “{name}”"
    return html.escape(out) if escape else out


# ---------------------------------------------------------------- colours and layout
def colours(runs: pd.DataFrame) -> dict[int, str]:
    """One colour per run of a runs frame, in its order: the same run keeps it in every figure."""
    return {int(r): PALETTE[i % len(PALETTE)] for i, r in enumerate(runs["id"])}


def series_colours(names: Iterable[Any]) -> dict[Any, str]:
    """One palette colour per distinct name, in sorted order, so a layout (or split) has the same
    colour in every figure that shows the same set."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(sorted(set(names), key=str))}


def legend_below(fig: go.Figure) -> go.Figure:
    """A horizontal legend under the plot: it takes a strip, not half the width."""
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0,
                              "title_text": ""})
    return fig


def empty(message: str, height: int = 200) -> go.Figure:
    """A blank figure that says why there is nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(text=html.escape(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(height=height, xaxis_visible=False, yaxis_visible=False)
    return fig


# ---------------------------------------------------------------- curves
def metric_curve(frame: pd.DataFrame, key: str, run_labels: Optional[dict[int, str]] = None,
                 x_title: str = "target sparsity", x_percent: bool = True) -> go.Figure:
    """One line per run, one colour each: `key` against x (the target sparsity, in percent, unless
    `x_percent` is False: SAE curves run against tokens)."""
    fig = go.Figure()
    rows = frame[(frame["key"] == key) & (frame["series"] == "")].sort_values("x")
    for i, (run_id, part) in enumerate(rows.groupby("run_id", sort=True)):
        name = (run_labels or {}).get(run_id, f"run #{text(run_id)}")
        fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="lines+markers", name=name,
                                 line={"color": PALETTE[i % len(PALETTE)]}))
    title = metric_label(key)
    fig.update_layout(xaxis_title=x_title, yaxis_title=title, title=title, margin=dict(t=40, b=40), height=380)
    fig.update_xaxes(**({"tickformat": ".0%"} if x_percent else {"tickformat": "~s"}))
    # a log axis keeps plotly's own 1-2-5 labels: a tick format would label every minor tick
    fig.update_yaxes(**({"type": "log"} if key == "perplexity" else axis_format(key)))
    return legend_below(fig)


# ---------------------------------------------------------------- per layer
def block_of(name: str) -> tuple[Optional[int], str]:
    """(block index, layer kind) of a qualified layer name: 'model.layers.3.self_attn.q_proj' is
    block 3, kind 'self_attn.q_proj'; a name without an index is (None, name)."""
    parts = name.split(".")
    at = next((i for i, p in enumerate(parts) if p.isdigit()), None)
    if at is None:
        return None, name
    return int(parts[at]), ".".join(parts[at + 1:]) or ".".join(parts[:at]) or name


def _short_kinds(kinds: list[str]) -> dict[str, str]:
    """Each kind by its shortest dotted suffix no other kind shares ('q_proj'; BERT's three
    '.dense' layers keep 'attention.output.dense', 'intermediate.dense', 'output.dense')."""
    out = {}
    for kind in kinds:
        parts = kind.split(".")
        for depth in range(1, len(parts) + 1):
            tail = ".".join(parts[-depth:])
            if depth == len(parts) or not any(k != kind and ".".join(k.split(".")[-depth:]) == tail for k in kinds):
                out[kind] = tail
                break
    return out


def group_layers(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-layer rows (series = layer name) with `block` ('block 3', or the name itself when it
    has no index) and short `kind` columns, blocks in model order."""
    parsed = [block_of(s) for s in rows["series"]]
    kinds = _short_kinds(list(dict.fromkeys(kind for _, kind in parsed)))
    return rows.assign(block_index=[-1 if b is None else b for b, _ in parsed],
                       block=[s if b is None else f"block {b}" for s, (b, _) in zip(rows["series"], parsed)],
                       kind=[kinds[kind] for _, kind in parsed])


def _targets(xs: list[float], targets: Optional[Iterable[float]]) -> list[float]:
    if targets is not None:
        wanted = [float(t) for t in targets]
        return [x for x in xs if any(math.isclose(x, t) for t in wanted)]
    if len(xs) <= MAX_PANELS:
        return xs
    step = (len(xs) - 1) / (MAX_PANELS - 1)  # evenly spread, the first and the sparsest kept
    return [xs[round(i * step)] for i in range(MAX_PANELS)]


def layer_sparsity_heatmap(frame: pd.DataFrame, run_id: int, max_rows: int = MAX_LAYER_ROWS,
                           targets: Optional[Iterable[float]] = None) -> go.Figure:
    """Measured sparsity of every layer at every target, on the same 0-100% scale as the curve.

    Up to `max_rows` layers: one row per layer, one column per target. More (SmolLM2 has 210):
    one panel per target (at most MAX_PANELS, or the `targets` given), rows = blocks, columns =
    the layer kind, so a global threshold's uneven layers still show and the figure stays short."""
    rows = frame[(frame["run_id"] == run_id) & (frame["key"] == "layer_sparsity")]
    if rows.empty:
        return empty("no per-layer sparsity measured in this run")
    colour = {"colorscale": "Viridis", "cmin": 0, "cmax": 1,
              "colorbar": {"title": {"text": "zeros"}, "tickformat": ".0%"}}
    layers = rows["series"].unique()
    if len(layers) <= max_rows:
        table = rows.pivot_table(index="series", columns="x", values="value", sort=False)
        fig = go.Figure(go.Heatmap(z=table.values, x=list(table.columns), y=list(table.index), coloraxis="coloraxis",
                                   hovertemplate="%{y} at target %{x:.0%}: %{z:.1%} zeros<extra></extra>"))
        fig.update_xaxes(tickvals=list(table.columns), tickformat=".0%", title_text="target sparsity")
        fig.update_yaxes(type="category", title_text="layer", autorange="reversed")
        fig.update_layout(title_text="measured sparsity per layer")
        n_rows = len(table)
    else:
        grouped = group_layers(rows)
        xs = _targets(sorted(float(x) for x in grouped["x"].unique()), targets)
        blocks = grouped.drop_duplicates("block").sort_values("block_index")["block"].tolist()
        kinds = list(dict.fromkeys(grouped["kind"]))
        shown = "" if len(xs) == grouped["x"].nunique() else f" ({len(xs)} of {grouped['x'].nunique()} targets)"
        fig = make_subplots(rows=1, cols=len(xs), shared_yaxes=True, horizontal_spacing=0.02,
                            subplot_titles=[f"target {x:.0%}" for x in xs])
        for col, x in enumerate(xs, start=1):
            part = grouped[grouped["x"].astype(float).map(lambda v, x=x: math.isclose(v, x))]
            table = part.pivot_table(index="block", columns="kind", values="value", aggfunc="mean")
            table = table.reindex(index=blocks, columns=kinds)
            fig.add_trace(go.Heatmap(z=table.values, x=kinds, y=blocks, coloraxis="coloraxis",
                                     hovertemplate="%{y}, %{x}: %{z:.1%} zeros<extra></extra>"), row=1, col=col)
        fig.update_xaxes(type="category", tickangle=-45)
        fig.update_yaxes(type="category", autorange="reversed")
        fig.update_yaxes(title_text="block", row=1, col=1)
        fig.update_layout(title_text=f"measured sparsity per layer, by block and layer kind{shown}")
        n_rows = len(blocks)
    fig.update_layout(coloraxis=colour, height=min(max_rows, max(n_rows, 8)) * ROW_PX + 160,
                      margin=dict(t=60, b=40))
    return fig


# ---------------------------------------------------------------- tables
def readable_table(frame: pd.DataFrame, keys: Optional[dict[str, str]] = None) -> pd.DataFrame:
    """A table as text a reader sees: each cell by `format_metric` of its column's metric key
    (`keys` maps column -> key; by default `frame.attrs['metric_keys']`, then the column name),
    so sparsity reads '50%', 1234567 reads '1,234,567', and a missing value is an empty cell."""
    keys = {**frame.attrs.get("metric_keys", {}), **(keys or {})}
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        key = keys.get(column, str(column))
        out[column] = [format_metric(key, v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else text(v)
                       for v in frame[column]]
    return out
