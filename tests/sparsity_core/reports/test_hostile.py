"""Hostile input seen whole (issue 18, items 5-7): bundles refused before anything is stored (NaN /
Inf metrics, two artifacts on one path, a tampered second file, parent cycles, an absurd
spec_version), run names that are markdown or HTML rendered as text in the report, and failed runs'
partial metrics marked; CSV cells that a spreadsheet would run as formulas neutralised."""

import base64
import copy
import csv
import hashlib
import io
import json

import pytest

from db import repo
from sparsity_core.paths import artifacts_dir, home
from sparsity_core.reports import bundle, compare, html_report, loaders
from sparsity_core.reports.seed import seed_pruning
from sparsity_core.specs import SCHEMA_VERSION

EVIL = "[x](http://evil.example) ![i](http://evil.example/i.png) <script>alert(1)</script>"


def _bundle_with_artifact():
    a = seed_pruning("magnitude")
    path = artifacts_dir(a) / "note.json"
    path.write_text('{"ok": 1}')
    repo.add_artifact(a, "note", path, "json")
    return bundle.bundle_dict([a], with_artifacts=True)


def _snapshot():
    runs = repo.list_runs()
    files = sorted(p.relative_to(home()) for p in (home() / "artifacts").rglob("*"))
    return [(r.id, r.name) for r in runs], len(repo.metrics_frame([r.id for r in runs])), files


def _second_run(data, parent_of_first, parent_of_second):
    first = data["runs"][0]
    second = copy.deepcopy(first)
    second["id"] = first["id"] + 1
    first["parent_run"], second["parent_run"] = parent_of_first, parent_of_second
    data["runs"].append(second)


def _nan(data):
    data["runs"][0]["metrics"][0]["value"] = float("nan")


def _inf(data):
    data["runs"][0]["metrics"][0]["value"] = float("inf")


def _same_path(data):
    twin = dict(data["runs"][0]["artifacts"][0], name="note-again")
    data["runs"][0]["artifacts"].append(twin)


def _tampered_second_file(data):
    art = dict(data["runs"][0]["artifacts"][0], name="other", path="other.json")
    art["data_b64"] = base64.b64encode(b'{"ok": 2}').decode()  # same length, sha256 of the first file
    data["runs"][0]["artifacts"].append(art)


def _cycle(data):
    first = data["runs"][0]["id"]
    _second_run(data, first + 1, first)


def _self_parent(data):
    data["runs"][0]["parent_run"] = data["runs"][0]["id"]


def _huge_spec_version(data):
    data["runs"][0]["spec_version"] = 1e30


@pytest.mark.parametrize("tamper, message", [
    (_nan, r"metric '\w+': value nan .* not finite \(NaN / Inf are refused\)"),
    (_inf, r"metric '\w+': value inf .* not finite"),
    (_same_path, "has two artifacts with path 'note.json'"),
    (_tampered_second_file, "artifact 'other' of run .* does not match its size / sha256"),
    (_cycle, r"parent runs form a cycle: (\d+) -> \d+ -> \1"),
    (_self_parent, r"parent runs form a cycle: (\d+) -> \1"),
    (_huge_spec_version, r"invalid bundle at runs.0.spec_version: spec_version 1e\+30 is not a whole number from 1 to 10000"),
])
def test_a_bundle_is_validated_whole_before_anything_is_stored(tmp_path, tamper, message):
    data = _bundle_with_artifact()
    run_id = data["runs"][0]["id"]
    tamper(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))  # NaN / Infinity / 1e+30 as Python's json writes them
    before = _snapshot()
    with pytest.raises(bundle.BundleError, match=message) as err:
        bundle.import_bundle(path)
    assert "\n" not in str(err.value)
    if tamper in (_nan, _inf, _same_path):
        assert f"run {run_id}" in str(err.value)
    assert _snapshot() == before


def test_a_parent_chain_that_leaves_the_bundle_imports(tmp_path):
    data = _bundle_with_artifact()
    first = data["runs"][0]["id"]
    _second_run(data, 999, first)  # 2 -> 1 -> 999 (not in the bundle): a tree, not a cycle
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(data))
    new_first, new_second = bundle.import_bundle(path)
    assert repo.get_run(new_second).parent_run_id == new_first
    assert hashlib.sha256(repo.artifact_path(new_first, "note").read_bytes()).hexdigest() == \
        data["runs"][0]["artifacts"][0]["sha256"]


def _live(page: str) -> list[str]:
    """What would make a browser fetch or run something from the hostile name."""
    return [s for s in ('href="http://evil', "src=\"http://evil", "<script>alert", "<img")
            if s in page]


def test_a_hostile_name_and_notes_are_text_in_the_report():
    a = seed_pruning("magnitude", slope=0.5, name=EVIL)
    repo.update_run_text(a, notes=EVIL)
    b = seed_pruning("wanda", slope=0.2)
    page = html_report.render_html(loaders.load_selection([a, b]))
    assert _live(page) == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, escaped, in the runs table and notes
    assert page.count("[x](http://evil.example)") >= 2


def failed_run() -> int:
    """A pruning run that measured two targets, then failed: its metrics are partial."""
    spec = {"kind": "prune", "model": "digits-mlp", "method": "wanda", "sparsities": [0.25, 0.5, 0.75]}
    run_id = repo.create_run(kind="prune", model="digits-mlp", method="wanda", name="stopped early", spec=spec,
                             spec_version=SCHEMA_VERSION, status="running")
    repo.add_metrics(run_id, [{"key": "accuracy", "x": 0.25, "value": 0.9}, {"key": "accuracy", "x": 0.5, "value": 0.8}])
    repo.finish_run(run_id, "failed", error="out of memory at target 75%")
    return run_id


def test_failed_runs_are_marked_partial_in_the_summary_and_the_report():
    a, b = seed_pruning("magnitude", slope=0.5), failed_run()
    selection = loaders.load_selection([a, b])
    summary = compare.metric_summary(selection.metrics, selection.runs)
    assert summary.loc[f"#{b} (failed)", "accuracy"] == pytest.approx(0.8)  # the last target it reached
    assert summary.loc[f"#{a}", "accuracy"] == pytest.approx(0.95 - 0.5 * 0.9)
    page = html_report.render_html(selection)
    assert f"#{b} (failed)" in page and f"#{a} (failed)" not in page
    assert compare.PARTIAL_NOTE in page


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised():
    names = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "plain"]
    ids = [seed_pruning("magnitude", name=n) for n in names]
    text = bundle.metrics_csv(ids)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    shown = {r["run_name"] for r in rows}
    assert shown == {"'=1+1", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx", "'\rx", "plain"}
    accuracy = [r for r in rows if r["key"] == "accuracy" and r["x"] == "0.5"]
    assert len(accuracy) == len(names) and {r["value"] for r in accuracy} == {"0.7"}  # numbers stay numbers
