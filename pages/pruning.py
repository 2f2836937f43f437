"""Pruning lab: prune a model at several sparsities and see what each costs in quality."""

import streamlit as st

from db import repo
from pages._ui import ERRORS_KEY, field_error, follow_run, other_errors, preset_button, run_label, submit_spec
from sparsity_core.pruning import METHODS
from sparsity_core.reports.figures import layer_sparsity, metric_curve
from sparsity_core.zoo import MODELS

st.title("✂️ Pruning")
st.markdown(
    "Pruning sets weights to zero. Pick a model and a method, list the target sparsities "
    "(fractions of zeros), and the lab prunes the model at each one, measures the sparsity it "
    "really reached, layer by layer, and evaluates what the zeros cost in quality.")

preset_button("pruning")

HF = "hf:<hub id or local path>"


def parse_sparsities(text: str):
    try:
        return [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        return None


with st.form("prune"):
    left, right = st.columns(2)
    with left:
        choice = st.selectbox("Model", [*MODELS, HF], format_func=lambda m: m if m == HF else f"{m} — {MODELS[m].description}")
        hf_ref = st.text_input("Hub id or local path (for hf:)", placeholder="org/model or ./checkpoint")
        field_error("model")
        method = st.selectbox("Method", list(METHODS), format_func=lambda m: f"{m} — {METHODS[m].description}")
        field_error("method")
        scope = st.radio("Scope", ["layer", "global"], horizontal=True,
                         help="layer: every layer to the target; global: one threshold over all layers")
    with right:
        sparsities_text = st.text_input("Target sparsities", "0, 0.5, 0.9", help="comma-separated, each in [0, 1)")
        field_error("sparsities")
        seed = st.number_input("Seed", min_value=0, value=0, step=1)
        name = st.text_input("Run name (optional)")
    submitted = st.form_submit_button("Run", type="primary")

if submitted:
    sparsities = parse_sparsities(sparsities_text)
    if sparsities is None:
        st.session_state[ERRORS_KEY] = {"sparsities": f"not a list of numbers: {sparsities_text!r}"}
    else:
        spec = {"kind": "prune", "model": f"hf:{hf_ref.strip()}" if choice == HF else choice,
                "method": method, "scope": scope, "sparsities": sparsities, "seed": int(seed),
                "name": name or None}
        run_id = submit_spec(spec)
        if run_id is not None:
            st.session_state["prune_run"] = run_id
            st.rerun()
other_errors({"model", "method", "sparsities"})


def draw_results(run) -> None:
    earlier = [r for r in repo.list_runs(kind="prune", status="succeeded", limit=20)
               if r.model == run.model and r.id != run.id]
    overlay = st.multiselect("Overlay earlier runs on the same model", earlier, format_func=run_label)
    ids = [run.id, *[r.id for r in overlay]]
    frame = repo.metrics_frame(ids)
    labels = {r.id: run_label(r) for r in [run, *overlay]}
    keys = [k for k in ("accuracy", "perplexity", "embedding_cosine") if k in set(frame["key"])]
    cols = st.columns(max(1, len(keys)))
    for col, key in zip(cols, keys):
        col.plotly_chart(metric_curve(frame, key, labels), key=f"curve-{key}")
    st.plotly_chart(layer_sparsity(frame, run.id), key="layers")
    mine = frame[(frame["run_id"] == run.id) & (frame["series"] == "")]
    st.dataframe(mine.pivot_table(index="x", columns="key", values="value"), width="stretch")


run_id = st.session_state.get("prune_run")
if run_id:
    st.subheader(f"Run #{run_id}")
    follow_run(run_id, draw_results)
