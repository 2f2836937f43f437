"""A self-contained HTML report of selected runs: one file that opens offline and can be mailed.

    page = render_html(load_selection([3, 7]))      # reports.loaders reads the selection

It holds the runs' configurations, metric tables, every comparison figure (plotly.js is inlined,
so no network is needed to render them), device fingerprints and evaluation setups, package
versions and dates. Jinja2 autoescaping escapes all user text (run names, notes, errors); figure
labels are escaped by the figure builders and plotly writes `</` inside its JSON as `<\\/`.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from typing import Optional

import jinja2
import pandas as pd
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from sparsity_core.reports import compare
from sparsity_core.reports.figures import metric_label, readable_table, run_ref, text
from sparsity_core.reports.pruning import layer_sparsity_pair

PACKAGES = ("torch", "transformers", "captum", "plotly", "pandas", "streamlit", "sqlalchemy", "pydantic")

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:">
<title>Sparsity Lab report: runs {{ run_ids }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
 table { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .85rem; }
 th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
 th { background: #f3f3f3; } pre { background: #f7f7f7; padding: .5rem; white-space: pre-wrap; }
 .note { white-space: pre-wrap; } .muted { color: #666; font-size: .85rem; }
</style>
<script>{{ plotlyjs }}</script>
</head><body>
<h1>Sparsity Lab report</h1>
<p class="muted">Generated {{ generated }} · runs {{ run_ids }} · Python {{ python }}
 · {% for name, version in packages.items() %}{{ name }} {{ version }}{% if not loop.last %}, {% endif %}{% endfor %}</p>

<h2>Runs</h2>
<table><tr><th>run</th><th>kind</th><th>name</th><th>model</th><th>method</th><th>status</th>
<th>parent</th><th>created (UTC)</th><th>notes</th></tr>
{% for r in runs %}<tr><td>{{ r.id }}</td><td>{{ r.kind }}</td><td>{{ r.name }}</td><td>{{ r.model }}</td>
<td>{{ r.method }}</td><td>{{ r.status }}</td><td>{{ r.parent_run }}</td>
<td>{{ r.created }}</td><td class="note">{{ r.notes }}</td></tr>
{% endfor %}</table>

<h2>Configuration (settings that differ)</h2>
{{ config_diff }}
<details><summary>All settings</summary>{{ config_all }}</details>

<h2>Metrics ({{ summary_title }})</h2>
{% if partial %}<p class="muted">{{ partial }}</p>{% endif %}
{{ summary }}

{% for title, fig in figures %}<h2>{{ title }}</h2>
{{ fig }}
{% endfor %}

<h2>Evaluation setup and device of each run</h2>
{% for r in runs %}<h3>{{ r.id }} {{ r.name }}</h3><pre>{{ r.info }}</pre>
{% if r.error %}<p>error: {{ r.error }}</p>{% endif %}
{% endfor %}
</body></html>
"""


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE)


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _table(frame: pd.DataFrame) -> Markup:
    # cells as a reader sees them (percent for fractions, empty where there is no value); pandas
    # escapes cell text and headers itself (escape=True is its default)
    return Markup(readable_table(frame).to_html(escape=True, border=0))


def _figure(fig) -> Markup:
    return Markup(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def report_figures(runs: pd.DataFrame, children: pd.DataFrame, metrics: pd.DataFrame,
                   summary: pd.DataFrame, quality_key: Optional[str]) -> list[tuple[str, object]]:
    """Every comparison figure the selection allows, as (title, plotly figure)."""
    figures: list[tuple[str, object]] = [(f"{fig.layout.title.text or 'Metrics'} against target sparsity", fig)
                                         for fig in compare.curves_figures(metrics, runs)]
    if quality_key:
        both = pd.concat([runs, children]).drop_duplicates("id")
        points = compare.quality_latency_frame(both, metrics, quality_key)
        if len(points):
            figures.append((f"{metric_label(quality_key)} against measured latency",
                            compare.quality_latency_figure(points, quality_key)))
    if len(runs) > 1:
        figures.append(("Parallel coordinates", compare.parallel_figure(runs, summary)))
    layer = metrics[(metrics["key"] == "layer_sparsity") & metrics["run_id"].isin(runs["id"])]
    if len(layer):
        xs = compare.x_values(layer)
        x = xs[len(xs) // 2]  # the middle target: the extremes (0 and the sparsest) say least
        figures.append((f"Per-layer sparsity at target {x:.0%}", layer_sparsity_pair(metrics, runs, x)))
    return figures


def quality_metric(metrics: pd.DataFrame) -> Optional[str]:
    """The quality metric a pruning run reports (accuracy, probe accuracy, perplexity...)."""
    keys = set(metrics.loc[metrics["series"] == "", "key"])
    for key in ("accuracy", "probe_accuracy", "perplexity", "embedding_cosine"):
        if key in keys:
            return key
    candidates = sorted(keys - {"sparsity", "latency_ms", "speedup"})
    return candidates[0] if candidates else None


def render_html(selection: compare.Selection, how: str = "last", at_x: Optional[float] = None) -> str:
    """The report of a selection of runs as one HTML string."""
    runs, children, metrics = selection
    run_ids = [int(i) for i in runs["id"]]
    summary = compare.metric_summary(metrics, runs, how, at_x)
    # every cell through text(): a missing name or method is empty, never 'None' or 'nan'
    rows = [{"id": run_ref(r.id), "kind": text(r.kind), "name": text(r.name), "model": text(r.model),
             "method": text(r.method), "status": text(r.status), "parent_run": run_ref(r.parent_run),
             "created": r.created_at.isoformat(sep=" ", timespec="seconds"), "notes": text(r.notes),
             "info": json.dumps(r.info, indent=1, default=str)[:20_000],
             "error": text(r.error)} for r in runs.itertuples()]
    return _template().render(
        run_ids=", ".join(f"#{i}" for i in run_ids), runs=rows, plotlyjs=Markup(get_plotlyjs()),
        generated=datetime.now(timezone.utc).isoformat(sep=" ", timespec="seconds"),
        python=platform.python_version(), packages=package_versions(),
        config_diff=_table(compare.config_table(runs, differences_only=True)),
        config_all=_table(compare.config_table(runs)),
        summary_title=f"value at target sparsity {at_x:.0%}" if how == "at" else f"{how} value",
        summary=_table(summary), partial=compare.PARTIAL_NOTE if compare.has_failed(runs) else "",
        figures=[(t, _figure(f)) for t, f in report_figures(runs, children, metrics, summary,
                                                              quality_metric(metrics))])
