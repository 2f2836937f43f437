"""Explanations lab: which training examples made the model say what it said (representer points)."""

import json

import pandas as pd
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from db import repo
from pages._ui import ErrorPlaces, estimate_line, preset_button, run_label, show_url_run
from sparsity_core.catalog import MODELS, model_entry
from sparsity_core.catalog.datasets import DATASETS, IMAGE_DATASETS, TEXT_DATASETS
from sparsity_core.reports import digits
from sparsity_core.reports import explain as fig
from sparsity_core.specs import ExplainSpec

st.title("🔍 Explanations")
st.markdown(
    "A classifier's last layer adds up its hidden features. Representer points (Yeh et al., 2018) "
    "rewrite that sum as **one term per training example**: a test prediction is the sum of "
    "*alpha* (how much a training example mattered in training) times *similarity* (how alike the "
    "two examples look to the model). Examples with a positive term push the prediction up "
    "(**excitatory**), negative ones push it down (**inhibitory**). The lab checks itself: the "
    "terms must rebuild the model's outputs (Pearson r near 1). captum's integrated gradients show "
    "which pixels or words mattered, and its influence methods (TracIn, similarity) give their own "
    "lists of helpful and harmful training examples to compare with.")
preset_button("explain")

HF = "hf:<hub id or local path>"
CLASSIFIERS = [m for m, info in MODELS.items() if info.task != "causal_lm"]
CANVAS = 192  # pixels a side: 8 cells of 24, the size scikit-learn's 32x32 bitmaps were drawn at, x6
STROKE = 22  # nearly a cell (24 px) wide: the digits data's pen strokes fill whole cells (values near 16)
DRAWN = "e_drawn"  # the 8x8 input of the drawing (None: blank): the canvas sets it, Clear empties it
# Clear gives the canvas a new key: a fresh, empty component (its own state cannot be reset from here)
CANVAS_KEY = f"e_canvas_{st.session_state.setdefault('e_canvas_n', 0)}"
# every field this page sends -> the widget that sets it (its message shows right below)
PLACES = ErrorPlaces(ExplainSpec, {
    "model": "e_model", "dataset": "e_dataset", "test_index": "e_index", "image": CANVAS_KEY, "text": "e_text",
    "lambda": "e_lambda", "top_k": "e_topk", "train_limit": "e_limit", "parent_run": "e_parent",
    "parent_sparsity": "e_parent", "captum": "e_captum", "flip_fraction": "e_flip", "seed": "e_seed"},
    fixed=("kind", "method"))


def parent_choices(model: str) -> list:
    return [None] + [r for r in repo.list_runs(kind="prune", status="succeeded", limit=50) if r.model == model]


@st.cache_data(show_spinner=False)
def test_digits(dataset: str, seed: int) -> list:
    return digits.gallery(dataset, seed)


def pick(index: int) -> None:
    st.session_state["e_index"] = index


def digit_gallery(dataset: str, seed: int) -> None:
    """The first test digit of each class as a picture with a button that picks its row."""
    st.caption("Or pick a test digit (the button shows its true label):")
    items = test_digits(dataset, seed)
    for col, (index, label, image) in zip(st.columns(len(items), gap="small"), items):
        col.image(digits.picture(image, scale=5), caption=f"#{index}")
        col.button(label, key=f"e_pick_{index}", on_click=pick, args=(index,), help=f"explain test row {index}")


def clear_drawing() -> None:
    st.session_state[DRAWN] = None
    st.session_state["e_canvas_n"] += 1


def draw_digit() -> None:
    """A canvas to draw on, read back as the model's 8x8 input (into session state `DRAWN`), with a
    preview of that input and a Clear button."""
    pad, preview = st.columns([3, 2])
    with pad:
        st.caption("Draw one digit, filling the box (mouse or finger)")
        drawing = st_canvas(stroke_width=STROKE, stroke_color="#000000", background_color="#ffffff",
                            height=CANVAS, width=CANVAS, return_image_data=True, key=CANVAS_KEY)
        PLACES.field_error("image")
    if drawing.image_data is not None:  # None until the canvas first sends a picture
        st.session_state[DRAWN] = digits.drawing_input(drawing.image_data)
    image = st.session_state.get(DRAWN)
    with preview:
        st.caption("What the model reads: 8x8, ink 0..16")
        st.image(digits.picture(image if image is not None else [[0] * 8] * 8, scale=12))
        st.button("Clear", key="e_clear", on_click=clear_drawing)


