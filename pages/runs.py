"""Runs: every run in the store with its status, duration and error; open in its lab, cancel, delete."""

import pandas as pd
import streamlit as st

from db import repo
from pages._access import refused
from pages._ui import LAB_PAGES, run_label
from sparsity_core.reports.compare import md_text


def ran_on(run) -> str:
    """Where the run executed, from the facts its executor recorded: "ray · host-2 · cuda:0"."""
    where = (run.info or {}).get("executor") or {}
    return " · ".join(str(where[k]) for k in ("name", "host", "device") if where.get(k))


def lab_url(run) -> str | None:
    """The run's address, relative to this page so it holds under any base URL path."""
    page = LAB_PAGES.get(run.kind)
    if page is None:
        return None
    return f"./{page}?run={run.id}"


st.title("📋 Runs")
st.caption("Status is written by the worker that owns a run; a run whose worker died is marked failed.")

runs = repo.list_runs()
if not runs:
    st.info("No runs yet: start one from a lab page.")
    st.stop()

table = pd.DataFrame([{
    "id": r.id, "open": lab_url(r), "kind": r.kind, "name": r.name or "", "model": r.model, "method": r.method or "",
    "status": r.status, "progress": r.progress, "duration s": None if r.duration_s is None else round(r.duration_s, 1),
    "created (UTC)": r.created_at.strftime("%Y-%m-%d %H:%M:%S"), "parent": r.parent_run_id,
    "ran on": ran_on(r), "error": r.error or "",
} for r in runs])
st.dataframe(table, hide_index=True, width="stretch", column_config={
    "progress": st.column_config.ProgressColumn(min_value=0, max_value=1),
    "open": st.column_config.LinkColumn("open", display_text="open ↗", help="the run in its lab: a link to share"),
})

by_id = {r.id: r for r in runs}
# a key, and ids as options: without them a label that changes (its status, after Cancel) makes a new
# widget, and the selection would jump to the newest run, under a pending delete confirmation too
run_id = st.selectbox("Run", list(by_id), format_func=lambda i: run_label(by_id[i]), key="runs-selected")
run = repo.get_run(run_id)
if run is None:  # deleted meanwhile (another tab, the CLI)
    st.rerun()
if run.kind in LAB_PAGES:
    st.page_link(f"pages/{LAB_PAGES[run.kind]}.py", label=f"Open run #{run.id} in its lab", icon="🔗",
                 query_params={"run": str(run.id)})
left, right = st.columns(2)
# each destructive click asks refused() first: a session without access gets one line beside the control
if left.button("Cancel", key="cancel", disabled=run.status not in ("queued", "running")) and not refused(left):
    st.toast(f"run #{run.id}: {repo.request_cancel(run.id)}")
    st.rerun()
if right.button("Delete…", key="delete", disabled=run.status == "running",
                help="asks first; deletes its metrics and artifact files too") and not refused(right):
    st.session_state["confirm_delete"] = run.id
if st.session_state.get("confirm_delete") == run.id:  # nothing is removed before this second, explicit click
    st.warning(f"This deletes {repo.delete_plan(run.id).summary}. It cannot be undone.", icon="🗑️")
    yes, keep = st.columns(2)
    if yes.button(f"Yes, delete run #{run.id}", key="delete-yes", type="primary") and not refused(yes):
        del st.session_state["confirm_delete"]
        try:
            repo.delete_run(run.id)
        except (KeyError, ValueError) as exc:  # started or deleted since the first click
            st.error(exc.args[0])
        else:
            st.toast(f"run #{run.id} deleted")
            st.rerun()
    if keep.button("Keep it", key="delete-keep"):
        del st.session_state["confirm_delete"]
        st.rerun()

with st.form(f"text-{run.id}"):  # name and notes travel with the run: compare page, report, bundle
    new_name = st.text_input("Name", run.name or "", max_chars=200)
    new_notes = st.text_area("Notes", run.notes or "", help="free text: what you tried, what you saw")
    if st.form_submit_button("Save name and notes") and not refused():
        repo.update_run_text(run.id, name=new_name, notes=new_notes)
        st.toast(f"run #{run.id} saved")
        st.rerun()
st.page_link("pages/compare.py", label="Compare this run with others", query_params={"runs": str(run.id)})

if run.error:
    st.error(md_text(run.error))  # an imported run's error is somebody else's text: never markdown
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
