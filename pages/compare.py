"""Compare: any number of runs side by side, a link that reproduces the view, exports that travel."""

from functools import partial

import pandas as pd
import streamlit as st

from pages._access import READ_ONLY, may_change
from sparsity_core.reports import bundle, compare, html_report, loaders
from sparsity_core.reports.explain import explanation_pair, explanation_pair_figure, same_example
from sparsity_core.reports.figures import label, metric_help
from sparsity_core.reports.pruning import layer_sparsity_pair
from sparsity_core.reports.sae import downstream_key, match_histogram, pareto_figure


def summary_columns(summary: pd.DataFrame) -> dict:
    """Numbers stay numbers (sortable); fractions read as percent, each column with its metric's help."""
    keys = summary.attrs.get("metric_keys", {})
    percent = set(compare.percent_columns(summary))
    return {c: st.column_config.NumberColumn(c, help=metric_help(keys.get(c, c)) or None,
                                             format="percent" if c in percent else "%.4g")
            for c in summary.columns}

VIEWS = {"table": "Tables", "curves": "Curves", "latency": "Quality vs latency",
         "parallel": "Parallel coordinates", "panels": "Two runs", "lineage": "Lineage", "share": "Export"}
SUMMARY_HELP = {"last": "value at the sparsest point", "min": "smallest value", "max": "largest value",
                "at": "value at the x you choose (interpolated between measured points)"}

st.title("⚖️ Compare")
st.markdown(
    "Pick runs from any lab and see them side by side: which settings differ, what each run "
    "measured, its metrics against sparsity on one chart, and, where a latency run was made from a "
    "pruning run, how much quality each millisecond saved costs. The address bar keeps the "
    "selection: copy it to share this exact view with someone using the same server.")


# Step 1: the URL seeds the state once per session (a shared link opens the same view)
def _from_url() -> None:
    q = st.query_params
    st.session_state["cmp_runs"] = compare.parse_ids(q.get("runs", ""))
    st.session_state["cmp_view"] = q.get("view") if q.get("view") in VIEWS else "table"
    st.session_state["cmp_diff"] = q.get("diff") == "1"
    st.session_state["cmp_summary"] = q.get("summary") if q.get("summary") in compare.SUMMARIES else "last"
    try:
        st.session_state["cmp_x"] = float(q.get("x", 0.5))
    except ValueError:
        st.session_state["cmp_x"] = 0.5


if "cmp_runs" not in st.session_state:
    _from_url()
for key in ("cmp_diff", "cmp_summary", "cmp_x"):  # keep view settings while their widgets are hidden
    st.session_state[key] = st.session_state[key]

all_runs = loaders.all_runs()
if all_runs.empty:
    st.info("No runs yet: start one from a lab page, or import a bundle below.")
known = set(all_runs["id"].astype(int))
lost = [i for i in st.session_state["cmp_runs"] if i not in known]
if lost:
    st.warning(f"run(s) {', '.join(f'#{i}' for i in lost)} are not in this store")
    st.session_state["cmp_runs"] = [i for i in st.session_state["cmp_runs"] if i in known]

# Step 2: filters narrow what the picker offers; the selection itself is never capped
with st.expander("Filter runs", expanded=False):
    c1, c2, c3, c4 = st.columns(4)
    kinds = c1.multiselect("Kind", sorted(all_runs["kind"].unique()), key="cmp_f_kind")
    models = c2.multiselect("Model", sorted(all_runs["model"].unique()), key="cmp_f_model")
    methods = c3.multiselect("Method", sorted(all_runs["method"].dropna().unique()), key="cmp_f_method")
    statuses = c4.multiselect("Status", sorted(all_runs["status"].unique()), key="cmp_f_status")
    c5, c6 = st.columns([1, 2])
    dates = c5.date_input("Created between", value=(), key="cmp_f_dates")
    text = c6.text_input("Name, notes, model or method contains", key="cmp_f_text")
