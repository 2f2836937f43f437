"""Comparing runs: the tables and figures of the compare page, the HTML report and the CLI export.

Everything here takes pandas frames (a `Selection`, as `reports.loaders.load_selection` reads it
from the store), never Streamlit state or the store itself, so the page, the HTML export and a
notebook draw the same thing:

    runs, children, metrics = load_selection([3, 7])
    config_table(runs, differences_only=True)       # one column per run, one row per setting
    metric_summary(metrics, runs, how="at", at_x=0.5)
    curves_figures(metrics, runs)                     # each metric vs sparsity, one line per run

The panels of one lab (per-layer sparsity, explanations, SAE features) live with that lab's
builders in reports/{pruning,explain,sae}.py.
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from typing import Any, Iterable, NamedTuple, Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsity_core.reports.figures import (
    axis_format,
    colours,
    empty,
    is_percent,
    label,
    legend_below,
    metric_curve,
    metric_label,
    run_ref,
    series_colours,
)

RUN_COLUMNS = ["id", "kind", "name", "model", "method", "status", "parent_run", "created_at", "notes"]
SUMMARIES = ("last", "min", "max", "at")
# metrics where smaller is better; everything else (accuracy, cosine, ...) is higher-is-better
LOWER_IS_BETTER = {"perplexity", "loss", "mse", "nmse", "latency_ms", "dead_fraction", "l0"}
MAX_SERIES_IN_SUMMARY = 8  # a key with more series (per-layer sparsity) is a figure, not table columns
MAX_PARALLEL_AXES = 6  # more axes than this and parallel coordinates become a tangle of labels
# metrics a parallel-coordinates view starts from, when the runs have them: quality first
PARALLEL_FIRST = ("accuracy", "perplexity", "probe_accuracy", "embedding_cosine", "fve", "ce_recovered", "l0",
                  "speedup", "latency_ms", "sparsity", "pearson_test", "mislabel_auc")
HIDDEN_SETTINGS = ("status", "name", "parent_run")  # one value per run: no pattern to follow across runs
FAILED_MARK = " (failed)"
PARTIAL_NOTE = "Runs marked (failed) stopped early: their metrics are partial, only the targets they reached."


class Selection(NamedTuple):
    """Runs chosen for comparison, their children (latency lives in kernel runs that name a pruning
    run as parent) and the metrics of both, plus those of a chosen child's parent."""

    runs: pd.DataFrame
    children: pd.DataFrame
    metrics: pd.DataFrame


# ---------------------------------------------------------------- runs
def runs_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """One row per run (ORM rows or anything with the same attributes), newest first."""
    rows = [{"id": r.id, "kind": r.kind, "name": r.name, "model": r.model, "method": r.method,
             "status": r.status, "parent_run": r.parent_run_id, "created_at": r.created_at,
             "notes": r.notes, "spec": r.spec or {}, "info": r.info or {}, "error": r.error} for r in runs]
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS + ["spec", "info", "error"])
    return frame.sort_values("id", ascending=False).reset_index(drop=True)


def filter_runs(frame: pd.DataFrame, *, kinds: Iterable[str] = (), models: Iterable[str] = (),
                methods: Iterable[str] = (), statuses: Iterable[str] = (), since: Optional[datetime] = None,
                until: Optional[datetime] = None, text: str = "") -> pd.DataFrame:
    """Runs matching every filter given (an empty filter lets everything through). `text` matches
    name, notes, model or method, case-insensitively; `until` includes that whole day."""
    keep = pd.Series(True, index=frame.index)
    for column, wanted in (("kind", kinds), ("model", models), ("method", methods), ("status", statuses)):
        wanted = list(wanted)
        if wanted:
            keep &= frame[column].isin(wanted)
    if since is not None:
        keep &= frame["created_at"] >= pd.Timestamp(since)
    if until is not None:
        keep &= frame["created_at"] < pd.Timestamp(until) + pd.Timedelta(days=1)
    if text.strip():
        haystack = frame[["name", "notes", "model", "method"]].fillna("").astype(str).agg(" ".join, axis=1)
        keep &= haystack.str.contains(text.strip(), case=False, regex=False)
    return frame[keep]


