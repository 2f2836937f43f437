"""Figure builders of the kernel latency lab (used by its page, the compare page and the export).

All take the long metrics frame of `db.repo.metrics_frame` (run_id, key, series, x, value).
Sweep series read `layout[+mode]|OUTxIN|TOKENS`; model series `model:dense` / `model:auto`, and
`layout|layer` for per-layer latency (see sparsity_core/kernels/run.py). What the whole-model
"auto" picked comes from the run's info (`auto_table`) and its `layers` artifact (`layer_choice_figure`).
"""

from __future__ import annotations

import html
from typing import Any, Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sparsity_core.reports.figures import (
    MAX_LAYER_ROWS,
    PALETTE,
    ROW_PX,
    axis_format,
    empty,
    group_layers,
    legend_below,
    metric_label,
    series_colours,
)

SEMI24_COMPUTE_BOUND = 2.0  # half the multiply-adds
SEMI24_MEMORY_BOUND = 16 / 9  # fp16: 4 weights = 64 bits dense, 2 x 16 bits + 2 x 2-bit indices = 36 bits


def sweep_frame(frame: pd.DataFrame, run_id: Optional[int] = None) -> pd.DataFrame:
    """Sweep rows only, with `layout`, `shape` and `tokens` columns split out of the series."""
    rows = frame if run_id is None else frame[frame["run_id"] == run_id]
    rows = rows[rows["series"].str.count(r"\|") == 2].copy()
    parts = rows["series"].str.split("|", expand=True)
    if rows.empty:
        return rows.assign(layout=[], shape=[], tokens=[])
    return rows.assign(layout=parts[0], shape=parts[1], tokens=parts[2].astype(int))


def speedup_figure(frame: pd.DataFrame, run_id: int, shape: str, tokens: int) -> go.Figure:
    """Speedup over dense against sparsity, one line per layout, with the break-even line at 1,
    the ideal compute bound 1/(1-s), and for 2:4 its 2x compute and 16/9 memory bounds."""
    rows = sweep_frame(frame, run_id)
    rows = rows[(rows["key"] == "speedup") & (rows["shape"] == shape) & (rows["tokens"] == tokens)
                & (rows["layout"] != "dense")]
    if rows.empty:
        return empty(f"no speedups measured for {shape} at {tokens} tokens", height=300)
    fig = go.Figure()
    colour = series_colours(rows["layout"])
    for layout, part in rows.sort_values("x").groupby("layout", sort=True):
        fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="lines+markers", name=layout,
                                 line={"color": colour[layout]}))
    s = np.linspace(0, max(0.99, rows["x"].max()), 100)
    s = s[s <= max(rows["x"].max(), 0.5)]
    fig.add_trace(go.Scatter(x=s, y=1 / (1 - s), mode="lines", name="ideal 1/(1-s) (compute)",
                             line={"dash": "dot", "color": "grey"}))
    if rows["layout"].str.startswith("semi24").any():
        for bound, label in ((SEMI24_COMPUTE_BOUND, "2:4 compute bound 2x"),
                             (SEMI24_MEMORY_BOUND, "2:4 memory bound 16/9")):
            fig.add_trace(go.Scatter(x=[0.5], y=[bound], mode="markers", name=label,
                                     marker={"symbol": "line-ew-open", "size": 24, "color": "black"}))
    fig.add_hline(y=1.0, line={"color": "black", "dash": "dash"}, annotation_text="break-even (dense)")
    fig.update_yaxes(type="log", title="speedup over dense (×, log; above 1 is faster)")
    fig.update_layout(xaxis_title="sparsity (share of zeros)", xaxis_tickformat=".0%",
                      title=f"{shape} layer, {tokens} tokens", height=440, margin={"t": 50, "b": 40})
    return legend_below(fig)


