"""Pruning lab: prune a model with the methods of the literature and see what each costs in quality."""

import json

import streamlit as st

from db import repo
from pages._ui import ErrorPlaces, estimate_line, model_widgets, preset_button, run_label, show_url_run
from sparsity_core.catalog import METHODS, MODELS, caps
from sparsity_core.catalog.pruning import (
    ACTIVATION_ALLOCATIONS,
    ALLOCATIONS,
    CALIBRATIONS,
    NM_TRAININGS,
    RECOVERIES,
    SCHEDULES,
    SCOPES,
    SOUP_HELP,
)
from sparsity_core.reports.figures import layer_sparsity_heatmap, metric_curve
from sparsity_core.reports.pruning import (
    activation_curve,
    activation_layer_bars,
    allocation_bars,
    allocation_targets,
    generation_table,
    mask_view,
    recovery_curves,
    size_figure,
    size_table,
    soup_figure,
    soup_key,
    weight_histogram,
)
from sparsity_core.specs import GREEDY_CALIBRATION, PruneSpec

st.title("✂️ Pruning")
st.markdown(
    "Pruning sets weights to zero. Pick a model and a method, list the target sparsities "
    "(fractions of zeros), and the lab prunes the model at each one, measures the sparsity it "
    "really reached, layer by layer, and evaluates what the zeros cost: accuracy for classifiers, "
    "perplexity (lower is better) for language models. *Magnitude* drops the smallest weights, "
    "*random* is the floor every method should beat, *Wanda* and *SparseGPT* also look at the "
    "activations of a few calibration texts, *DSnoT* swaps weights in another method's mask; *WINA* "
    "and *TEAL* leave the weights dense and skip a share of each layer's inputs per token instead "
    "(activation sparsity). "
    "Patterns: *unstructured* zeros anywhere; *N:M* keeps N of every M weights (2:4 runs fast on "
    "recent GPUs); *block:RxC* removes whole tiles; *heads* and *neurons* delete whole attention "
    "heads or FFN neurons, so the model really gets smaller. Under *Schedule and recovery*, a "
    "classifier (minilm-l6-rt, digits-mlp) can be pruned *gradually* while it trains, and recover "
    "by fine-tuning or by *distillation* from its dense self; with recovery on, a one-shot prune can "
    "also be fine-tuned several times and averaged into a *sparse model soup*, and an N:M mask can "
    "move while it trains (*SR-STE*).")
preset_button("pruning")

HF = "hf:<hub id or local path>"
ACTIVATION_HELP = ("Activation sparsity: the weights stay dense; at inference every layer keeps, per token, only the "
                   "share of its inputs the method scores highest (WINA: |x_i| times the norm of weight column i; "
                   "TEAL: |x_i|) and skips the rest. The targets are the shares skipped; no training or pattern, "
                   "and no calibration unless the greedy allocation (as both papers run them) gives each input of "
                   "a block its own share. A kernel run on this run times what the skipped columns buy at batch 1.")
DEFAULTS = {name: info.default for name, info in PruneSpec.model_fields.items()}
# every field this page sends -> the widget that sets it (its message shows right below)
PLACES = ErrorPlaces(PruneSpec, {
    "model": "p_model", "method": "p_method", "params": "p_method", "pattern": "p_pattern", "scope": "p_scope",
    "sparsities": "p_sparsities", "calibration_samples": "p_calib", "seq_len": "p_seq", "schedule": "p_schedule",
    "recovery": "p_recovery", "steps": "p_steps", "finetune_steps": "p_ft_steps", "lr": "p_lr", "seed": "p_seed",
    "soup_ingredients": "p_soup", "nm_training": "p_nm_training", "srste_decay": "p_srste_decay",
    "calibration": "p_calibration", "allocation": "p_allocation", "owl_m": "p_owl_m", "owl_lambda": "p_owl_lambda",
    "eval_samples": "p_eval", "name": "p_name"})
# evaluation size a model starts with: a causal LM scores 512-token windows of BBC News test, slow on a CPU, so
# 16 of them (8k tokens, what an empty field also means for a causal LM): a SmolLM2 magnitude run at [0, 0.5]
# took 87 s here with 16 (dense perplexity 30.6) and 129 s with 32 (31.0; 50% moved 7%): raise it to compare
# methods closely; the classifiers' whole test splits are already fast
FAST_EVAL = {"causal_lm": 16}


def eval_default(model: str):
    entry = MODELS.get(model)
    return FAST_EVAL.get(entry.task) if entry is not None else None


def _model_changed() -> None:
    st.session_state["p_eval"] = eval_default(st.session_state["p_model"])