def parse_ids(text: str) -> list[int]:
    """'3,7, 9' -> [3, 7, 9]; junk is dropped (a hand-edited URL must not break the page)."""
    out: list[int] = []
    for part in str(text or "").split(","):
        part = part.strip()
        if part.isdigit() and int(part) > 0 and int(part) not in out:
            out.append(int(part))
    return out


# ---------------------------------------------------------------- configuration
def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        return {prefix: json.dumps(value)}
    return {prefix: value}


def config_table(runs: pd.DataFrame, differences_only: bool = False) -> pd.DataFrame:
    """Settings side by side: one row per setting (spec fields, evaluation setup from `info`),
    one column per run. With `differences_only`, rows where every run agrees are hidden."""
    columns = {}
    for run in runs.itertuples():
        flat = {"kind": run.kind, "model": run.model, "method": run.method, "status": run.status,
                **_flatten(run.spec), "name": run.name, "parent_run": run_ref(run.parent_run)}
        flat.update(_flatten({k: v for k, v in (run.info or {}).items() if k == "evaluation"}))
        columns[f"#{run.id}"] = {k: v for k, v in flat.items() if k not in ("name", "parent_run") or v}
    table = pd.DataFrame(columns)
    table = table.astype(object).where(table.notna(), "—")
    if differences_only and len(table.columns) > 1:
        same = table.astype(str).nunique(axis=1) == 1
        table = table[~same]
    return table.astype(str)


# ---------------------------------------------------------------- metrics
def metric_column(key: str, series: str) -> str:
    """A summary column: the metric's plain label and its series in words
    ('layer latency (ms), csr_tiled, body.0', never the raw `layer_latency_ms[csr_tiled|body.0]`)."""
    return metric_label(key, series)


def summary_keys(metrics: pd.DataFrame) -> list[tuple[str, str]]:
    """(key, series) pairs worth a table column: all unseriesed keys, and keys with a few series
    (latency per layout), but not per-layer keys with dozens of series."""
    pairs = metrics[["key", "series"]].drop_duplicates()
    counts = pairs.groupby("key")["series"].transform("nunique")
    pairs = pairs[(pairs["series"] == "") | (counts <= MAX_SERIES_IN_SUMMARY)]
    return sorted(map(tuple, pairs.to_numpy()))


def _at(xs: np.ndarray, values: np.ndarray, x: float | np.ndarray) -> np.ndarray:
    """Value at x: exact when measured there, else linear between the nearest measured points,
    NaN outside the measured range (no extrapolation: it would invent numbers). When one x was
    logged twice the later value wins. Plain numpy: this runs once per run and metric."""
    keep = ~np.isnan(xs)
    latest = dict(zip(xs[keep].tolist(), values[keep].tolist()))
    if not latest:
        return np.full(np.shape(x), np.nan)
    px = np.array(sorted(latest))
    out = np.interp(x, px, [latest[v] for v in px])
    return np.where((np.asarray(x) < px[0] - 1e-9) | (np.asarray(x) > px[-1] + 1e-9), np.nan, out)


def summarise(xs: np.ndarray, values: np.ndarray, how: str, at_x: Optional[float] = None) -> float:
    """One number from one run's series of a metric (x and value in logging order); `last` is the
    value at the largest x (the sparsest point), or the last logged when the metric has no x."""
    if how == "last":
        keep = ~np.isnan(xs)
        if not keep.any():
            return float(values[-1])
        return float(values[keep][np.argsort(xs[keep], kind="stable")][-1])
    if how == "min":
        return float(np.nanmin(values))
    if how == "max":
        return float(np.nanmax(values))
    if how == "at":
        if at_x is None:
            raise ValueError("summary 'at' needs an x value")
        return float(_at(xs, values, float(at_x)))
    raise ValueError(f"unknown summary {how!r}; choose one of {', '.join(SUMMARIES)}")