def heatmap_figure(frame: pd.DataFrame, run_id: int, layout: str, shape: str) -> go.Figure:
    """Speedup of one layout over tokens x sparsity; red where sparse loses, blue where it wins."""
    rows = sweep_frame(frame, run_id)
    rows = rows[(rows["key"] == "speedup") & (rows["layout"] == layout) & (rows["shape"] == shape)]
    if rows.empty:
        return empty(f"no speedups for {layout} on {shape}", height=300)
    grid = rows.pivot_table(index="tokens", columns="x", values="value", aggfunc="median").sort_index()
    z = np.log2(grid.to_numpy())
    # colour is log2 (2x faster and 2x slower equally strong); the bar is labelled in plain speedups
    ticks = [v for v in (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8) if z.min() - 0.5 <= np.log2(v) <= z.max() + 0.5]
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{c:.0%}" for c in grid.columns], y=[str(t) for t in grid.index], zmid=0,
        colorscale="RdBu", text=np.round(grid.to_numpy(), 2), texttemplate="%{text}×",
        colorbar={"title": {"text": "speedup"}, "tickvals": [float(np.log2(v)) for v in ticks],
                  "ticktext": [f"{v:g}×" for v in ticks]},
        hovertemplate="sparsity %{x}, %{y} tokens: %{text}× dense<extra></extra>"))
    # category axes: plotly would read '50%' as the number 50
    fig.update_layout(xaxis_title="sparsity (share of zeros)", xaxis_type="category", yaxis_title="tokens per call",
                      yaxis_type="category",
                      title=f"{layout} vs dense on {shape}: where sparse wins (blue)", height=380)
    return fig


def sweep_table(frame: pd.DataFrame, run_id: int) -> pd.DataFrame:
    """The sweep as a table a reader scans: one row per (shape, tokens, sparsity, layout), the
    sparsity in percent and the columns in plain words."""
    rows = sweep_frame(frame, run_id)
    keys = ["latency_ms", "speedup", "rel_error"]
    rows = rows[rows["key"].isin(keys)]
    if rows.empty:
        return pd.DataFrame(columns=["shape", "tokens", "sparsity", "layout", *map(metric_label, keys)])
    table = rows.pivot_table(index=["shape", "tokens", "x", "layout"], columns="key", values="value").reset_index()
    table["x"] = [f"{x:.0%}" for x in table["x"]]
    table = table.rename(columns={"x": "sparsity", **{k: metric_label(k) for k in keys}})
    return table[[c for c in ["shape", "tokens", "sparsity", "layout", *map(metric_label, keys)] if c in table]]


def model_frame(frame: pd.DataFrame, run_id: int) -> pd.DataFrame:
    """End-to-end rows of a run: sparsity, dense_ms, auto_ms, speedup, rel_error."""
    rows = frame[(frame["run_id"] == run_id) & frame["series"].str.startswith("model:")]
    if rows.empty:
        return pd.DataFrame(columns=["sparsity", "dense_ms", "auto_ms", "speedup", "rel_error"])
    wide = rows.assign(col=rows["key"] + "@" + rows["series"]).pivot_table(index="x", columns="col", values="value")
    return pd.DataFrame({"sparsity": wide.index, "dense_ms": wide.get("latency_ms@model:dense"),
                         "auto_ms": wide.get("latency_ms@model:auto"), "speedup": wide.get("speedup@model:auto"),
                         "rel_error": wide.get("rel_error@model:auto")}).reset_index(drop=True)


def quality_speed_figure(model: pd.DataFrame, quality: pd.DataFrame, quality_key: str = "accuracy") -> go.Figure:
    """The pruned model's measured end-to-end speedup and its quality (from the parent pruning
    run) against sparsity: what the zeros cost and what they buy, in real time, not FLOPs."""
    if model.empty:
        return empty("no end-to-end measurements (the run had no parent pruning run)", height=300)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=model["sparsity"], y=model["speedup"], mode="lines+markers",
                             name="end-to-end speedup", yaxis="y", line={"color": PALETTE[0]}))
    q = quality[(quality["key"] == quality_key) & (quality["series"] == "")].sort_values("x")
    if not q.empty:
        fig.add_trace(go.Scatter(x=q["x"], y=q["value"], mode="lines+markers", name=metric_label(quality_key),
                                 yaxis="y2", line={"dash": "dot", "color": PALETTE[1]}))
    fig.add_hline(y=1.0, line={"color": "black", "dash": "dash"})
    fig.update_layout(xaxis_title="sparsity (share of zeros)", xaxis_tickformat=".0%",
                      yaxis={"title": "speedup over masked dense (×)", "tickformat": "~g"},
                      yaxis2={"title": metric_label(quality_key), "overlaying": "y", "side": "right",
                              **axis_format(quality_key)},
                      title="quality against real speed", height=420)
    return legend_below(fig)