def parse_sparsities(text: str):
    try:
        return [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        return None


left, right = st.columns(2)
with left:
    choice = st.selectbox("Model", [*MODELS, HF], key="p_model", on_change=_model_changed,
                          format_func=lambda m: m if m == HF else f"{m} — {MODELS[m].description}")
    hf_ref = st.text_input("Hub id or local path (for hf:)", placeholder="org/model or ./checkpoint",
                           key="p_hf") if choice == HF else ""
    PLACES.field_error("model")
    method = st.selectbox("Method", list(METHODS), key="p_method",
                          format_func=lambda m: f"{m} — {METHODS[m].description}")
    PLACES.field_error("method")
    if METHODS[method].activation:
        st.caption(ACTIVATION_HELP)
    PLACES.field_error("params")
    params = model_widgets(METHODS[method].params, f"p_param_{method}_", PLACES)  # keyed by method: no leaks
    pattern = st.text_input("Pattern", "unstructured", key="p_pattern",
                            help=f"unstructured, N:M (e.g. 2:4, 4:8), block:RxC (e.g. block:16x16), heads or "
                                 f"neurons. {method} supports: {', '.join(METHODS[method].patterns)} kinds")
    PLACES.field_error("pattern")
    scope = st.radio("Scope", SCOPES, horizontal=True, key="p_scope",
                     help="layer: every layer to the target; global: one threshold over all layers")
    PLACES.field_error("scope")
    allocation = {}
    if METHODS[method].activation:  # uniform, or TEAL's greedy allocation over each block's inputs
        allocation["allocation"] = st.selectbox(
            "Layer allocation", list(ACTIVATION_ALLOCATIONS), key="p_act_allocation",
            help=" · ".join(f"{k}: {v}" for k, v in ACTIVATION_ALLOCATIONS.items()))
        PLACES.field_error("allocation")
    else:  # how each target is shared out over the layers
        allocation["allocation"] = st.selectbox(
            "Layer-wise allocation", list(ALLOCATIONS), key="p_allocation",
            help=" · ".join(f"{k}: {v}" for k, v in ALLOCATIONS.items()) + ". OWL and ERK need the layer scope "
                 "and the unstructured pattern")
        PLACES.field_error("allocation")
    if allocation.get("allocation") == "owl":
        for field, label, key in (("owl_m", "OWL outlier threshold M", "p_owl_m"),
                                  ("owl_lambda", "OWL max deviation λ", "p_owl_lambda")):
            info = PruneSpec.model_fields[field]
            low, high = (next(getattr(m, b) for m in info.metadata if hasattr(m, b)) for b in ("ge", "le"))
            allocation[field] = float(st.number_input(label, float(low), float(high), float(info.default),
                                                      format="%g", key=key, help=info.description))
            PLACES.field_error(field)
with right:
    sparsities_text = st.text_input(
        "Activation sparsity targets" if METHODS[method].activation else "Target sparsities", "0, 0.5, 0.7",
        key="p_sparsities", help=f"comma-separated, each in [0, 1); 0 is the dense reference; at most "
                                 f"{caps.SPARSITIES} targets" + (" (shares of each layer's inputs skipped per token)"
                                                                 if METHODS[method].activation else ""))
    PLACES.field_error("sparsities")
    st.session_state.setdefault("p_eval", eval_default(choice))  # set here, so a model change can reset it
    eval_samples = st.number_input(
        "Evaluation size", min_value=16, value=None, step=1, key="p_eval", placeholder="all",
        help="test rows scored at each sparsity; for a language model, 512-token windows of BBC News test. "
             "Empty: the whole test split (a language model then scores 16 windows). Fewer is faster, "
             f"noisier. At most {caps.MAX_ROWS:,}.")
    PLACES.field_error("eval_samples")
    calibration = {}
    if METHODS[method].needs_calibration and scope != "global":
        calibration["calibration"] = st.selectbox(
            "Calibration", list(CALIBRATIONS), key="p_calibration",
            help=" · ".join(f"{k}: {v}" for k, v in CALIBRATIONS.items()))
        PLACES.field_error("calibration")
    elif METHODS[method].needs_calibration:
        st.caption("Calibration: one pass of the dense model (a global threshold ranks every layer at once).")
    if METHODS[method].needs_calibration or allocation.get("allocation") in ("owl", "greedy"):
        greedy = allocation.get("allocation") == "greedy"  # its own, smaller defaults (and keys)
        calibration["calibration_samples"] = int(st.number_input(
            "Calibration samples", 1, caps.CALIBRATION_SAMPLES,
            GREEDY_CALIBRATION[0] if greedy else DEFAULTS["calibration_samples"],
            key="p_calib_greedy" if greedy else "p_calib",
            help="texts (or images) whose activations the method (or OWL's outlier ratios, or the greedy "
                 "allocation's block errors) reads; greedy runs every block ~200 times on them"))
        PLACES.field_error("calibration_samples")
        calibration["seq_len"] = int(st.number_input(
            "Calibration sequence length (tokens)", 8, caps.SEQ_LEN, GREEDY_CALIBRATION[1] if greedy else DEFAULTS["seq_len"],
            key="p_seq_greedy" if greedy else "p_seq"))
        PLACES.field_error("seq_len")
    with st.expander("Schedule and recovery"):
        schedule = st.radio("Schedule", SCHEDULES, horizontal=True, key="p_schedule")
        PLACES.field_error("schedule")
        recovery = st.radio("Recovery", RECOVERIES, horizontal=True, key="p_recovery")
        PLACES.field_error("recovery")
        steps = int(st.number_input("Training steps per target (gradual ramp, or recovery)", 1, caps.TRAIN_STEPS,
                                    DEFAULTS["steps"], key="p_steps",
                                    help="minilm-l6-rt and digits-mlp have labelled data to train on"))
        PLACES.field_error("steps")
        finetune_steps = int(st.number_input("Fine-tune steps at each final sparsity (gradual)", 0, caps.TRAIN_STEPS,
                                             DEFAULTS["finetune_steps"], key="p_ft_steps"))
        PLACES.field_error("finetune_steps")
        train_lr = st.number_input("Learning rate (AdamW peak)", min_value=1e-7, max_value=1.0,
                                   value=DEFAULTS["lr"], format="%.5f", key="p_lr")
        PLACES.field_error("lr")
        recipes = {}
        if schedule != "oneshot" or recovery != "none":  # the recipes train: shown when recovery is on
            recipes["soup_ingredients"] = int(st.number_input(
                "Soup ingredients (oneshot + recovery)", 0, caps.SOUP_INGREDIENTS, DEFAULTS["soup_ingredients"],
                key="p_soup", help=SOUP_HELP))
            PLACES.field_error("soup_ingredients")
            recipes["nm_training"] = st.radio(
                "N:M training (N:M patterns)", list(NM_TRAININGS), horizontal=True, key="p_nm_training",
                help=" · ".join(f"{k}: {v}" for k, v in NM_TRAININGS.items()))
            PLACES.field_error("nm_training")
            recipes["srste_decay"] = float(st.number_input(
                "SR-STE decay λ_W (sr_ste)", min_value=0.0, max_value=1.0, value=DEFAULTS["srste_decay"],
                format="%g", key="p_srste_decay", help=PruneSpec.model_fields["srste_decay"].description))
            PLACES.field_error("srste_decay")
    seed = st.number_input("Seed", min_value=0, value=0, step=1, key="p_seed")
    PLACES.field_error("seed")
    name = st.text_input("Run name (optional)", key="p_name")
    PLACES.field_error("name")

sparsities = parse_sparsities(sparsities_text)
spec = None if sparsities is None else {
    "kind": "prune", "model": f"hf:{hf_ref.strip()}" if choice == HF else choice, "method": method,
    "params": params, "pattern": pattern.strip(), "scope": scope, "sparsities": sparsities, **calibration, **allocation,
    "eval_samples": None if eval_samples is None else int(eval_samples), "seed": int(seed), "name": name or None}
if spec is not None and (schedule != "oneshot" or recovery != "none"):
    spec.update(schedule=schedule, recovery=recovery, steps=steps, finetune_steps=finetune_steps, lr=float(train_lr),
                **recipes)
if spec is not None:
    estimate_line(spec)
if st.button("Run", type="primary", key="p_submit"):
    if spec is None:
        PLACES.refuse({"sparsities": f"not a list of numbers: {sparsities_text!r}"})
    else:
        PLACES.submit(spec)
PLACES.other_errors()


def load_views(run_id: int):
    try:
        return json.loads(repo.artifact_path(run_id, "views").read_text())
    except KeyError:
        return None


def is_activation(method) -> bool:
    return method in METHODS and METHODS[method].activation


def draw_quality(run, what: str, curve, key: str):
    """Quality against sparsity (one chart per quality metric the run has), with earlier runs on the
    same model of the same family overlaid: weight pruning with weight pruning, WINA / TEAL with
    WINA / TEAL (their x is activation sparsity, not weight sparsity). Returns the metrics frame."""
    activation = is_activation(run.method)
    earlier = [r for r in repo.list_runs(kind="prune", status="succeeded", limit=30)
               if r.model == run.model and r.id != run.id and is_activation(r.method) == activation]
    overlay = st.multiselect(f"Overlay earlier {what} on the same model", earlier, format_func=run_label, key=key)
    frame = repo.metrics_frame([run.id, *[r.id for r in overlay]])
    labels = {r.id: run_label(r) for r in [run, *overlay]}
    keys = [k for k in ("perplexity", "accuracy", "embedding_cosine") if k in set(frame["key"])]
    for col, metric in zip(st.columns(max(1, len(keys))), keys):
        col.plotly_chart(curve(frame, metric, labels), key=f"{key}-{metric}")
    return frame


def draw_activation(run) -> None:
    """A WINA / TEAL run: quality against activation sparsity, overlaid with the other method's runs
    on the same model (the metric keys are shared), and a language model's generations."""
    frame = draw_quality(run, "WINA / TEAL runs", lambda f, m, labels: activation_curve(f, m, labels, run.id),
                         "p_activation_overlay")
    targets = sorted(float(x) for x in frame.loc[(frame["run_id"] == run.id) & (frame["key"] == "layer_activation_sparsity")
                                                 & (frame["x"] > 0), "x"].unique())
    if targets:  # what each layer skipped, and how much of its input was zero anyway
        at = targets[-1] if len(targets) == 1 else st.select_slider(
            "Layers at activation sparsity", targets, value=targets[-1], format_func=lambda x: f"{x:.0%}",
            key="p_activation_layers")
        st.plotly_chart(activation_layer_bars(frame, run.id, at), key="activation_layers")
    views = load_views(run.id) or {}
    gens = generation_table(views, "activation-sparse")
    if len(gens):
        st.markdown(f"**Same prompt, dense vs activation-sparse** (greedy): *{views['generation']['prompt']}*")
        st.dataframe(gens, hide_index=True, width="stretch")
    mine = frame[(frame["run_id"] == run.id) & (frame["series"] == "")]
    with st.expander("all metrics and the evaluation setup"):
        st.dataframe(mine.pivot_table(index="x", columns="key", values="value"), width="stretch")
        st.json(run.info or {})


def draw_results(run) -> None:
    if is_activation(run.method):
        draw_activation(run)
        return
    frame = draw_quality(run, "pruning runs", metric_curve, "p_overlay")
    st.plotly_chart(layer_sparsity_heatmap(frame, run.id), key="heatmap")
    allocated = allocation_targets(frame, run.id)  # an OWL / ERK run: what each layer was asked, what it reached
    if allocated:
        at = allocated[-1] if len(allocated) == 1 else st.select_slider(
            "Layer-wise allocation at target", allocated, value=allocated[-1], format_func=lambda x: f"{x:.0%}",
            key="p_alloc_target")
        st.plotly_chart(allocation_bars(frame, run.id, at), key="allocation")
    if "train_loss" in set(frame["key"]):
        st.plotly_chart(recovery_curves(frame, run.id), key="recovery")
    if soup_key(frame, run.id) is not None:
        st.plotly_chart(soup_figure(frame, run.id), key="soup")
    views = load_views(run.id)
    if views and views["pruned"]:
        targets = list(views["pruned"])
        target = st.select_slider("Look at target sparsity", targets, value=targets[-1], key="p_view_target")
        left, right = st.columns(2)
        left.plotly_chart(weight_histogram(views, target), key="hist")
        right.plotly_chart(mask_view(views, target), key="mask")
        gens = generation_table(views)
        if len(gens):
            st.markdown(f"**Same prompt, dense vs pruned** (greedy): *{views['generation']['prompt']}*")
            st.dataframe(gens, hide_index=True, width="stretch")
    mine_keys = set(frame.loc[frame["run_id"] == run.id, "key"])
    if any(k.startswith("bytes_") for k in mine_keys):  # recovery runs measure accuracy, not bytes
        st.markdown("**Model size** of the pruned layers (nonzeros; bytes if stored dense, as CSR, or as 2:4)")
        left, right = st.columns(2)
        left.plotly_chart(size_figure(frame, run.id), key="size")
        right.dataframe(size_table(frame, run.id), width="stretch")
    mine = frame[(frame["run_id"] == run.id) & (frame["series"] == "")]
    with st.expander("all metrics and the evaluation setup"):
        st.dataframe(mine.pivot_table(index="x", columns="key", values="value"), width="stretch")
        st.json(run.info or {})


show_url_run("prune", draw_results)