since, until = (tuple(dates) + (None, None))[:2] if isinstance(dates, (list, tuple)) else (dates, dates)
shown = compare.filter_runs(all_runs, kinds=kinds, models=models, methods=methods, statuses=statuses,
                            since=since, until=until or since, text=text)
labels = {int(r.id): f"{label(r, escape=False)} · {r.status}" for r in all_runs.itertuples()}


def _add(ids: list[int]) -> None:
    st.session_state["cmp_runs"] = list(dict.fromkeys([*st.session_state["cmp_runs"], *ids]))


options = list(dict.fromkeys([*st.session_state["cmp_runs"], *shown["id"].astype(int)]))
pick, add_all = st.columns([5, 1])
selected = pick.multiselect("Runs to compare", options, key="cmp_runs", format_func=labels.get,
                            placeholder="choose runs (any number)")
add_all.button(f"Add all {len(shown)} shown", on_click=_add, args=([int(i) for i in shown["id"]],),
               disabled=shown.empty)
view = st.radio("View", list(VIEWS), key="cmp_view", format_func=VIEWS.get, horizontal=True)

# Step 3: the state goes back into the URL, so the address bar is always a link to this view
st.query_params.from_dict({k: v for k, v in {
    "runs": ",".join(map(str, selected)), "view": view, "diff": "1" if st.session_state["cmp_diff"] else None,
    "summary": st.session_state["cmp_summary"] if view == "table" else None,
    "x": f"{st.session_state['cmp_x']:g}" if st.session_state["cmp_summary"] == "at" else None,
}.items() if v})

if not selected:
    st.info("Select at least one run above.")
    st.stop()

selection = loaders.load_selection(selected)
runs, children, metrics = selection


# Step 4: the chosen view
def view_table() -> None:
    diff = st.toggle("Differences only", key="cmp_diff", help="hide settings every selected run shares")
    st.dataframe(compare.config_table(runs, differences_only=diff), width="stretch")
    left, right = st.columns([2, 1])
    how = left.radio("Summarise each metric by its", compare.SUMMARIES, key="cmp_summary", horizontal=True,
                     format_func=lambda h: f"{h}: {SUMMARY_HELP[h]}" if h == "at" else h, help=str(SUMMARY_HELP))
    at_x = right.number_input("x (target sparsity)", 0.0, 1.0, step=0.05, key="cmp_x", disabled=how != "at")
    summary = compare.metric_summary(metrics, runs, how, at_x if how == "at" else None)
    st.dataframe(summary, column_config=summary_columns(summary), width="stretch")
    if compare.has_failed(runs):
        st.caption(compare.PARTIAL_NOTE)


def view_curves() -> None:
    figs = compare.curves_figures(metrics, runs)
    cols = st.columns(min(2, len(figs)))
    for i, fig in enumerate(figs):
        cols[i % len(cols)].plotly_chart(fig, key=f"cmp-curve-{i}")


def view_latency() -> None:
    both = pd.concat([runs, children]).drop_duplicates("id")
    keys = [k for k in sorted(metrics.loc[metrics["series"] == "", "key"].unique()) if k != "sparsity"]
    default = html_report.quality_metric(metrics)
    if not keys:
        st.info("The selected runs have no quality metric.")
        return
    quality = st.selectbox("Quality metric", keys, index=keys.index(default) if default in keys else 0,
                           key="cmp_quality")
    points = compare.quality_latency_frame(both, metrics, quality)
    st.plotly_chart(compare.quality_latency_figure(points, quality), key="cmp-latency")
    if len(points):
        front = compare.pareto_front(points, "latency_ms", quality, quality not in compare.LOWER_IS_BETTER)
        st.caption("On the Pareto front (nothing else is both faster and better):")
        st.dataframe(front, hide_index=True)


