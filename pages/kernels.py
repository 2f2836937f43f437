"""Kernel latency lab: does sparsity make a layer, or a whole pruned model, faster on this machine?"""

from typing import get_args

import pandas as pd
import streamlit as st

from db import repo
from db.artifacts import ArtifactError
from pages._access import refused
from pages._ui import ErrorPlaces, estimate_line, preset_button, run_label, show_url_run
from sparsity_core.catalog import caps
from sparsity_core.catalog.kernels import LAYOUT_HELP, MODES, PRESETS
from sparsity_core.reports import bundle
from sparsity_core.reports.figures import format_metric, readable_table
from sparsity_core.reports.kernels import (
    auto_table,
    gemv_figure,
    gemv_frame,
    heatmap_figure,
    layer_choice_figure,
    layer_latency_figure,
    model_frame,
    quality_speed_figure,
    speedup_figure,
    sweep_frame,
)
from sparsity_core.specs import KernelSpec

st.title("⏱️ Kernel latency")
st.markdown(
    "Pruning papers count FLOPs; this page measures time. A layer's weight is stored in a sparse "
    "layout (CSR, blocks, 2:4, or a physically smaller layer) and timed side by side with the plain "
    "dense layer, on this machine, for each shape, number of tokens and sparsity. A **speedup** "
    "above 1 means the sparse layout is faster; below 1 (the common case at moderate sparsity) it "
    "is slower, even though it skips the zeros. Every result is checked against the dense output. "
    "Pick a finished pruning run to time its real masks and its whole forward pass.")
preset_button("kernels")

FIELDS = KernelSpec.model_fields
# every field this page sends -> the widget that sets it (its message shows right below); the
# model is the parent run's
PLACES = ErrorPlaces(KernelSpec, {
    "shapes": "k_shapes", "tokens": "k_tokens", "sparsities": "k_sparsities", "layouts": "k_layouts",
    "device": "k_device", "dtype": "k_dtype", "modes": "k_modes", "block": "k_block", "repeats": "k_repeats",
    "parent_run": "k_parent", "model": "k_parent", "name": "k_name"})


