"""Runs: every run in the store with its status, duration and error; cancel, delete, inspect."""

import pandas as pd
import streamlit as st

from db import repo
from pages._ui import run_label

st.title("📋 Runs")
st.caption("Status is written by the worker that owns a run; a run whose worker died is marked failed.")

runs = repo.list_runs()
if not runs:
    st.info("No runs yet: start one from a lab page.")
    st.stop()

table = pd.DataFrame([{
    "id": r.id, "kind": r.kind, "name": r.name or "", "model": r.model, "method": r.method or "",
    "status": r.status, "progress": r.progress, "duration s": None if r.duration_s is None else round(r.duration_s, 1),
    "created (UTC)": r.created_at.strftime("%Y-%m-%d %H:%M:%S"), "parent": r.parent_run_id,
    "error": r.error or "",
} for r in runs])
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"progress": st.column_config.ProgressColumn(min_value=0, max_value=1)})

selected = st.selectbox("Run", runs, format_func=run_label)
run = repo.get_run(selected.id)
left, right = st.columns(2)
if left.button("Cancel", disabled=run.status not in ("queued", "running")):
    st.toast(f"run #{run.id}: {repo.request_cancel(run.id)}")
    st.rerun()
if right.button("Delete", disabled=run.status == "running", help="deletes its metrics and artifact files too"):
    repo.delete_run(run.id)
    st.toast(f"run #{run.id} deleted")
    st.rerun()

with st.form(f"text-{run.id}"):  # name and notes travel with the run: compare page, report, bundle
    new_name = st.text_input("Name", run.name or "", max_chars=200)
    new_notes = st.text_area("Notes", run.notes or "", help="free text: what you tried, what you saw")
    if st.form_submit_button("Save name and notes"):
        repo.update_run_text(run.id, name=new_name, notes=new_notes)
        st.toast(f"run #{run.id} saved")
        st.rerun()
st.page_link("pages/compare.py", label="Compare this run with others", query_params={"runs": str(run.id)})

if run.error:
    st.error(run.error)
    if run.traceback:
        with st.expander("traceback"):
            st.code(run.traceback)
with st.expander("spec", expanded=True):
    st.json(run.spec)
if run.info:
    with st.expander("facts recorded by the run"):
        st.json(run.info)
artifacts = repo.list_artifacts(run.id)
if artifacts:
    st.dataframe(pd.DataFrame([{"name": a.name, "kind": a.kind, "bytes": a.bytes, "sha256": a.sha256[:16],
                                "path": a.path} for a in artifacts]), hide_index=True)
