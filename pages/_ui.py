"""Widgets the lab pages share: a spec's messages beside its widgets, feedback the moment a run is
submitted, widgets drawn from a pydantic model, live progress, the sidebar's status, "Try this".

Streamlit-only glue over the catalog, specs, jobs, reports and db: nothing here (or in a page)
loads torch, which tests/pages/test_house_rules.py checks by rendering each page in a fresh
interpreter.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional, get_args, get_origin

import streamlit as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from db import repo
from sparsity_core import jobs
from sparsity_core.specs import BaseSpec, SpecError

ACTIVE = ("queued", "running")


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


def spec_fields(spec: type[BaseSpec]) -> list[str]:
    """The names a spec's messages are keyed by: each field's alias (`lambda`) or its name."""
    return [info.alias or name for name, info in spec.model_fields.items()]


class ErrorPlaces:
    """Where each message of one spec class shows on a page: right below the widget that sets its
    field, or in the catch-all (`other_errors`) for a field the page does not send or did not draw.

        places = ErrorPlaces(SAESpec, {"expansion": "sae_expansion", ...})
        st.number_input("Expansion", key="sae_expansion")
        places.field_error("expansion")
        if st.button("Train"):
            places.submit(spec, run_key="sae_run")   # feedback at once; messages beside their widgets
        places.other_errors()

    `widgets` maps every field the page sends to the key of the widget that sets it (a parameter
    `params.<name>` belongs to the field `params`); `fixed` are fields sent as constants. `submit`
    refuses a spec with a field whose place was not drawn on this render, so no message can go
    missing, and tests/pages/test_error_places.py checks each one lands right below its widget.
    """

    def __init__(self, spec: type[BaseSpec], widgets: dict[str, str], fixed: tuple[str, ...] = ("kind",)):
        unknown = sorted((set(widgets) | set(fixed)) - set(spec_fields(spec)))
        if unknown:
            raise ValueError(f"{spec.__name__} has no field {', '.join(unknown)}")
        self.spec, self.widgets, self.fixed = spec, widgets, fixed
        self.key = f"_spec_errors_{spec.model_fields['kind'].default}"  # one per lab: no message leaks
        self._slots: dict[str, Any] = {}

    @property
    def errors(self) -> dict[str, str]:
        return st.session_state.get(self.key, {})

    def field_error(self, field: str) -> None:
        """The place of `field`'s message: call right after the widget that sets it."""
        if field.split(".")[0] not in self.widgets:
            raise ValueError(f"{field} is not declared among this page's widgets")
        self._slots[field] = st.empty()
        self._fill(field)

    def _fill(self, field: str) -> None:
        message = self.errors.get(field)
        if message:
            self._slots[field].error(message, icon="⚠️")
        else:
            self._slots[field].empty()

    def show(self, errors: dict[str, str]) -> None:
        """Keep `errors` (they stay until the next submit) and redraw every place drawn so far."""
        st.session_state[self.key] = errors
        for field in self._slots:
            self._fill(field)

    def refuse(self, errors: dict[str, str], note: Any = None) -> None:
        """Nothing queued: each message beside its widget, and a line (in `note`, or here) that says so."""
        self.show(errors)
        fields = ", ".join(f or "the spec" for f in errors)
        (note or st.empty()).error(f"Not queued: check {fields} (each message is beside its setting).", icon="⚠️")

    def submit(self, spec: dict[str, Any], run_key: str) -> Optional[int]:
        """Validate and queue `spec`, saying so at once below the button: "checking" before the
        preflight starts, then "queued run #N" (and the run id in `st.session_state[run_key]`),
        or each message beside its widget and nothing queued."""
        unplaced = sorted(set(spec) - set(self._slots) - set(self.fixed))
        if unplaced:  # a page bug, loud: its message would have nowhere to show but the catch-all
            raise ValueError(f"the page sends {', '.join(unplaced)} without drawing a place for its message")
        note = st.empty()
        note.info("Checking the settings and queueing the run…", icon="⏳")
        try:
            run_id = jobs.submit(spec)
        except SpecError as exc:
            self.refuse(exc.errors, note)
            return None
        self.show({})
        st.session_state[run_key] = run_id
        note.success(f"Queued run #{run_id}.", icon="✅")
        return run_id

    def other_errors(self) -> None:
        """The catch-all: every message whose field has no place drawn on this render."""
        for field, message in self.errors.items():
            if field not in self._slots:
                st.error(f"{field}: {message}" if field else message, icon="⚠️")