def parse_list(text: str, cast):
    try:
        return [cast(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        return None


def parse_shapes(text: str):
    shapes = []
    for part in text.replace(";", ",").split(","):
        if part.strip():
            dims = parse_list(part.lower().replace("x", ","), int)
            if not dims or len(dims) != 2:
                return None
            shapes.append(dims)
    return shapes


def preset_shapes() -> None:
    """Fill the shapes box with the picked preset's shapes (custom keeps what is typed)."""
    shapes = PRESETS.get(st.session_state["k_preset"])
    if shapes:
        st.session_state["k_shapes"] = ", ".join(f"{o}x{i}" for o, i in shapes)


st.selectbox("Layer shapes preset", ["custom", *PRESETS], index=1 + list(PRESETS).index("bert-base"),
             key="k_preset", on_change=preset_shapes)
if "k_shapes" not in st.session_state:
    preset_shapes()
parents = repo.list_runs(kind="prune", status="succeeded", limit=50)

left, right = st.columns(2)
with left:
    shapes_text = st.text_input("Layer shapes (out x in)", key="k_shapes",
                                help=f"comma-separated, e.g. 3072x768, 768x3072; empty: the parent model only. "
                                     f"At most {caps.KERNEL_SHAPES} shapes of {caps.KERNEL_WEIGHTS / 1e6:.0f}M "
                                     f"weights each; the sweep (shapes x tokens x sparsities x layouts x modes) "
                                     f"is at most {caps.KERNEL_SWEEP_POINTS} points, and its largest point must "
                                     f"fit in {caps.KERNEL_MEMORY_SHARE:.0%} of the free memory where it runs")
    PLACES.field_error("shapes")
    tokens_text = st.text_input("Tokens (rows of the input)", "32, 512", key="k_tokens",
                                help=f"comma-separated, each 1 to {caps.KERNEL_TOKENS}; at most "
                                     f"{caps.KERNEL_TOKEN_COUNTS} counts")
    PLACES.field_error("tokens")
    sparsities_text = st.text_input("Sparsities", "0.5, 0.7, 0.9, 0.95", key="k_sparsities",
                                    help=f"comma-separated, each in [0, 1); at most {caps.KERNEL_SPARSITIES}")
    PLACES.field_error("sparsities")
    layouts = st.multiselect("Layouts", list(LAYOUT_HELP), default=["dense", "csr", "shrunk"], key="k_layouts",
                             help="\n".join(f"- **{k}**: {v}" for k, v in LAYOUT_HELP.items()))
    PLACES.field_error("layouts")
with right:
    device = st.radio("Device", get_args(FIELDS["device"].annotation), horizontal=True, key="k_device")
    PLACES.field_error("device")
    dtype = st.selectbox("dtype", get_args(FIELDS["dtype"].annotation), key="k_dtype")
    PLACES.field_error("dtype")
    modes = st.multiselect("Launch modes", list(MODES), default=FIELDS["modes"].default, key="k_modes",
                           help="CUDA graphs and torch.compile try to close the small-batch gap")
    PLACES.field_error("modes")
    block = st.number_input("BSR block", min_value=1, max_value=256, value=FIELDS["block"].default, key="k_block")
    PLACES.field_error("block")
    repeats = st.number_input("Repeats", min_value=caps.KERNEL_REPEATS[0], max_value=caps.KERNEL_REPEATS[1],
                              value=FIELDS["repeats"].default, key="k_repeats",
                              help=f"timed rounds per point, {caps.KERNEL_REPEATS[0]} to {caps.KERNEL_REPEATS[1]}")
    PLACES.field_error("repeats")
    parent = st.selectbox("Pruned model (parent run, optional)", [None, *parents], key="k_parent",
                          format_func=lambda r: "none: layers only" if r is None else run_label(r))
    PLACES.field_error("parent_run")
    PLACES.field_error("model")
    name = st.text_input("Run name (optional)", key="k_name")
    PLACES.field_error("name")

values = {"shapes": parse_shapes(shapes_text), "tokens": parse_list(tokens_text, int),
          "sparsities": parse_list(sparsities_text, float)}
bad = {k: "not a list of numbers" for k, v in values.items() if v is None}
spec = {"kind": "kernel", **values, "layouts": layouts, "device": device, "dtype": dtype, "modes": modes,
        "block": int(block), "repeats": int(repeats), "name": name or None, "parent_run": parent.id if parent else None}
if parent:
    spec["model"] = parent.model
if not bad:
    estimate_line(spec)
if st.button("Measure", type="primary", key="k_submit"):
    if bad:
        PLACES.refuse(bad)
    else:
        PLACES.submit(spec)
PLACES.other_errors()

with st.expander("Import results measured on another machine (JSON bundle from benchmarks/kernels_cuda.py)"):
    upload = st.file_uploader("Bundle", type=["json"], key="k_upload")
    # it adds runs to the store: a session that may not change runs gets one line here instead
    if st.button("Import", key="k_import", disabled=upload is None) and upload is not None and not refused():
        try:
            st.query_params.from_dict({"run": bundle.import_bytes(upload.getvalue(), upload.name)[0]})
            st.rerun()
        except bundle.BundleError as exc:
            st.error(f"not imported, nothing changed: {exc}")


def draw_sweep(frame, run) -> None:
    rows = sweep_frame(frame, run.id)
    if rows.empty:
        return
    shapes, tokens = sorted(set(rows["shape"])), sorted(set(rows["tokens"]))
    a, b = st.columns(2)
    shape = a.selectbox("Shape", shapes)
    n_tokens = b.selectbox("Tokens", tokens)
    st.plotly_chart(speedup_figure(frame, run.id, shape, n_tokens), key="speedup")
    sparse_layouts = sorted(set(rows["layout"]) - {"dense"})
    if sparse_layouts:
        layout = st.selectbox("Heatmap layout", sparse_layouts)
        st.plotly_chart(heatmap_figure(frame, run.id, layout, shape), key="heatmap")
    table = rows[rows["key"].isin(["latency_ms", "speedup", "rel_error"])].pivot_table(
        index=["shape", "tokens", "x", "layout"], columns="key", values="value")
    st.dataframe(table, width="stretch")


def draw_results(run) -> None:
    frame = repo.metrics_frame([run.id])
    device = (run.info or {}).get("device", {})
    st.caption("Measured on: " + ", ".join(f"{k} {v}" for k, v in device.items() if v not in (None, "")))
    unsupported = (run.info or {}).get("unsupported") or {}
    if unsupported:
        with st.expander(f"{len(unsupported)} layout/mode points could not run here, and why"):
            st.table({"series": list(unsupported), "reason": list(unsupported.values())})
    draw_sweep(frame, run)
    draw_gemv(frame, run)
    model = model_frame(frame, run.id)
    if not model.empty:
        st.subheader("The pruned model: real masks, whole forward")
        quality = repo.metrics_frame([run.parent_run_id]) if run.parent_run_id else frame.iloc[0:0]
        st.plotly_chart(quality_speed_figure(model, quality), key="quality")
        st.dataframe(model, width="stretch")
        sparsity = st.selectbox("Per-layer latency at sparsity", list(model["sparsity"]), format_func=percent)
        st.plotly_chart(layer_latency_figure(frame, run.id, sparsity), key="layers")
    draw_auto(run)


def draw_gemv(frame, run) -> None:
    """A WINA / TEAL parent: one token's GEMVs, dense against only the columns its kept inputs need."""
    gemv = gemv_frame(frame, run.id)
    if gemv.empty:
        return
    st.subheader("Activation sparsity at batch 1: dense vs gathered GEMV")
    st.caption("Each prunable layer multiplies one real token's input (captured from the dense model). Dense reads "
               "every weight column; gathered reads only the columns of the inputs the parent's method keeps "
               "(top-k per token), with and without the cost of choosing them, through torch's embedding_bag and, "
               "where a C compiler is there, the lab's own kernel. Milliseconds are per-layer medians summed over "
               "the layers, not a whole decode step.")
    st.plotly_chart(gemv_figure(frame, run.id), key="gemv")
    st.dataframe(readable_table(gemv), hide_index=True, width="stretch")
    sparsity = st.selectbox("Per-layer latency at activation sparsity", list(gemv["activation sparsity"]),
                            format_func=percent, key="k_gemv_sparsity")
    st.plotly_chart(layer_latency_figure(frame, run.id, sparsity), key="gemv_layers")


def percent(sparsity: float) -> str:
    return format_metric("sparsity", sparsity)


def stored_layers(run_id: int) -> pd.DataFrame:
    """The run's `layers` artifact (the layout each layer chose at each sparsity); empty when it has none."""
    try:
        return pd.read_parquet(repo.artifact_path(run_id, "layers"))
    except (KeyError, OSError, ValueError, ArtifactError):  # none stored, or no intact copy here
        return pd.DataFrame()


def draw_auto(run) -> None:
    """What "auto" ran at each sparsity, dense being a candidate, and each layer's layout; nothing
    for a run without these (one from before the whole model was timed against dense)."""
    block = (run.spec or {}).get("block")
    table = auto_table(run.info, block)
    if table.empty:
        return
    st.subheader("What auto picked: the whole model, timed side by side with dense")
    st.caption("At each sparsity the model with every layer in its fastest layout and the plain dense "
               "model ran the same batch in interleaved rounds; auto keeps the faster. So auto ÷ dense is "
               "at most 1: below 1 when the per-layer model won, and a win no larger than the timing "
               "noise (the interquartile range of the rounds) is called 'within noise'.")
    st.dataframe(readable_table(table), hide_index=True, width="stretch")
    layers = stored_layers(run.id)
    if layers.empty or "sparsity" not in layers:
        return
    options = sorted(set(layers["sparsity"].astype(float)))
    sparsity = st.selectbox("Layout chosen per layer at sparsity", options, index=len(options) - 1,
                            format_func=percent, key="k_auto_sparsity")
    st.plotly_chart(layer_choice_figure(layers, sparsity, block), key="layer_choice")
    kept = table[[abs(s - sparsity) < 1e-9 for s in table["sparsity"]]]
    if not kept.empty and kept["against dense"].iloc[0] == "is dense":
        st.caption(f"At {percent(sparsity)} auto kept the dense model: these layouts were timed, not used.")


show_url_run("kernel", draw_results)