def metric_summary(metrics: pd.DataFrame, runs: pd.DataFrame, how: str = "last",
                   at_x: Optional[float] = None) -> pd.DataFrame:
    """One row per run (in the order of `runs`), one column per metric (its plain label; the key
    of each column is in `.attrs["metric_keys"]`), each cell one summary."""
    if how not in SUMMARIES:
        raise ValueError(f"unknown summary {how!r}; choose one of {', '.join(SUMMARIES)}")
    if how == "at" and at_x is None:
        raise ValueError("summary 'at' needs an x value")
    metrics = metrics[metrics["run_id"].isin(runs["id"])]
    keys = summary_keys(metrics)
    cells = np.full((len(runs), len(keys)), np.nan)
    row_of = {int(r): i for i, r in enumerate(runs["id"])}
    col_of = {k: j for j, k in enumerate(keys)}
    xs, values = metrics["x"].to_numpy(float), metrics["value"].to_numpy(float)
    for (run_id, key, series), idx in metrics.groupby(["run_id", "key", "series"], sort=False).indices.items():
        if (key, series) in col_of:
            cells[row_of[int(run_id)], col_of[(key, series)]] = summarise(xs[idx], values[idx], how, at_x)
    # a failed run's numbers are what it measured before it stopped: marked, so nobody reads them as whole
    failed = set(runs.loc[runs["status"] == "failed", "id"].astype(int)) if "status" in runs else set()
    rows = [run_ref(i) + (FAILED_MARK if int(i) in failed else "") for i in runs["id"]]
    out = pd.DataFrame(cells, index=pd.Index(rows, name="run"),
                       columns=[metric_column(k, s) for k, s in keys])
    out.attrs["metric_keys"] = {metric_column(k, s): k for k, s in keys}
    return out


def has_failed(runs: pd.DataFrame) -> bool:
    return bool((runs["status"] == "failed").any()) if "status" in runs else False


def md_text(value: Any) -> str:
    """Markdown source that shows `value` as the literal text it is: every character but letters,
    digits and spaces becomes a numeric character reference, so no link, image, HTML tag, emphasis
    or bare-URL autolink can form from a run name, note or imported string. The browser's markdown
    renderer decodes the references before it looks for bare URLs, so an invisible word joiner
    (U+2060) also goes between `:` and `//`, `www` and `.`, and after `@`: no autolink can match."""
    text = re.sub(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)", "\u2060", str(value), flags=re.IGNORECASE)
    return "".join(c if c.isalnum() or c == " " else f"&#{ord(c)};" for c in text)


def x_values(metrics: pd.DataFrame) -> list[float]:
    return sorted(float(x) for x in metrics["x"].dropna().unique())


# ---------------------------------------------------------------- figures
def curves_figures(metrics: pd.DataFrame, runs: pd.DataFrame, keys: Optional[list[str]] = None) -> list[go.Figure]:
    """Each metric against x (the target sparsity), one figure per metric (the shared
    `figures.metric_curve`), one line per run, the same colour for a run in every figure.
    Only unseriesed metrics: per-layer ones have their own panel."""
    curves = metrics[(metrics["series"] == "") & metrics["x"].notna() & metrics["run_id"].isin(runs["id"])]
    keys = keys or sorted(curves["key"].unique())
    labels = {int(r.id): label(r) for r in runs.itertuples()}
    by_label = {labels[i]: c for i, c in colours(runs).items()}
    out = []
    for key in keys:
        fig = metric_curve(curves, key, labels)
        for trace in fig.data:
            trace.line.color = by_label.get(trace.name)
        out.append(fig)
    return out or [empty("no metric of the selected runs has an x (sparsity) axis")]


def pareto_front(points: pd.DataFrame, cost: str, quality: str, higher_is_better: bool = True) -> pd.DataFrame:
    """Points no other point beats on both axes (lower cost and better quality), by cost."""
    ordered = points.sort_values([cost, quality], ascending=[True, not higher_is_better])
    score = ordered[quality].to_numpy(float) * (1.0 if higher_is_better else -1.0)
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(score)[:-1]])
    return ordered[score > best_before]