left, right = st.columns(2)
with left:
    choice = st.selectbox("Classifier", [*CLASSIFIERS, HF], key="e_model",
                          format_func=lambda m: m if m == HF else f"{m} — {MODELS[m].description}")
    hf_ref = st.text_input("Hub id or local path (for hf:)", key="e_hf") if choice == HF else ""
    model = f"hf:{hf_ref.strip()}" if choice == HF else choice
    PLACES.field_error("model")
    entry = model_entry(model)  # None for an hf: checkpoint, explained on text
    image_model = entry is not None and entry.image
    datasets = IMAGE_DATASETS if image_model else TEXT_DATASETS
    home = entry.eval_data if entry is not None and entry.eval_data in datasets else datasets[0]
    dataset = st.selectbox("Dataset", datasets, index=datasets.index(home), key="e_dataset",
                           format_func=lambda d: f"{d} — {DATASETS[d].description}")
    PLACES.field_error("dataset")
    modes = ["a test example", "draw a digit"] if image_model else ["a test example", "type a sentence"]
    mode = st.radio("Explain", modes, horizontal=True, key="e_mode")
    if mode != "draw a digit":  # a canvas drawn again starts blank: forget the drawing it showed
        st.session_state.pop(DRAWN, None)
    if mode == "a test example":
        point = {"test_index": int(st.number_input("Test example (row of the test split)", min_value=0, value=0,
                                                   key="e_index"))}
        PLACES.field_error("test_index")
        if image_model:
            digit_gallery(dataset, st.session_state.get("e_seed", 0))
    elif mode == "draw a digit":
        draw_digit()
        point = {"image": st.session_state.get(DRAWN)}
    else:
        point = {"text": st.text_area("Your sentence", "A warm, funny and surprisingly moving film.", key="e_text")}
        PLACES.field_error("text")
with right:
    lam = st.number_input("lambda (L2 of the last-layer fit)", value=ExplainSpec.model_fields["lam"].default,
                          format="%g", key="e_lambda",
                          help="the paper's 0.003; the decomposition is exact at the fit's stationary point")
    PLACES.field_error("lambda")
    top_k = int(st.number_input("Examples to show (top-k)", 1, 100, 8, key="e_topk"))
    PLACES.field_error("top_k")
    limit = int(st.number_input("Training points (0: all)", min_value=0, value=0 if image_model else 2000,
                                key="e_limit", help="text models embed every training point once (cached)"))
    PLACES.field_error("train_limit")
    parent = st.selectbox("Pruned model from run (optional)", parent_choices(model), key="e_parent",
                          format_func=lambda r: "none: the dense model" if r is None else run_label(r))
    PLACES.field_error("parent_run")
    PLACES.field_error("parent_sparsity")
    captum = st.checkbox("Also run captum (attributions, TracIn, similarity)", value=True, key="e_captum")
    PLACES.field_error("captum")
    flip = st.slider("Labels flipped for the debugging experiment", 0.0, 0.5, 0.1, 0.05, key="e_flip")
    PLACES.field_error("flip_fraction")
    seed = int(st.number_input("Seed", min_value=0, value=0, key="e_seed"))
    PLACES.field_error("seed")

spec = {"kind": "explain", "method": "representer", "model": model, "dataset": dataset, "lambda": lam, **point,
        "top_k": top_k, "train_limit": limit or None, "parent_run": parent.id if parent else None, "captum": captum,
        "flip_fraction": flip, "seed": seed}
estimate_line(spec)
if st.button("Explain", type="primary", key="e_submit"):
    if "image" in point and point["image"] is None:  # a blank canvas would explain test row 0 instead
        PLACES.refuse({"image": "the canvas is blank: draw a digit first"})
    else:
        PLACES.submit(spec)
PLACES.other_errors()


# ---------------------------------------------------------------- results
def artifact_json(run_id: int, name: str):
    try:
        return json.loads(repo.artifact_path(run_id, name).read_text())
    except KeyError:
        return None


def artifact_frame(run_id: int, name: str):
    try:
        return pd.read_parquet(repo.artifact_path(run_id, name))
    except KeyError:
        return None


