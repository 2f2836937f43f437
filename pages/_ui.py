"""Widgets the lab pages share: submit with errors beside widgets, live progress, sidebar status.

Streamlit-only glue; no torch here (pages never import torch or transformers).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import streamlit as st

from db import repo
from sparsity_core.jobs import submit
from sparsity_core.specs import SpecError

ACTIVE = ("queued", "running")
ERRORS_KEY = "_spec_errors"


def _route_through_app() -> None:
    """Streamlit treats a project with a `pages/` folder as a legacy multipage app until app.py
    calls st.navigation. So when the first visit to a fresh server is a deep link (a shared
    /compare?runs=... URL), the page would run alone: no sidebar, every file listed. Switch the
    legacy mode off and rerun, so app.py routes the same URL."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_route_through_app()


def submit_spec(spec: dict[str, Any], errors_key: str = ERRORS_KEY) -> Optional[int]:
    """Validate and queue `spec`. On SpecError, keep {field: message} for `field_error` and
    return None, so each message shows beside its widget and nothing reaches the queue."""
    try:
        run_id = submit(spec)
    except SpecError as exc:
        st.session_state[errors_key] = exc.errors
        return None
    st.session_state[errors_key] = {}
    return run_id


def field_error(field: str, errors_key: str = ERRORS_KEY) -> None:
    """Show the validation message for `field`, if the last submit had one. Call below a widget."""
    message = st.session_state.get(errors_key, {}).get(field)
    if message:
        st.error(message, icon="⚠️")


def other_errors(known_fields: set[str], errors_key: str = ERRORS_KEY) -> None:
    for field, message in st.session_state.get(errors_key, {}).items():
        if field not in known_fields:
            st.error(f"{field}: {message}" if field else message, icon="⚠️")


def run_label(run) -> str:
    name = f" “{run.name}”" if run.name else ""
    return f"#{run.id} {run.kind} {run.method or ''} · {run.model}{name} · {run.status}"


def _progress_line(run) -> None:
    st.progress(run.progress, text=f"run #{run.id} {run.status}: {run.message or ''}")


@st.fragment(run_every=1.0)
def _poll(run_id: int) -> None:
    run = repo.get_run(run_id)
    if run is None or run.status not in ACTIVE:
        st.rerun(scope="app")  # finished: redraw the page once, with results and no polling
    _progress_line(run)
    if st.button("Cancel run", key=f"cancel-{run_id}"):
        repo.request_cancel(run_id)


def follow_run(run_id: int, draw_results: Callable[[Any], None]) -> None:
    """Live progress while the run is queued or running; its results once it has ended."""
    run = repo.get_run(run_id)
    if run is None:
        st.warning(f"run #{run_id} no longer exists")
        return
    if run.status in ACTIVE:
        _poll(run_id)
        return
    if run.status == "failed":
        st.error(f"run #{run.id} failed: {run.error}")
        if run.traceback:
            with st.expander("traceback"):
                st.code(run.traceback)
        return
    if run.status == "cancelled":
        st.warning(f"run #{run.id} was cancelled")
    draw_results(run)


def sidebar_status() -> None:
    from sqlalchemy.engine import make_url

    from db.engine import database_url

    with st.sidebar:
        st.caption("Store")
        st.code(make_url(database_url()).render_as_string(hide_password=True), language=None)
        counts = repo.count_by_status()
        st.caption(" · ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no runs yet")
        workers = repo.live_workers()
        if workers:
            busy = [w for w in workers if w.current_run_id]
            st.success(f"{len(workers)} worker(s) alive, {len(busy)} busy", icon="🟢")
        else:
            st.warning("no worker is running: queued runs wait. Start one with "
                       "`python -m sparsity_core worker`", icon="🟠")


def preset_button(lab: str) -> None:
    """"Try this": one button per prepared comparison of `lab` (sparsity_core.catalog.presets).
    Every spec is checked before any is queued, so a preset runs whole or not at all; then a link
    opens the compare page with the new runs selected."""
    from sparsity_core.jobs import preflight
    from sparsity_core.catalog.presets import presets
    from sparsity_core.specs import parse_spec

    items, done_key = presets(lab), f"_preset_runs_{lab}"
    if not items:
        return
    with st.expander("🎓 Try this: a prepared comparison, one click", expanded=bool(st.session_state.get(done_key))):
        for i, preset in enumerate(items):
            st.markdown(f"**{preset.name}**  \n{preset.explanation}")
            if st.button(f"Run: {preset.name}", key=f"preset-{lab}-{i}"):
                try:
                    specs = [parse_spec(spec) for spec in preset.specs]
                    for spec in specs:
                        preflight(spec)
                except SpecError as exc:
                    st.error(f"this preset cannot run here: {exc}", icon="⚠️")
                    continue
                st.session_state[done_key] = [submit(spec) for spec in specs]
        ids = st.session_state.get(done_key)
        if ids:
            runs = ",".join(map(str, ids))
            st.success(f"queued runs {', '.join(f'#{i}' for i in ids)}: "
                       f"[follow them side by side on the compare page](compare?runs={runs}&view=curves)")