def quality_latency_frame(runs: pd.DataFrame, metrics: pd.DataFrame, quality_key: str,
                          latency_key: str = "latency_ms") -> pd.DataFrame:
    """Join kernel runs to the pruning runs they name as parent: one row per (kernel run, layout,
    sparsity) with the latency measured there and the parent's quality at the same sparsity.
    A kernel run that timed the pruned model itself (series `model:<layout>`) is read from those
    rows only; its synthetic-shape sweep (`layout|OUTxIN|TOKENS`) says nothing about that model."""
    columns = ["kernel_run", "pruning_run", "layout", "sparsity", latency_key, quality_key]
    kernels = runs[(runs["kind"] == "kernel") & runs["parent_run"].notna()]
    quality = metrics[(metrics["key"] == quality_key) & (metrics["series"] == "")]
    quality = {int(r): g for r, g in quality.groupby("run_id")}
    latency = metrics[(metrics["key"] == latency_key) & metrics["x"].notna()]
    latency = {int(r): g for r, g in latency.groupby("run_id")}
    parts = []
    for kernel_id, parent in zip(kernels["id"].astype(int), kernels["parent_run"].astype(int)):
        if parent not in quality or kernel_id not in latency:
            continue
        lat = latency[kernel_id]
        whole_model = lat[lat["series"].str.startswith("model:")]
        lat = whole_model if len(whole_model) else lat[~lat["series"].str.contains("|", regex=False)]
        q = quality[parent]
        parts.append(pd.DataFrame({
            "kernel_run": kernel_id, "pruning_run": parent,
            "layout": lat["series"].str.removeprefix("model:").replace("", "dense").to_numpy(),
            "sparsity": lat["x"].to_numpy(float), latency_key: lat["value"].to_numpy(float),
            quality_key: _at(q["x"].to_numpy(float), q["value"].to_numpy(float), lat["x"].to_numpy(float))}))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True).dropna(subset=[quality_key])[columns].reset_index(drop=True)


def quality_latency_figure(points: pd.DataFrame, quality_key: str, latency_key: str = "latency_ms") -> go.Figure:
    """Measured latency against quality, one marker per (layout, sparsity), with the Pareto front:
    the settings worth choosing, since every other point is slower and no better."""
    if points.empty:
        return empty("no kernel (latency) run names a selected pruning run as its parent, "
                      "or their sparsities do not overlap")
    higher = quality_key not in LOWER_IS_BETTER
    fig = go.Figure()
    colour = series_colours(points["layout"])
    for layout, group in points.groupby("layout", sort=True):
        fig.add_trace(go.Scatter(
            x=group[latency_key], y=group[quality_key], mode="markers", name=html.escape(str(layout)),
            text=[f"pruning #{p} · kernel #{k} · sparsity {s:.0%}" for p, k, s in
                  zip(group["pruning_run"], group["kernel_run"], group["sparsity"])],
            hovertemplate="%{text}<br>%{x:.3g} ms, %{y:.4g}<extra></extra>",
            marker={"size": 9, "color": colour[layout]}))
    front = pareto_front(points, latency_key, quality_key, higher)
    fig.add_trace(go.Scatter(x=front[latency_key], y=front[quality_key], mode="lines", name="Pareto front",
                             line={"color": "black", "dash": "dash", "shape": "hv"}))
    fig.update_layout(xaxis_title=f"{metric_label(latency_key)}, lower is better",
                      yaxis_title=f"{metric_label(quality_key)}, {'higher' if higher else 'lower'} is better",
                      title=f"{metric_label(quality_key)} against measured latency", height=440)
    fig.update_xaxes(tickformat="~g")
    fig.update_yaxes(**axis_format(quality_key))
    return legend_below(fig)