def draw_input(e: dict, key: str) -> None:
    point, pred = e["input"], e["prediction"]
    truth = f" · true label **{point['label']}**" if point.get("label") is not None else ""
    st.markdown(f"Prediction **{pred['name']}** ({max(pred['probs']):.1%}){truth} · {point['source']}"
                + (f" #{point['index']}" if "index" in point else ""))
    attr = e.get("attribution")
    if e["modality"] == "image":
        a, b = st.columns(2)
        a.plotly_chart(fig.digit_figure(point["item"], "the input"), key=f"{key}-digit")
        if attr:
            b.plotly_chart(fig.attribution_figure(attr["pixels"], attr["delta"]), key=f"{key}-attr")
    elif attr:
        st.html(fig.token_html(attr["tokens"], attr["values"]))
        st.caption(f"{attr['method']} from {attr['baseline']}, {attr['steps']} steps; "
                   f"convergence delta {attr['delta']:.2e} (0 = attributions add up exactly)")
    else:
        st.text(point["item"])


def draw_examples(e: dict, side: str, key: str) -> None:
    items = e[side]
    if e["modality"] == "image":
        st.plotly_chart(fig.digit_grid(items, f"{side} training examples"), key=f"{key}-{side}")
    else:
        st.markdown(f"**{side.capitalize()}** training examples")
        st.dataframe(fig.examples_table(items), hide_index=True, width="stretch", key=f"{key}-{side}-t")


def draw_explanation(e: dict, key: str) -> None:
    draw_input(e, key)
    draw_examples(e, "excitatory", key)
    draw_examples(e, "inhibitory", key)
    st.plotly_chart(fig.per_label_figure(e), key=f"{key}-per-label")
    st.plotly_chart(fig.logits_figure(e), key=f"{key}-logits")


def draw_self_check(run, frame: pd.DataFrame) -> None:
    mine = frame[(frame["run_id"] == run.id) & (frame["series"] == "")]
    for x, rows in mine.dropna(subset=["x"]).groupby("x"):
        values = rows.set_index("key")["value"]
        st.caption("dense model" if x == 0 else f"pruned at {x:.0%}")
        cols = st.columns(5)
        for col, (key, label, fmt) in zip(cols, [("pearson_train", "Pearson r, train", "{:.4f}"),
                                                 ("pearson_test", "Pearson r, test", "{:.4f}"),
                                                 ("grad_norm_final", "final gradient norm", "{:.1e}"),
                                                 ("precompute_s", "precompute (s)", "{:.1f}"),
                                                 ("explain_ms", "explain (ms)", "{:.2f}")]):
            if key in values:
                col.metric(label, fmt.format(values[key]))
    dense = mine[mine["x"] == 0].set_index("key")["value"]
    recon = artifact_frame(run.id, "reconstruction@dense")
    if recon is not None:
        r = {s: dense.get(f"pearson_{s}") for s in ("train", "test")}
        st.plotly_chart(fig.reconstruction_figure(recon, {k: v for k, v in r.items() if v is not None}), key="recon")


def draw_influence(run, frame: pd.DataFrame) -> None:
    infl = artifact_json(run.id, "influence")
    if infl is None:
        return
    st.subheader("captum's influence on the same prediction")
    st.dataframe(fig.overlap_table(frame[frame["run_id"] == run.id]), hide_index=True, width="stretch")
    for method, title in (("tracin", "TracInCPFast"), ("similarity", "SimilarityInfluence (cosine)")):
        a, b = st.columns(2)
        for col, side in ((a, "proponents"), (b, "opponents")):
            col.markdown(f"**{title}: {side}**")
            col.dataframe(fig.examples_table(infl[method][side]["examples"]), hide_index=True,
                          width="stretch", key=f"infl-{method}-{side}")


def draw_global(run, frame: pd.DataFrame) -> None:
    st.subheader("Global view")
    ranking = artifact_frame(run.id, "alpha_ranking")
    if ranking is not None:
        st.plotly_chart(fig.ranking_figure(ranking), key="ranking")
    st.plotly_chart(fig.mislabel_figure(frame, run.id), key="mislabel")


def draw_results(run) -> None:
    frame = repo.metrics_frame([run.id])
    variants = [(v, artifact_json(run.id, f"explanation@{v}")) for v in ("dense", "pruned")]
    variants = [(v, e) for v, e in variants if e is not None]
    for col, (variant, e) in zip(st.columns(len(variants)), variants):
        with col:
            sparsity = e.get("variant", {}).get("sparsity") or 0
            st.subheader("Dense model" if variant == "dense" else f"Pruned at {sparsity:.0%}")
            draw_explanation(e, variant)
    st.subheader("Self-check: the decomposition rebuilds the model")
    draw_self_check(run, frame)
    draw_influence(run, frame)
    draw_global(run, frame)
    with st.expander("all metrics and the evaluation setup"):
        st.dataframe(frame[frame["key"] != "mislabel_found"], hide_index=True, width="stretch")
        st.json(run.info or {})


show_url_run("explain", draw_results)