def view_parallel() -> None:
    summary = compare.metric_summary(metrics, runs, st.session_state["cmp_summary"],
                                     st.session_state["cmp_x"] if st.session_state["cmp_summary"] == "at" else None)
    choices = compare.parallel_axes(runs, summary)
    axes = st.multiselect("Axes", choices, default=compare.default_parallel_axes(runs, summary),
                          max_selections=compare.MAX_PARALLEL_AXES, key="cmp_parallel_axes",
                          help="settings that differ between the runs, then metric summaries; "
                               f"at most {compare.MAX_PARALLEL_AXES} stay readable")
    st.plotly_chart(compare.parallel_figure(runs, summary, axes=axes), key="cmp-parallel")


def view_panels() -> None:
    pruning = runs[runs["kind"] == "prune"]
    if len(pruning) < 1:
        st.info("Per-layer comparison needs pruning runs in the selection.")
    else:
        pair = st.multiselect("Pruning runs", list(pruning["id"].astype(int)), default=list(pruning["id"][:2]),
                              format_func=labels.get, key="cmp_pair", max_selections=4)
        xs = compare.x_values(metrics[(metrics["key"] == "layer_sparsity") & metrics["run_id"].isin(pair)])
        if pair and xs:
            x = st.select_slider("Target sparsity", xs, value=xs[len(xs) // 2], key="cmp_pair_x")
            st.plotly_chart(layer_sparsity_pair(metrics, runs[runs["id"].isin(pair)], x), key="cmp-pair")
    _explanation_pair()
    _sae_pair()
    others = runs[runs["kind"] != "prune"]
    for kind, group in others.groupby("kind"):
        st.subheader(f"{compare.md_text(kind)} runs")
        summary = compare.metric_summary(metrics, group, "last")
        st.dataframe(summary, column_config=summary_columns(summary), width="stretch")


def _explanation_pair() -> None:
    skipped: list[str] = []
    found = loaders.explanations(runs.loc[runs["kind"] == "explain", "id"], skipped)
    if skipped:
        st.warning(compare.md_text(f"not an explanation (not JSON, or fields missing), left out: {', '.join(skipped)}"))
    if len(found) < 2:
        return
    st.subheader("Two explanations of one test example")
    names = [name for name, _ in found]
    left, right = st.columns(2)
    first = left.selectbox("Explanation A", names, key="cmp_expl_a")
    same = [n for n, e in found if n != first and same_example(dict(found)[first], e)]
    if not same:
        st.info("no other selected explanation is of the same test example")
        return
    second = right.selectbox("Explanation B", same, key="cmp_expl_b")
    a, b = dict(found)[first], dict(found)[second]
    table, overlap = explanation_pair(a, b)
    st.caption(f"A predicts {compare.md_text(a['prediction']['name'])}, "
               f"B predicts {compare.md_text(b['prediction']['name'])}; "
               f"top-k shared: excitatory {overlap['excitatory']:.0%}, inhibitory {overlap['inhibitory']:.0%}")
    st.plotly_chart(explanation_pair_figure(a, b, (first, second)), key="cmp-expl")
    st.dataframe(table, hide_index=True, width="stretch")


def _sae_pareto(sae_runs: list[int]) -> None:
    """Every selected SAE (each point of an L0 sweep, or a run's own SAE) on FVE / downstream
    against L0, one line per variant: runs of one variant at several k form its curve."""
    frame = metrics[metrics["run_id"].isin(sae_runs)]
    if frame.empty:
        return
    st.subheader("SAEs against L0 (one line per variant)")
    variants = {int(r.id): r.method for r in runs[runs["kind"] == "sae"].itertuples()}
    down = downstream_key(frame)
    for col, key in zip(st.columns(2), ["fve", *([down] if down else [])]):
        col.plotly_chart(pareto_figure(frame, key, labels, groups=variants), key=f"cmp-pareto-{key}")
        col.caption(metric_help(key))


def _sae_pair() -> None:
    sae_runs = [int(i) for i in runs.loc[runs["kind"] == "sae", "id"]]
    if sae_runs:
        _sae_pareto(sae_runs)
    if len(sae_runs) < 2:
        return
    st.subheader("Matched features of two SAEs")
    left, right = st.columns(2)
    first = left.selectbox("SAE A", sae_runs, format_func=labels.get, key="cmp_sae_a")
    second = right.selectbox("SAE B", [i for i in sae_runs if i != first], format_func=labels.get, key="cmp_sae_b")
    try:
        matches = loaders.sae_matches(first, second)
    except ValueError as exc:
        st.warning(compare.md_text(exc))
        return
    if matches is None:
        st.info("one of these runs saved no decoder (W_dec) to match features on")
        return
    st.plotly_chart(match_histogram(matches, f"#{first}", f"#{second}"), key="cmp-sae")


def view_lineage() -> None:
    for run_id in selected:
        parent, kids = loaders.lineage(run_id)
        st.markdown(f"**{compare.md_text(labels.get(run_id, f'#{run_id}'))}**")  # a name is text, never markdown
        related = ([("parent", parent)] if parent else []) + [("child", k) for k in kids]
        if not related:
            st.caption("no parent, no children")
        for i, (role, other) in enumerate(related):
            st.button(compare.md_text(f"add {role} #{other.id} {other.kind} {other.method or ''}"),
                      key=f"lin-{run_id}-{i}",
                      on_click=_add, args=([other.id],), disabled=other.id in selected)


def view_share() -> None:
    ids = list(selected)
    st.markdown("A **report** opens offline in any browser (charts included) and can be mailed. "
                "A **bundle** loads these runs into another store: "
                "`python -m sparsity_core import bundle.json`, or the uploader below.")
    c1, c2, c3 = st.columns(3)
    c1.download_button("HTML report", partial(html_report.render_html, selection, st.session_state["cmp_summary"],
                       st.session_state["cmp_x"] if st.session_state["cmp_summary"] == "at" else None),
                       file_name="sparsity-report.html", mime="text/html", on_click="ignore")
    c2.download_button("JSON bundle", partial(_bundle_text, ids), file_name="sparsity-bundle.json",
                       mime="application/json", on_click="ignore")
    c3.download_button("Metrics CSV", partial(bundle.metrics_csv, ids), file_name="sparsity-metrics.csv",
                       mime="text/csv", on_click="ignore")
    st.file_uploader("Import a bundle", type=["json"], key="cmp_upload")
    st.button("Import", key="cmp_import", on_click=_import, disabled=st.session_state.get("cmp_upload") is None)
    if st.session_state.pop("cmp_import_refused", False):
        st.error(READ_ONLY, icon="🔒")
    if st.session_state.get("cmp_import_msg"):
        ok, message = st.session_state.pop("cmp_import_msg")
        (st.success if ok else st.error)(compare.md_text(message))  # it may quote the bundle's own strings


def _bundle_text(ids: list[int]) -> str:
    import json

    return json.dumps(bundle.bundle_dict(ids))


def _import() -> None:
    """Callback (runs before the script, so it may change the selection)."""
    if not may_change():  # the one control here that changes the store
        st.session_state["cmp_import_refused"] = True
        return
    upload = st.session_state.get("cmp_upload")
    if upload is None:  # removed from the uploader between drawing the button and clicking it
        st.session_state["cmp_import_msg"] = (False, "not imported: choose a bundle file first")
        return
    try:
        new_ids = bundle.import_bytes(upload.getvalue(), upload.name)
    except bundle.BundleError as exc:
        st.session_state["cmp_import_msg"] = (False, f"not imported, nothing changed: {exc}")
        return
    _add(new_ids)
    st.session_state["cmp_import_msg"] = (True, f"imported {len(new_ids)} run(s) "
                                                f"{', '.join(f'#{i}' for i in new_ids)}, added to the selection")


{"table": view_table, "curves": view_curves, "latency": view_latency, "parallel": view_parallel,
 "panels": view_panels, "lineage": view_lineage, "share": view_share}[view]()
