"""Pruning lab: prune a model with the methods of the literature and see what each costs in quality."""

import json

import streamlit as st

from db import repo
from pages._ui import ERRORS_KEY, field_error, follow_run, other_errors, run_label, submit_spec
from sparsity_core.pruning import METHODS
from sparsity_core.reports.figures import layer_sparsity_heatmap, metric_curve
from sparsity_core.reports.pruning import (
    generation_table,
    mask_view,
    recovery_curves,
    size_figure,
    size_table,
    weight_histogram,
)
from sparsity_core.specs import PruneSpec
from sparsity_core.zoo import MODELS

st.title("✂️ Pruning")
st.markdown(
    "Pruning sets weights to zero. Pick a model and a method, list the target sparsities "
    "(fractions of zeros), and the lab prunes the model at each one, measures the sparsity it "
    "really reached, layer by layer, and evaluates what the zeros cost: accuracy for classifiers, "
    "perplexity (lower is better) for language models. *Magnitude* drops the smallest weights, "
    "*random* is the floor every method should beat, *Wanda* and *SparseGPT* also look at the "
    "activations of a few calibration texts, *DSnoT* swaps weights in another method's mask. "
    "Patterns: *unstructured* zeros anywhere; *N:M* keeps N of every M weights (2:4 runs fast on "
    "recent GPUs); *block:RxC* removes whole tiles; *heads* and *neurons* delete whole attention "
    "heads or FFN neurons, so the model really gets smaller. Under *Schedule and recovery*, a "
    "classifier (minilm-l6-rt, digits-mlp) can be pruned *gradually* while it trains, and recover "
    "by fine-tuning or by *distillation* from its dense self.")

HF = "hf:<hub id or local path>"
FIELDS = {"model", "method", "pattern", "scope", "sparsities", "params", "calibration_samples", "seq_len",
          "eval_samples", "schedule", "recovery", "steps", "lr"}