def layer_latency_figure(frame: pd.DataFrame, run_id: int, sparsity: float) -> go.Figure:
    """Per-layer latency of the run's real masks, one bar per layout, at one sparsity."""
    rows = frame[(frame["run_id"] == run_id) & (frame["key"] == "layer_latency_ms")
                 & np.isclose(frame["x"].astype(float), sparsity)]
    if rows.empty:
        return empty(f"no per-layer latencies at sparsity {sparsity:.0%}", height=300)
    parts = rows["series"].str.split("|", n=1, expand=True)
    rows = rows.assign(layout=parts[0], series=parts[1])
    grouped = rows["series"].nunique() > MAX_LAYER_ROWS  # 210 layers of SmolLM2: one bar per block, summed
    if grouped:
        rows = group_layers(rows).groupby(["layout", "block", "block_index"], as_index=False)["value"].sum()
        rows = rows.sort_values("block_index").rename(columns={"block": "series"})
    fig = go.Figure()
    colour = series_colours(rows["layout"])
    for layout, part in rows.groupby("layout", sort=True):
        fig.add_trace(go.Bar(x=part["series"], y=part["value"], name=layout, marker_color=colour[layout]))
    fig.update_layout(barmode="group", yaxis_title="ms per call (median" + (", summed over the block)" if grouped
                                                                            else ")"),
                      yaxis_tickformat="~g", xaxis_title="block" if grouped else "layer", xaxis_type="category",
                      xaxis_tickangle=-45, title=f"each layer's real mask at sparsity {sparsity:.0%}", height=440)
    return legend_below(fig)


# ---------------------------------------------------------------- what "auto" picked
# a layout's name as a reader says it (the catalog's names are identifiers)
LAYOUT_WORDS = {"dense": "dense", "csr": "CSR", "csr_tiled": "CSR (tiled C kernel)", "coo": "COO",
                "bsr": "BSR", "bsr_triton": "BSR (Triton)", "semi24": "2:4 (cuSPARSELt)",
                "semi24_direct": "2:4 (cuSPARSELt, direct)", "semi24_cutlass": "2:4 (CUTLASS)",
                "shrunk": "shrunk dense"}
AUTO_COLUMNS = ["sparsity", "auto picked", "auto (ms)", "dense (ms)", "auto ÷ dense", "per-layer model (ms)",
                "noise (IQR, ms)", "against dense"]


def layout_words(layout: Any, block: Optional[int] = None) -> str:
    """'csr' reads 'CSR', 'bsr' with block 16 'BSR 16x16', 'semi24' '2:4 (cuSPARSELt)'."""
    if layout in ("bsr", "bsr_triton") and block:
        return f"BSR {int(block)}x{int(block)}" + (" (Triton)" if layout == "bsr_triton" else "")
    return LAYOUT_WORDS.get(str(layout), str(layout))


def auto_words(chose: str, counts: Optional[dict[str, int]] = None, block: Optional[int] = None) -> str:
    """What auto ran, in words: 'dense (whole model)', 'CSR in every layer (2)', or the mix
    'per layer: CSR ×2, dense ×1' (`counts`: layout -> layers that chose it, most first)."""
    if chose == "dense":
        return "dense (whole model)"
    counts = {k: int(n) for k, n in (counts or {}).items() if n}
    if len(counts) == 1:
        ((layout, n),) = counts.items()
        return f"{layout_words(layout, block)} in every layer ({n})"
    if not counts:
        return "per-layer layouts"
    mix = sorted(counts.items(), key=lambda kv: (-kv[1], layout_words(kv[0], block)))
    return "per layer: " + ", ".join(f"{layout_words(k, block)} ×{n}" for k, n in mix)


