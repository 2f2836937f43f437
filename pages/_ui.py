"""Widgets the lab pages share: a spec's messages beside its widgets, feedback the moment a run is
submitted, widgets drawn from a pydantic model, the run a page's URL names (`?run=ID`) with live
progress and a link to share, the sidebar's status, "Try this".

Streamlit-only glue over the catalog, specs, jobs, reports and db: nothing here (or in a page)
loads torch, which tests/pages/test_house_rules.py checks by rendering each page in a fresh
interpreter.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Literal, Optional, get_args, get_origin
from urllib.parse import urlencode

import streamlit as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from db import repo
from db.engine import database_url
from db.models import utcnow
from pages._access import READ_ONLY, may_change
from sparsity_core import jobs
from sparsity_core.reports import loaders
from sparsity_core.reports.compare import md_text
from sparsity_core.reports.estimate import duration_text, eta
from sparsity_core.specs import BaseSpec, SpecError, parse_spec

ACTIVE = ("queued", "running")
# run kind -> the URL path of the lab page that shows it (app.py's st.Page file names; Pruning, the
# default page, answers at / and at /pruning alike)
LAB_PAGES = {"prune": "pruning", "sae": "sae", "explain": "explain", "kernel": "kernels"}
A_RUN = {"prune": "a pruning run", "sae": "an SAE run", "explain": "an explanation run",
         "kernel": "a kernel latency run"}
RUN_ID = re.compile(r"[0-9]{1,18}")  # fits the store's 64-bit id; a longer one would overflow the query


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
            places.submit(spec)   # feedback at once; messages beside their widgets; ?run=<id>
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

    def submit(self, spec: dict[str, Any]) -> Optional[int]:
        """Validate and queue `spec`, saying so at once below the button: "checking" before the
        preflight starts, then "queued run #N" and the page's URL set to `?run=N` (so a reload or a
        copied address opens that run), or each message beside its widget and nothing queued."""
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
        st.query_params.from_dict({"run": run_id})  # a new run: any other parameter was the old run's
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


def progress_text(run, now) -> str:
    """`run #7 running: target 50%: pruning layer 3/36 · about 40 s left`: the lab's stage in its
    own words, and the time left at the pace so far once 5% is done (nothing before: no guess)."""
    text = f"run #{run.id} {run.status}: {run.message or ''}"
    left = eta(run.started_at, run.progress, now) if run.status == "running" else None
    return text if left is None else f"{text} · about {duration_text(left)} left"


def _progress_line(run) -> None:
    st.progress(run.progress, text=progress_text(run, utcnow()))


@st.fragment(run_every=1.0)
def _poll(run_id: int) -> None:
    run = repo.get_run(run_id)
    if run is None or run.status not in ACTIVE:
        st.rerun(scope="app")  # finished: redraw the page once, with results and no polling
    _progress_line(run)
    button, note = st.columns([1, 4], vertical_alignment="center")
    refused_key = f"_cancel_refused_{run_id}"  # the fragment redraws every second: the refusal stays said
    if button.button("Cancel run", key=f"cancel-{run_id}"):
        if may_change():
            jobs.cancel(run_id)
        else:
            st.session_state[refused_key] = True
    if st.session_state.get(refused_key):
        note.error(READ_ONLY, icon="🔒")


def follow_run(run_id: int, draw_results: Callable[[Any], None]) -> None:
    """Live progress while the run is queued or running; its results once it has ended."""
    run = repo.get_run(run_id)
    if run is None:
        st.warning(missing(run_id))
        return
    if run.status in ACTIVE:
        _poll(run_id)
        return
    if run.status == "failed":
        st.error(f"run #{run.id} failed: {md_text(run.error)}")  # an imported run's error: text, never markdown
        if run.traceback:
            with st.expander("traceback"):
                st.code(run.traceback)
        return
    if run.status == "cancelled":
        st.warning(f"run #{run.id} was cancelled")
    draw_results(run)


@st.cache_data(ttl=30, show_spinner=False)
def _estimate_text(store: str, spec_json: str) -> Optional[str]:
    # keyed by the store too: one server process can be pointed at another store (tests do)
    found = loaders.estimate_for(parse_spec(spec_json))
    return found.text if found else None


def estimate_line(spec: dict[str, Any]) -> None:
    """Before launching: how long the run the widgets describe takes here, from similar runs in the
    store (`reports.estimate`); nothing while the spec does not validate or no similar run finished.
    One store query, cached for 30 s per spec, so typing in a box stays fast."""
    try:
        parsed = parse_spec(spec)
    except SpecError:
        return
    text = _estimate_text(database_url(), parsed.model_dump_json())
    if text:
        st.caption(f"⏱️ Expected time: {text}")


def missing(run_id: int) -> str:
    return f"run #{run_id} does not exist (it may have been deleted)"


def url_run(kind: str) -> Any:
    """The run of `kind` that the page's URL names (`?run=ID`), or None: no `run` in the URL, or
    one line saying what is wrong with it (not a number, no such run, a run of another lab).

    Streamlit drops the URL's parameters when the sidebar switches pages, so a page reached that way
    puts back the run it last showed in this session: the URL then names it, as a reload needs."""
    text, last = st.query_params.get("run"), f"_last_run_{kind}"
    if text is None and last in st.session_state:
        text = st.query_params["run"] = str(st.session_state[last])
    if text is None:
        return None
    if not RUN_ID.fullmatch(text.strip()):
        st.warning(f"`run={text[:40].replace('`', '')}` in this address is not a run id (a whole number)", icon="⚠️")
        return None
    run = repo.get_run(int(text))
    if run is None:
        st.warning(missing(int(text)), icon="⚠️")
        st.session_state.pop(last, None)  # said once; the next visit opens no run
        return None
    if run.kind != kind:
        page = LAB_PAGES.get(run.kind)
        where = f": [open it in its lab]({page}?run={run.id})" if page else ""
        st.warning(f"run #{run.id} is {A_RUN.get(run.kind, run.kind)}, not {A_RUN[kind]}{where}", icon="⚠️")
        return None
    st.session_state[last] = run.id
    return run


def run_url(run) -> str:
    """The address of `run` on its lab page with this page's other URL parameters (SAE's latent):
    absolute from the browser's own URL (so it travels under any host and base path), relative
    where the request gave none."""
    page = LAB_PAGES[run.kind]
    query = urlencode({**st.query_params.to_dict(), "run": run.id})
    here = st.context.url
    if not here:
        return f"{page}?{query}"
    root = here.removesuffix("/").removesuffix(f"/{page}")  # the default page answers at the root too
    return f"{root}/{page}?{query}"


def share_link(run) -> None:
    url = run_url(run)
    if url.startswith("http"):
        st.caption("Link to this run: it opens the run as it finished, in any browser that reaches this server")
        st.code(url, language=None)  # st.code has a copy button
    else:
        st.markdown(f"🔗 [Link to this run]({url}): copy it to share the run as it finished")


def show_url_run(kind: str, draw_results: Callable[[Any], None]) -> bool:
    """The run the page's URL names, live while it runs and as it finished afterwards, with a link to
    share: the URL, not the session, says which run a page shows, so a reload or a fresh browser
    opens the same one. The link is drawn last, so it carries what the results put in the URL.
    Returns whether the URL named a run (one that could not be shown included)."""
    run = url_run(kind)
    if run is None:
        return "run" in st.query_params
    st.subheader(f"Run #{run.id}")
    link = st.container()
    follow_run(run.id, draw_results)
    with link:
        share_link(run)
    return True


def cluster_text(workers) -> Optional[str]:
    """"Ray: 2 nodes, 1 of 2 CPUs free, 0 of 0 GPUs free", from what a Ray worker last reported."""
    for w in workers:
        info = w.info or {}
        if info.get("executor") == "ray" and info.get("cluster"):
            cluster = info["cluster"]
            total, free = cluster.get("total") or {}, cluster.get("available") or {}
            parts = [f"{free.get(r, 0):g} of {total.get(r, 0):g} {r}s free" for r in ("CPU", "GPU")]
            return f"Ray: {len(cluster.get('nodes') or [])} node(s), " + ", ".join(parts)
    return None


def sidebar_status() -> None:
    from sqlalchemy.engine import make_url

    with st.sidebar:
        st.caption("Store")
        st.code(make_url(database_url()).render_as_string(hide_password=True), language=None)
        counts = repo.count_by_status()
        st.caption(" · ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no runs yet")
        workers = repo.live_workers()
        if workers:
            busy = [w for w in workers if w.current_run_id]
            st.success(f"{len(workers)} worker(s) alive, {len(busy)} busy", icon="🟢")
            if (cluster := cluster_text(workers)) is not None:
                st.caption(cluster)
        else:
            st.warning("no worker is running: queued runs wait. Start one with "
                       "`python -m sparsity_core worker`", icon="🟠")


def preset_button(lab: str) -> None:
    """"Try this": one button per prepared comparison of `lab` (sparsity_core.catalog.presets), with
    the time it takes here when the preset names one. Every spec is checked before any is queued,
    so a preset runs whole or not at all; then links open the compare page with the new runs
    selected and, for a one-run preset, that run's own page."""
    from sparsity_core.catalog.presets import presets
    from sparsity_core.specs import parse_spec

    items, done_key = presets(lab), f"_preset_runs_{lab}"
    if not items:
        return
    with st.expander("🎓 Try this: a prepared comparison, one click", expanded=bool(st.session_state.get(done_key))):
        for i, preset in enumerate(items):
            st.markdown(f"**{preset.name}**  \n{preset.explanation}")
            button, eta = st.columns([3, 2], vertical_alignment="center")
            clicked = button.button(f"Run: {preset.name}", key=f"preset-{lab}-{i}")
            expected = getattr(preset, "expected_s", None)
            if expected is not None:
                eta.caption(f"about {expected} s here")
            if clicked:
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
                st.session_state[done_key] = [(jobs.submit(spec), spec.kind) for spec in specs]
        queued = st.session_state.get(done_key)
        if queued:
            ids = [run_id for run_id, _ in queued]
            links = [f"[follow them side by side on the compare page](compare?runs={','.join(map(str, ids))}"
                     f"&view=curves)"]
            if len(queued) == 1:
                run_id, kind = queued[0]
                links.insert(0, f"[open run #{run_id} on its page]({LAB_PAGES[kind]}?run={run_id})")
            st.success(f"queued run{'s' * (len(ids) > 1)} {', '.join(f'#{i}' for i in ids)}: {' or '.join(links)}")