def parse_sparsities(text: str):
    try:
        return [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        return None


def method_params(method: str) -> dict:
    """One widget per parameter the method declares, keyed by method so choices do not leak."""
    values = {}
    for key, (default, help_text) in METHODS[method].params.items():
        wkey = f"p_param_{method}_{key}"
        if key == "initial":
            options = [m for m in METHODS if m != method and not METHODS[m].params.get("initial")]
            values[key] = st.selectbox(f"{key}", options, index=options.index(default), help=help_text, key=wkey)
        elif isinstance(default, bool) or not isinstance(default, (int, float)):
            values[key] = st.text_input(key, str(default), help=help_text, key=wkey)
        elif isinstance(default, int):
            values[key] = int(st.number_input(key, value=default, step=1, help=help_text, key=wkey))
        else:
            values[key] = float(st.number_input(key, value=default, format="%g", help=help_text, key=wkey))
    return values


left, right = st.columns(2)
with left:
    choice = st.selectbox("Model", [*MODELS, HF], key="p_model",
                          format_func=lambda m: m if m == HF else f"{m} — {MODELS[m].description}")
    hf_ref = st.text_input("Hub id or local path (for hf:)", placeholder="org/model or ./checkpoint") \
        if choice == HF else ""
    field_error("model")
    method = st.selectbox("Method", list(METHODS), key="p_method",
                          format_func=lambda m: f"{m} — {METHODS[m].description}")
    field_error("method")
    params = method_params(method)
    field_error("params")
    pattern = st.text_input("Pattern", "unstructured", key="p_pattern",
                            help=f"unstructured, N:M (e.g. 2:4, 4:8), block:RxC (e.g. block:16x16), heads or "
                                 f"neurons. {method} supports: {', '.join(METHODS[method].patterns)} kinds")
    field_error("pattern")
    scope = st.radio("Scope", ["layer", "global"], horizontal=True, key="p_scope",
                     help="layer: every layer to the target; global: one threshold over all layers")
    field_error("scope")
with right:
    sparsities_text = st.text_input("Target sparsities", "0, 0.5, 0.7", key="p_sparsities",
                                    help="comma-separated, each in [0, 1); 0 is the dense reference")
    field_error("sparsities")
    calib, seq = 64, 256
    if METHODS[method].needs_calibration:
        calib = int(st.number_input("Calibration samples", 1, 4096, 64, key="p_calib",
                                    help="texts (or images) whose activations the method reads"))
        field_error("calibration_samples")
        seq = int(st.number_input("Calibration sequence length (tokens)", 8, 4096, 256, key="p_seq"))
        field_error("seq_len")
    with st.expander("Schedule and recovery"):
        schedule = st.radio("Schedule", ["oneshot", "gradual"], horizontal=True, key="p_schedule")
        recovery = st.radio("Recovery", ["none", "finetune", "distill"], horizontal=True, key="p_recovery")
        steps = int(st.number_input("Training steps per target (gradual ramp, or recovery)", 1, 100_000, 200,
                                    key="p_steps", help="minilm-l6-rt and digits-mlp have labelled data to train on"))
        field_error("steps")
        finetune_steps = int(st.number_input("Fine-tune steps at each final sparsity (gradual)", 0, 100_000, 100,
                                             key="p_ft_steps"))
        train_lr = st.number_input("Learning rate (AdamW peak)", min_value=1e-7, max_value=1.0,
                                   value=PruneSpec.model_fields["lr"].default, format="%.5f", key="p_lr")
        field_error("lr")
        field_error("recovery")
        field_error("schedule")
    seed = st.number_input("Seed", min_value=0, value=0, step=1, key="p_seed")
    name = st.text_input("Run name (optional)", key="p_name")

if st.button("Run", type="primary", key="p_submit"):
    sparsities = parse_sparsities(sparsities_text)
    if sparsities is None:
        st.session_state[ERRORS_KEY] = {"sparsities": f"not a list of numbers: {sparsities_text!r}"}
    else:
        spec = {"kind": "prune", "model": f"hf:{hf_ref.strip()}" if choice == HF else choice,
                "method": method, "params": params, "pattern": pattern.strip(), "scope": scope,
                "sparsities": sparsities, "calibration_samples": calib, "seq_len": seq,
                "seed": int(seed), "name": name or None}
        if schedule != "oneshot" or recovery != "none":
            spec.update(schedule=schedule, recovery=recovery, steps=steps, finetune_steps=finetune_steps,
                        lr=float(train_lr))
        run_id = submit_spec(spec)
        if run_id is not None:
            st.session_state["prune_run"] = run_id
        st.rerun()
other_errors(FIELDS)


def load_views(run_id: int):
    try:
        return json.loads(repo.artifact_path(run_id, "views").read_text())
    except KeyError:
        return None


def draw_results(run) -> None:
    earlier = [r for r in repo.list_runs(kind="prune", status="succeeded", limit=30)
               if r.model == run.model and r.id != run.id]
    overlay = st.multiselect("Overlay earlier runs on the same model", earlier, format_func=run_label)
    ids = [run.id, *[r.id for r in overlay]]
    frame = repo.metrics_frame(ids)
    labels = {r.id: run_label(r) for r in [run, *overlay]}
    keys = [k for k in ("perplexity", "accuracy", "embedding_cosine") if k in set(frame["key"])]
    for col, key in zip(st.columns(max(1, len(keys))), keys):
        col.plotly_chart(metric_curve(frame, key, labels), key=f"curve-{key}")
    st.plotly_chart(layer_sparsity_heatmap(frame, run.id), key="heatmap")
    if "train_loss" in set(frame["key"]):
        st.plotly_chart(recovery_curves(frame, run.id), key="recovery")
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


run_id = st.session_state.get("prune_run")
if run_id:
    st.subheader(f"Run #{run_id}")
    follow_run(run_id, draw_results)