def auto_table(info: Optional[dict], block: Optional[int] = None) -> pd.DataFrame:
    """One row per sparsity of a kernel run's whole-model "auto" pick (`info["model"]["auto"]`,
    see sparsity_core/kernels/run.py): what it ran, its median ms, dense's, their ratio (1 when
    auto kept dense; below 1 when the swapped model won), the swapped model's ms it weighed, the
    timing noise (the larger IQR of the two) and whether auto beat dense beyond that noise.
    Empty (with the columns) for a run without the data, e.g. one from before dense was a candidate."""
    picks = ((info or {}).get("model") or {}).get("auto") or {}
    chosen = ((info or {}).get("model") or {}).get("layouts_chosen") or {}
    rows = []
    for key, pick in picks.items():
        try:
            s, dense_ms, per_layer_ms = float(key), float(pick["dense_ms"]), float(pick["per_layer_ms"])
        except (KeyError, TypeError, ValueError):
            continue  # not this shape: nothing to say about it
        chose = "dense" if pick.get("chose") == "dense" else "per_layer"
        auto_ms = dense_ms if chose == "dense" else per_layer_ms
        iqrs = [pick.get(k) for k in ("dense_iqr_ms", "per_layer_iqr_ms")]
        noise = max((float(v) for v in iqrs if isinstance(v, (int, float))), default=None)
        if chose == "dense":
            verdict = "is dense"
        elif noise is not None and dense_ms - auto_ms <= noise:
            verdict = "same, within noise"
        else:
            verdict = "faster"
        rows.append({"sparsity": s, "auto picked": auto_words(chose, chosen.get(key), block),
                     "auto (ms)": auto_ms, "dense (ms)": dense_ms,
                     "auto ÷ dense": auto_ms / dense_ms if dense_ms > 0 else None,
                     "per-layer model (ms)": per_layer_ms, "noise (IQR, ms)": noise, "against dense": verdict})
    table = pd.DataFrame(rows, columns=AUTO_COLUMNS).sort_values("sparsity", ignore_index=True)
    if table["noise (IQR, ms)"].isna().all():
        table = table.drop(columns=["noise (IQR, ms)"])  # a run that kept no IQRs: no empty column
    table.attrs["metric_keys"] = {"sparsity": "sparsity"}  # readable_table writes it in percent
    return table


def layer_choice_figure(layers: pd.DataFrame, sparsity: float, block: Optional[int] = None) -> go.Figure:
    """The layout each layer chose at one sparsity (the `layers` artifact: layer, layout,
    chosen_ms, dense_ms): a horizontal bar per layer, its length the chosen layout's median ms,
    its colour the layout, with the same layer's dense time as a tick. Beyond MAX_LAYER_ROWS
    layers, one bar per block, stacked by layout and summed."""
    need = {"sparsity", "layer", "layout", "chosen_ms"}
    if layers is None or not need <= set(layers.columns):
        return empty("no per-layer layout choices stored for this run", height=300)
    rows = layers[np.isclose(layers["sparsity"].astype(float), sparsity)].dropna(subset=["layer", "chosen_ms"])
    if rows.empty:
        return empty(f"no per-layer layout choices at sparsity {sparsity:.0%}", height=300)
    rows = rows.assign(series=rows["layer"].astype(str), layout=[layout_words(v, block) for v in rows["layout"]])
    if "dense_ms" not in rows:
        rows = rows.assign(dense_ms=np.nan)
    grouped = rows["series"].nunique() > MAX_LAYER_ROWS  # 210 layers of SmolLM2: one bar per block
    if grouped:
        rows = group_layers(rows)
        order = list(dict.fromkeys(rows.sort_values("block_index", kind="stable")["block"]))
        dense = rows.groupby("block", sort=False)["dense_ms"].sum(min_count=1)
        rows = rows.groupby(["block", "layout"], as_index=False, sort=False)["chosen_ms"].sum()
        rows = rows.rename(columns={"block": "series"})
    else:
        order = list(dict.fromkeys(rows["series"]))  # model order, as the job walked the layers
        dense = rows.groupby("series", sort=False)["dense_ms"].first()
    fig = go.Figure()
    colour = series_colours(rows["layout"])
    what = "block" if grouped else "layer"
    for layout, part in rows.groupby("layout", sort=True):
        fig.add_trace(go.Bar(x=part["chosen_ms"], y=part["series"], orientation="h", name=layout,
                             marker_color=colour[layout],
                             hovertemplate=f"%{{y}}: {html.escape(layout)}, %{{x:.3g}} ms<extra></extra>"))
    dense = dense.dropna()
    if not dense.empty:
        fig.add_trace(go.Scatter(x=dense.to_numpy(), y=list(dense.index), mode="markers",
                                 name=f"dense, same {what}", hovertemplate="%{y}: dense %{x:.3g} ms<extra></extra>",
                                 marker={"symbol": "line-ns-open", "size": 14, "color": "black"}))
    per = "summed over the block" if grouped else "per call"
    fig.update_layout(barmode="stack", xaxis_title=f"median ms of the chosen layout ({per})",
                      xaxis_tickformat="~g", yaxis_title=what,
                      yaxis={"type": "category", "categoryorder": "array", "categoryarray": order,
                             "autorange": "reversed"},  # the first layer on top
                      title=f"layout chosen for each {what} at sparsity {sparsity:.0%}",
                      height=max(len(order), 6) * ROW_PX * 1.5 + 180, margin={"t": 50, "b": 40})
    return legend_below(fig)