def parallel_axes(runs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Every axis parallel coordinates can draw: the settings that differ between the runs (not
    those with one value per run, like the name), then the metric summaries that have a value."""
    config = config_table(runs, differences_only=True).T if len(runs) else pd.DataFrame()
    settings = [c for c in config.columns if c not in HIDDEN_SETTINGS]
    metrics = [c for c in summary.columns if summary[c].astype(float).notna().any()]
    return settings + [m for m in metrics if m not in settings]


def default_parallel_axes(runs: pd.DataFrame, summary: pd.DataFrame, max_axes: int = MAX_PARALLEL_AXES) -> list[str]:
    """A readable start: up to half the axes from the settings that group the runs (fewest
    distinct values first), the rest from the metrics, quality before cost, whole-run before
    per-series ones."""
    axes = parallel_axes(runs, summary)
    keys = summary.attrs.get("metric_keys", {})
    metrics = [a for a in axes if a in summary.columns]
    config = config_table(runs, differences_only=True).T if len(runs) else pd.DataFrame()
    settings = sorted((a for a in axes if a not in metrics), key=lambda c: config[c].nunique())
    rank = {k: i for i, k in enumerate(PARALLEL_FIRST)}
    metrics.sort(key=lambda c: (c != metric_label(keys.get(c, c)), rank.get(keys.get(c, c), len(rank))))
    n_settings = min(len(settings), max(max_axes // 2, max_axes - len(metrics)))
    return settings[:n_settings] + metrics[:max_axes - n_settings]


def parallel_figure(runs: pd.DataFrame, summary: pd.DataFrame, axes: Optional[list[str]] = None,
                    max_axes: int = MAX_PARALLEL_AXES) -> go.Figure:
    """Parallel coordinates: one line per run through the chosen `axes` (settings that differ and
    metric summaries; `parallel_axes` lists them, by default `default_parallel_axes`, at most
    `max_axes`), coloured by the first metric, so a pattern (method -> accuracy) shows as a bundle."""
    axes = (axes if axes is not None else default_parallel_axes(runs, summary, max_axes))[:max_axes]
    config = config_table(runs, differences_only=True).T if len(runs) else pd.DataFrame()
    keys = summary.attrs.get("metric_keys", {})
    dims = []
    for column in axes:
        if column in summary.columns:
            values = summary[column].astype(float)
            if values.notna().any():
                dims.append({"label": html.escape(column), "values": values.fillna(values.min()).tolist(),
                             **axis_format(keys.get(column, column))})
        elif column in config.columns:
            dims.append(_dimension(column, config[column]))
    if not dims:
        return empty("select runs with metrics or differing settings")
    metric = next((c for c in axes if c in summary.columns and summary[c].notna().any()), None)
    colour = summary[metric].astype(float).fillna(summary[metric].min()).tolist() if metric else list(range(len(runs)))
    bar = {"title": {"text": html.escape(metric or "run order")},
           **(axis_format(keys.get(metric, metric)) if metric else {})}
    fig = go.Figure(go.Parcoords(dimensions=dims, line={"color": colour, "colorscale": "Viridis", "showscale": True,
                                                        "colorbar": bar}))
    fig.update_layout(height=440, margin={"l": 60, "r": 80, "t": 60})
    return fig


def _dimension(name: str, values: pd.Series) -> dict[str, Any]:
    numeric = pd.to_numeric(values.replace("—", np.nan), errors="coerce")
    if numeric.notna().all():
        return {"label": html.escape(name), "values": numeric.tolist(), "tickformat": "~g"}
    cats = sorted(values.unique())
    codes = [cats.index(v) for v in values]
    return {"label": html.escape(name), "values": codes, "tickvals": list(range(len(cats))),
            "ticktext": [html.escape(str(c))[:24] for c in cats]}


def percent_columns(summary: pd.DataFrame) -> list[str]:
    """Summary columns that hold fractions (for a page's percent column format)."""
    keys = summary.attrs.get("metric_keys", {})
    return [c for c in summary.columns if is_percent(keys.get(c, c))]
