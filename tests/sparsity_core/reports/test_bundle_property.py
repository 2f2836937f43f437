"""Bundles, by property: any bundle, valid or hostile, either imports or is refused with one
BundleError, in under a second, never another exception; a refused one leaves the store as it was.

Hypothesis builds a valid store bundle (or kernel bundle) and applies up to three hostile edits to
it: duplicate artifact paths and names, a wrong sha256 / size / base64, NaN and Inf metrics, parent
cycles and self-parents, huge / negative / fractional spec versions, non-JSON bytes in a json
artifact, missing and extra keys, wrong types, nesting a thousand levels deep, very long strings,
dates beyond year 9999 in UTC, integers with thousands of digits, text that is not UTF-8 or not
JSON. Derandomized, so every run tries the same examples.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from db import repo
from sparsity_core.paths import home
from sparsity_core.reports import bundle

SETTINGS = dict(derandomize=True, deadline=5000, database=None,
                # one store for all examples (the autouse `store` fixture): each compares before/after itself
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
IMPORT_S = 1.0  # every import decides within this

PRUNE_SPEC = {"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0.5]}
NEST = "\"@@nest@@\""  # a placeholder value the text edits replace with deep nesting
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3),
                           max_leaves=8)


def _snapshot() -> tuple:
    runs = repo.list_runs()
    folder = home() / "artifacts"
    files = sorted(str(p) for p in folder.rglob("*")) if folder.exists() else []
    return len(runs), len(repo.metrics_frame([r.id for r in runs])), files


def _artifact(name: str, path: str, data: bytes, kind: str = "safetensors") -> dict:
    return {"name": name, "kind": kind, "path": path, "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data), "data_b64": base64.b64encode(data).decode()}


@st.composite
def valid_bundles(draw) -> dict:
    """1-4 runs; parents point to earlier runs of the bundle or outside it; some carry files."""
    n = draw(st.integers(1, 4))
    ids = draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n, unique=True))
    runs = []
    for i, run_id in enumerate(ids):
        parent = draw(st.one_of(st.none(), st.sampled_from(ids[:i]) if i else st.none(), st.integers(10**6 + 1, 10**7)))
        metrics = [{"key": draw(st.sampled_from(["accuracy", "sparsity", "loss"])), "series": "",
                    "x": draw(st.none() | st.floats(0, 1)), "value": draw(st.floats(-1e6, 1e6))}
                   for _ in range(draw(st.integers(0, 4)))]
        files = [_artifact(f"masks@{j}", f"masks-{j}.safetensors", draw(st.binary(max_size=64)))
                 for j in range(draw(st.integers(0, 2)))]
        runs.append({"id": run_id, "kind": "prune", "name": draw(st.none() | st.text(max_size=30)), "notes": None,
                     "model": "digits-mlp", "method": "magnitude",
                     "spec": {**PRUNE_SPEC, **({"parent_run": parent} if parent else {})},
                     "spec_version": draw(st.sampled_from([1, 2])), "status": draw(st.sampled_from(
                         ["succeeded", "failed", "cancelled", "queued", "running"])),
                     "parent_run": parent, "created_at": "2026-01-02T03:04:05", "started_at": None,
                     "finished_at": "2026-01-02T03:05:00+01:00", "error": None, "info": {"device": "cpu"},
                     "metrics": metrics, "artifacts": files})
    return {"format": "sparsity-lab-bundle", "version": 1, "exported_at": "2026-01-03T00:00:00Z", "runs": runs}


# ---------------------------------------------------------------- hostile edits of a store bundle
def _runs(data) -> list[dict]:
    runs = data.get("runs")
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


def _run(draw, data) -> dict:
    """A run of the bundle to edit (a kernel bundle is its own one run; {}: none left to edit)."""
    if data.get("format") == bundle.KERNEL_FORMAT:
        return data
    runs = _runs(data)
    return draw(st.sampled_from(runs)) if runs else {}


def _list(holder: dict, key: str) -> list:
    if not isinstance(holder.get(key), list):
        holder[key] = []
    return holder[key]


def _with_file(draw, data) -> dict:
    run = _run(draw, data)
    files = _list(run, "artifacts")
    if not files or not isinstance(files[0], dict):
        files.insert(0, _artifact("masks@9", "masks-9.safetensors", b"\x00\x01"))
    return run


def dup_path(draw, data):
    run = _with_file(draw, data)
    run["artifacts"].append({**run["artifacts"][0], "name": "another"})


def dup_name(draw, data):
    run = _with_file(draw, data)
    run["artifacts"].append({**run["artifacts"][0], "path": "another.safetensors"})


def wrong_file(draw, data):
    art = _with_file(draw, data)["artifacts"][0]
    field = draw(st.sampled_from(["sha256", "bytes", "data_b64", "path", "kind"]))
    art[field] = draw({"sha256": st.sampled_from(["0" * 64, "A" * 64, "xyz", ""]),
                       "bytes": st.sampled_from([0, -1, 10**12, 1.5]),
                       "data_b64": st.sampled_from(["!!!", "AAA", "é", "", None]),
                       "path": st.sampled_from(["../x", "/etc/passwd", "a/b", "..", ".", "", "x" * 300, "a\x00b"]),
                       "kind": st.sampled_from(["pickle", "", None])}[field])


def not_json_artifact(draw, data):
    _list(_run(draw, data), "artifacts").append(_artifact("views", "views.json", b"\x80{not json", "json"))


def not_finite(draw, data):
    run = _run(draw, data)
    bad = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    _list(run, "metrics").append({"key": "accuracy", "series": "", "x": draw(st.sampled_from([0.5, bad])),
                                          "value": bad})


def cycle(draw, data):
    runs = _runs(data)
    if len(runs) < 2 or draw(st.booleans()):
        run = _run(draw, data)
        run["parent_run"] = run.get("id")  # its own parent
    else:
        a, b = draw(st.permutations(runs))[:2]
        a["parent_run"], b["parent_run"] = b["id"], a["id"]


def spec_version(draw, data):
    _run(draw, data)["spec_version"] = draw(st.sampled_from(
        [0, -1, -2**63, 3, 10**4 + 1, 2**70, 1e30, 1.5, float("nan"), float("inf"), "2", True, None, [], 10**400]))


def old_spec_with_odd_params(draw, data):
    run = _run(draw, data)
    run["spec_version"] = 1
    run["spec"] = {**PRUNE_SPEC, "params": draw(json_values)}


def missing_key(draw, data):
    target = draw(st.sampled_from([data, _run(draw, data)]))
    if target:
        target.pop(draw(st.sampled_from(sorted(target))), None)


def extra_key(draw, data):
    draw(st.sampled_from([data, _run(draw, data)]))["surprise"] = draw(json_values)


def wrong_type(draw, data):
    target = draw(st.sampled_from([data, _run(draw, data)]))
    if target:
        target[draw(st.sampled_from(sorted(target)))] = draw(json_values)


def long_string(draw, data):
    run = _run(draw, data)
    field = draw(st.sampled_from(["name", "notes", "model", "kind", "method", "error"]))
    run[field] = draw(st.sampled_from(["x", "é", "\ud800", "a\x00b", "<script>"])) * draw(
        st.sampled_from([199, 200, 201, 501, 10_000, 100_001]))


def odd_date(draw, data):
    target = draw(st.sampled_from([data, _run(draw, data)]))
    field = "exported_at" if target is data else draw(st.sampled_from(["created_at", "started_at", "finished_at"]))
    target[field] = draw(st.sampled_from(["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "yesterday",
                                          "2026-02-30T00:00:00", 1e20, -1, 10**30, None]))


def deep(draw, data):
    run = _run(draw, data)
    where = draw(st.sampled_from(["info", "spec", "notes"]))
    if where == "notes":
        run["notes"] = "@@nest@@"
    else:
        run[where] = {**(run.get(where) if isinstance(run.get(where), dict) else {}), "deep": "@@nest@@"}


def same_ids(draw, data):
    if _runs(data):
        data["runs"].append(copy.deepcopy(_runs(data)[0]))


STORE_EDITS = [dup_path, dup_name, wrong_file, not_json_artifact, not_finite, cycle, spec_version,
               old_spec_with_odd_params, missing_key, extra_key, wrong_type, long_string, odd_date, deep, same_ids]


# ---------------------------------------------------------------- kernel bundles and their edits
def valid_kernel() -> dict:
    return {"format": "sparsity-lab/kernel-bundle", "version": 1, "spec_version": 2,
            "spec": {"kind": "kernel", "model": "digits-mlp", "device": "cuda"},
            "info": {"device": {"gpu": "H200"}},
            "metrics": [{"key": "speedup", "series": "", "x": 0.5, "value": 1.7}],
            "sweep": [{"shape": "64x64", "tokens": 8, "ms": 0.1}, {"shape": "64x64", "tokens": 16, "ms": 0.2}]}


def kernel_device(draw, data):
    if not isinstance(data.get("info"), dict):
        data["info"] = {}
    data["info"]["device"] = draw(json_values)


def kernel_sweep(draw, data):
    data["sweep"] = draw(st.sampled_from([
        [{"a": {}}], [{"a": 1}, {"a": "x"}], [{"a": 2**70}], [{"a": [[1], ["x"]]}], [{"a": None}], [{}],
        [{"a": float("nan")}], [{"a": [{"b": {}}]}], [{"a": 1}, {"b": [1, 2]}]]) | st.lists(
        st.dictionaries(st.sampled_from(["a", "b"]), json_values, max_size=2), max_size=3))


def kernel_spec(draw, data):
    data["spec"] = draw(st.sampled_from([{"kind": "prune", "model": "m"}, {"kind": "kernel"},
                                         {"kind": "kernel", "model": ""}, {"kind": "kernel", "model": 7},
                                         {"kind": "kernel", "model": "m", "name": {"a": 1}},
                                         {"kind": "kernel", "model": "m" * 10_000}]) | json_values)


def kernel_metric(draw, data):
    _list(data, "metrics").append({"key": "speedup", "x": None, "value": draw(st.sampled_from(
        [float("nan"), float("inf"), "1", None, 10**400]))})


KERNEL_EDITS = [kernel_device, kernel_sweep, kernel_spec, kernel_metric, missing_key, extra_key, wrong_type,
                spec_version, deep]


# ---------------------------------------------------------------- as text
def _text(draw, data) -> bytes:
    text = json.dumps(data, allow_nan=True)  # NaN / Infinity literals: what a careless writer emits
    if NEST.strip('"') in text:
        depth = draw(st.sampled_from([50, 500, 900, 960, 985, 2_000, 100_000]))
        text = text.replace(NEST, draw(st.sampled_from(["[" * depth + "]" * depth,
                                                          "{\"a\":" * depth + "1" + "}" * depth])))
    raw = text.encode("utf-8", "surrogatepass")
    edit = draw(st.sampled_from(["none"] * 6 + ["truncate", "latin1", "bom", "huge int", "top level"]))
    if edit == "truncate":
        raw = raw[:draw(st.integers(0, max(0, len(raw) - 1)))]
    elif edit == "latin1":
        raw = raw.replace(b"digits", b"d\xefgits", 1)
    elif edit == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif edit == "huge int":
        raw = raw.replace(b'"version": 1', b'"version": 1' + b"0" * 5000, 1)
    elif edit == "top level":
        raw = draw(st.sampled_from([b"[]", b"null", b"\"sparsity-lab-bundle\"", b"1e999", b"", b"{}"]))
    return raw


def _imports_or_refuses(raw: bytes, n_runs: int) -> None:
    before = _snapshot()
    started = time.perf_counter()
    try:
        new_ids = bundle.import_bytes(raw, "hostile.json")
    except bundle.BundleError as exc:
        assert time.perf_counter() - started < IMPORT_S
        assert str(exc) and "\n" not in str(exc)  # one line for a person
        assert _snapshot() == before  # refused: nothing stored, no file left behind
        event("refused")
        return
    assert time.perf_counter() - started < IMPORT_S
    assert len(new_ids) == n_runs and _snapshot()[0] == before[0] + n_runs
    event("imported")


@settings(max_examples=200, **SETTINGS)
@given(data=st.data())
def test_a_store_bundle_imports_or_is_refused_cleanly(data):
    bundle_dict = data.draw(valid_bundles())
    for edit in data.draw(st.lists(st.sampled_from(STORE_EDITS), max_size=3)):
        edit(data.draw, bundle_dict)
    runs = bundle_dict.get("runs")
    _imports_or_refuses(_text(data.draw, bundle_dict), len(runs) if isinstance(runs, list) else 0)


@settings(max_examples=100, **SETTINGS)
@given(data=st.data())
def test_a_kernel_bundle_imports_or_is_refused_cleanly(data):
    kernel = valid_kernel()
    for edit in data.draw(st.lists(st.sampled_from(KERNEL_EDITS), max_size=3)):
        edit(data.draw, kernel)
    _imports_or_refuses(_text(data.draw, kernel), 1)


def test_the_unedited_bundles_import():
    """The generators' starting points are valid: the property is not vacuous."""
    assert len(bundle.import_bytes(json.dumps(valid_kernel()).encode())) == 1
    data = json.loads(json.dumps(valid_kernel()))
    data["sweep"] = []
    assert len(bundle.import_bytes(json.dumps(data).encode())) == 1