# ---------------------------------------------------------------- activation sparsity at batch 1
GEMV_CALLS = {"gemv:gathered": "kept columns only (gathered GEMV)",
              "gemv:topk+gathered": "top-k selection + kept columns",
              "gemv:gathered_c": "kept columns, the lab's C kernel",
              "gemv:gathered_triton": "kept columns, the lab's Triton kernel"}
OWN_COLUMNS = {"gathered_c": "c", "gathered_triton": "triton"}  # call -> suffix of its speedup column


def gemv_frame(frame: pd.DataFrame, run_id: int) -> pd.DataFrame:
    """A WINA / TEAL parent's batch-1 rows (kernels/activation.py): per activation-sparsity target,
    the summed dense, gathered and top-k+gathered ms (and the lab's own kernels', C or Triton, where
    they ran), the speedups and the largest rel_error."""
    rows = frame[(frame["run_id"] == run_id) & frame["series"].astype(str).str.startswith("gemv:")]
    columns = ["activation sparsity", "dense_ms", "gathered_ms", "topk_gathered_ms", "speedup", "rel_error"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    wide = rows.assign(col=rows["key"] + "@" + rows["series"]).pivot_table(index="x", columns="col", values="value")
    get = lambda col: wide[col].to_numpy() if col in wide else np.nan  # noqa: E731
    table = pd.DataFrame({"activation sparsity": wide.index.to_numpy(), "dense_ms": get("latency_ms@gemv:dense"),
                          "gathered_ms": get("latency_ms@gemv:gathered"),
                          "topk_gathered_ms": get("latency_ms@gemv:topk+gathered"),
                          "speedup": get("speedup@gemv:gathered")})
    for call, suffix in OWN_COLUMNS.items():  # absent: no compiler / Triton, another device, an older run
        if f"latency_ms@gemv:{call}" in wide:
            table[f"{call}_ms"] = get(f"latency_ms@gemv:{call}")
            table[f"speedup_{suffix}"] = get(f"speedup@gemv:{call}")
    table["rel_error"] = get("rel_error@gemv:gathered")
    table.attrs["metric_keys"] = {"activation sparsity": "activation_sparsity", "speedup": "speedup",
                                  **{f"speedup_{suffix}": "speedup" for suffix in OWN_COLUMNS.values()}}
    return table


def gemv_figure(frame: pd.DataFrame, run_id: int) -> go.Figure:
    """Batch-1 latency of one token through every prunable layer against activation sparsity:
    the gathered GEMV (with and without its top-k selection) and dense as the reference line."""
    rows = frame[(frame["run_id"] == run_id) & (frame["key"] == "latency_ms")
                 & frame["series"].astype(str).str.startswith("gemv:")]
    if rows.empty:
        return empty("no batch-1 GEMVs timed (the parent is no WINA / TEAL run)", height=300)
    fig = go.Figure()
    dense = rows[rows["series"] == "gemv:dense"].sort_values("x")
    fig.add_trace(go.Scatter(x=dense["x"], y=dense["value"], mode="lines", name="dense GEMV (all columns)",
                             line={"dash": "dash", "color": "black"}))
    for i, (series, name) in enumerate(GEMV_CALLS.items()):
        part = rows[rows["series"] == series].sort_values("x")
        if len(part):
            fig.add_trace(go.Scatter(x=part["x"], y=part["value"], mode="lines+markers", name=name,
                                     line={"color": PALETTE[i]}))
    fig.update_layout(xaxis_title="activation sparsity (share of each layer's inputs skipped)", xaxis_tickformat=".0%",
                      yaxis={"title": "ms per token, summed over the prunable layers (median)", "tickformat": "~g",
                             "rangemode": "tozero"},
                      title="batch 1: what the skipped input columns buy", height=420)
    return legend_below(fig)