def model_widgets(model: type[BaseModel], key_prefix: str, places: ErrorPlaces, field: str = "params") -> dict:
    """One widget per field of a pydantic model (a method's parameters), each with its message
    place `<field>.<name>` below it; returns {name: value}."""
    values = {}
    for name, info in model.model_fields.items():
        values[name] = field_widget(name, info, key=f"{key_prefix}{name}")
        places.field_error(f"{field}.{name}")
    return values


def field_widget(name: str, info: FieldInfo, key: str) -> Any:
    """The widget a pydantic field asks for: a selectbox for a Literal, a checkbox for a bool, a
    number box for an int or a float (inclusive bounds enforced by the box, exclusive ones by the
    spec's message), a text box otherwise; its description and bounds are the help."""
    bounds = {b: getattr(m, b) for m in info.metadata for b in ("ge", "gt", "le", "lt") if hasattr(m, b)}
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    limits = ", ".join(f"{signs[b]} {v:g}" for b, v in bounds.items())
    help_text = (info.description or "") + (f" ({name} {limits})" if limits else "")
    kind = info.annotation
    if get_origin(kind) is Literal:
        options = list(get_args(kind))
        return st.selectbox(name, options, index=options.index(info.default), help=help_text, key=key)
    if kind is bool:
        return st.checkbox(name, value=info.default, help=help_text, key=key)
    if kind is int:
        low = bounds["ge"] if "ge" in bounds else bounds["gt"] + 1 if "gt" in bounds else None
        high = bounds["le"] if "le" in bounds else bounds["lt"] - 1 if "lt" in bounds else None
        return int(st.number_input(name, low, high, info.default, step=1, help=help_text, key=key))
    if kind is float:
        low, high = bounds.get("ge", bounds.get("gt")), bounds.get("le", bounds.get("lt"))
        return float(st.number_input(name, None if low is None else float(low), None if high is None else float(high),
                                     float(info.default), format="%g", help=help_text, key=key))
    return st.text_input(name, str(info.default), help=help_text, key=key)


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
        jobs.cancel(run_id)


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
    from sparsity_core.catalog.presets import presets
    from sparsity_core.specs import parse_spec

    items, done_key = presets(lab), f"_preset_runs_{lab}"
    if not items:
        return
    with st.expander("🎓 Try this: a prepared comparison, one click", expanded=bool(st.session_state.get(done_key))):
        for i, preset in enumerate(items):
            st.markdown(f"**{preset.name}**  \n{preset.explanation}")
            if st.button(f"Run: {preset.name}", key=f"preset-{lab}-{i}"):
                note = st.empty()
                note.info("Checking the preset's runs…", icon="⏳")
                try:
                    specs = [parse_spec(spec) for spec in preset.specs]
                    for spec in specs:
                        jobs.preflight(spec)
                except SpecError as exc:
                    note.error(f"this preset cannot run here: {exc}", icon="⚠️")
                    continue
                note.empty()
                st.session_state[done_key] = [jobs.submit(spec) for spec in specs]
        ids = st.session_state.get(done_key)
        if ids:
            runs = ",".join(map(str, ids))
            st.success(f"queued runs {', '.join(f'#{i}' for i in ids)}: "
                       f"[follow them side by side on the compare page](compare?runs={runs}&view=curves)")
