"""Bundles: a round trip into a fresh store keeps runs, metrics, links and artifacts intact; a
kernel bundle from a GPU machine comes in through the same importer; specs are read at their own
version; hostile or malformed bundles, and failures mid-import, leave the store exactly as it was."""

import hashlib
import json

import pandas as pd
import pytest
from safetensors.numpy import save_file

from db import repo
from sparsity_core.jobs.context import RunContext
from sparsity_core.kernels.run import run_kernel
from sparsity_core.paths import artifacts_dir, home
from sparsity_core.reports import bundle
from sparsity_core.reports.seed import seed_kernel, seed_pruning
from sparsity_core.specs import SCHEMA_VERSION, parse_spec

HOSTILE_NAME = "<script>alert(1)</script>"


def _fresh_store(monkeypatch, tmp_path, name):
    other = tmp_path / name
    other.mkdir()
    monkeypatch.setenv("SPARSITY_HOME", str(other))
    monkeypatch.setenv("SPARSITY_DB_URL", f"sqlite:///{other / 'sparsity.db'}")
    return other


def _with_artifact(run_id):
    import numpy as np

    path = artifacts_dir(run_id) / "masks-s0.5000.safetensors"
    save_file({"w": np.array([[0, 1], [1, 0]], dtype=np.uint8)}, str(path))
    repo.add_artifact(run_id, "masks@0.5", path, "safetensors")
    return path


def _snapshot():
    runs = repo.list_runs()
    files = sorted(p.relative_to(home()) for p in (home() / "artifacts").rglob("*")) \
        if (home() / "artifacts").exists() else []
    return [(r.id, r.name) for r in runs], len(repo.metrics_frame([r.id for r in runs])), files


def test_round_trip_into_a_fresh_store(tmp_path, monkeypatch):
    a = seed_pruning("magnitude", name=HOSTILE_NAME)
    repo.update_run_text(a, notes="line one\n<i>two</i> & three")
    k = seed_kernel(a)
    sha = hashlib.sha256(_with_artifact(a).read_bytes()).hexdigest()
    path = bundle.write_bundle([a, k], tmp_path / "b.json", with_artifacts=True)

    _fresh_store(monkeypatch, tmp_path, "colleague")
    seed_pruning("unrelated")  # ids in the new store differ from the bundle's
    new_a, new_k = bundle.import_bundle(path)
    run, kernel = repo.get_run(new_a), repo.get_run(new_k)
    assert (run.name, run.notes) == (HOSTILE_NAME, "line one\n<i>two</i> & three")
    assert kernel.parent_run_id == new_a and new_a != a
    assert kernel.spec["parent_run"] == new_a  # the spec names the parent of this store, too
    assert run.info["imported"]["bundle_run_id"] == a
    acc = repo.metrics_frame([new_a], key="accuracy")
    assert dict(zip(acc["x"], acc["value"]))[0.5] == pytest.approx(0.7)
    assert len(repo.metrics_frame([new_k])) == 2 * 2 * 5  # 2 keys x 2 layouts x 5 sparsities
    art = repo.artifact_path(new_a, "masks@0.5")
    assert hashlib.sha256(art.read_bytes()).hexdigest() == sha and str(new_a) in art.parent.name


def test_metrics_csv_is_long_format(tmp_path):
    a = seed_pruning("magnitude", name="a,b")
    lines = bundle.metrics_csv([a]).splitlines()
    assert lines[0] == "run_id,run_name,kind,key,series,x,value"
    assert f'{a},"a,b",prune,accuracy,,0.5,0.7' in lines


def _good_bundle(tmp_path):
    a = seed_pruning("magnitude")
    _with_artifact(a)
    return bundle.bundle_dict([a], with_artifacts=True)


def _set(data, dotted, value):
    *path, last = dotted.split(".")
    node = data
    for part in path:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value


@pytest.mark.parametrize("field, value, message", [
    ("format", "something-else", "not a Sparsity Lab bundle"),
    ("version", 99, "invalid bundle at version"),
    ("runs.0.metrics.0.value", "lots", "invalid bundle at runs.0.metrics.0.value"),
    ("runs.0.id", -3, "invalid bundle at runs.0.id"),
    ("runs.0.status", "hacked", "invalid bundle at runs.0.status"),
    ("runs.0.name", "x" * 5000, "invalid bundle at runs.0.name"),
    ("runs.0.artifacts.0.path", "../../../etc/passwd", "is not a plain file name"),
    ("runs.0.artifacts.0.path", "/etc/passwd", "is not a plain file name"),
    ("runs.0.artifacts.0.path", "sub/dir.safetensors", "is not a plain file name"),
    ("runs.0.artifacts.0.bytes", 10**12, "invalid bundle at runs.0.artifacts.0.bytes"),
    ("runs.0.artifacts.0.sha256", "0" * 64, "does not match its size / sha256"),
    ("runs.0.artifacts.0.data_b64", "%%%not base64%%%", "not valid base64"),
    ("runs.0.spec", ["not", "a", "dict"], "invalid bundle at runs.0.spec"),
    ("runs.0.surprise", 1, "invalid bundle at runs.0.surprise"),
    ("runs.0.name", "a\x00b", "holds a NUL character"),  # PostgreSQL's text cannot hold it: refused on both stores
    ("runs.0.spec.name", "a\x00b", "holds a NUL character"),
])
def test_hostile_or_malformed_bundles_change_nothing(tmp_path, field, value, message):
    data = _good_bundle(tmp_path)
    _set(data, field, value)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    before = _snapshot()
    with pytest.raises(bundle.BundleError, match=message) as err:
        bundle.import_bundle(path)
    assert "\n" not in str(err.value)
    assert _snapshot() == before


def test_not_json_too_big_and_duplicate_ids_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(bundle.BundleError, match="not valid JSON"):
        bundle.import_bundle(bad)
    data = _good_bundle(tmp_path)
    data["runs"].append(dict(data["runs"][0]))
    bad.write_text(json.dumps(data))
    with pytest.raises(bundle.BundleError, match="two runs share one id"):
        bundle.import_bundle(bad)
    monkeypatch.setattr(bundle, "MAX_BUNDLE_BYTES", 100)
    with pytest.raises(bundle.BundleError, match="a bundle is at most"):
        bundle.import_bundle(bad)


def test_a_failure_mid_import_rolls_back_rows_and_files(tmp_path, monkeypatch):
    data = _good_bundle(tmp_path)
    second = json.loads(json.dumps(data["runs"][0]))
    second["id"] += 1
    data["runs"].append(second)
    path = tmp_path / "two.json"
    path.write_text(json.dumps(data))
    before = _snapshot()
    calls = []

    def failing_dir(run_id):  # the disk fills up while writing the second run's files
        calls.append(run_id)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return artifacts_dir(run_id)

    monkeypatch.setattr(bundle, "artifacts_dir", failing_dir)
    with pytest.raises(OSError):
        bundle.import_bundle(path)
    assert _snapshot() == before


def test_queued_runs_arrive_cancelled_so_no_worker_picks_them_up(tmp_path):
    a = seed_pruning("magnitude")
    data = bundle.bundle_dict([a])
    data["runs"][0]["status"] = "queued"
    data["runs"][0]["artifacts"] = []
    path = tmp_path / "q.json"
    path.write_text(json.dumps(data))
    (new,) = bundle.import_bundle(path)
    assert repo.get_run(new).status == "cancelled"
    assert repo.get_run(new).info["imported"]["status_when_exported"] == "queued"


def test_a_db_failure_after_runs_and_metrics_are_written_rolls_everything_back(tmp_path, monkeypatch):
    data = _good_bundle(tmp_path)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    before = _snapshot()

    def broken_artifact_row(**row):  # the last insert of the transaction fails
        raise RuntimeError("the database went away")

    monkeypatch.setattr(repo, "Artifact", broken_artifact_row)
    with pytest.raises(RuntimeError, match="went away"):
        bundle.import_bundle(path)
    assert _snapshot() == before  # no run row, no metric row, no artifact file


def test_specs_are_read_at_their_own_version(tmp_path):
    a = seed_pruning("sparsegpt")
    data = bundle.bundle_dict([a])
    data["runs"][0]["spec"]["params"] = {}  # as version 1 stored "the defaults"
    data["runs"][0]["spec_version"] = 1
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data))
    (new,) = bundle.import_bundle(path)
    run = repo.get_run(new)
    assert (run.spec["params"], run.spec_version) == ({"damp": 0.01}, SCHEMA_VERSION)

    second = json.loads(json.dumps(data["runs"][0]))
    second.update(id=second["id"] + 1, spec_version=99)
    data["runs"].append(second)
    path.write_text(json.dumps(data))
    before = _snapshot()
    with pytest.raises(bundle.BundleError, match=f"run {second['id']}: spec version 99 is not one this release"):
        bundle.import_bundle(path)
    assert _snapshot() == before  # the readable first run is not stored either


TINY = {"kind": "kernel", "shapes": [[64, 128]], "tokens": [8], "sparsities": [0.9], "layouts": ["csr"],
        "repeats": 3, "warmup": 1}


@pytest.fixture(scope="module")
def kernel_bundle_text():
    """A real (tiny, CPU) kernel sweep as benchmarks/kernels_cuda.py writes it, as if measured on an H100."""
    spec = parse_spec(TINY)
    ctx = RunContext()
    run_kernel(spec, ctx)
    data = json.loads(json.dumps(bundle.kernel_bundle(spec, ctx)))  # through real JSON text
    data["info"]["device"]["gpu"] = "NVIDIA H100 80GB HBM3"
    return json.dumps(data)


def test_a_kernel_bundle_comes_in_as_a_finished_kernel_run(kernel_bundle_text):
    sent = json.loads(kernel_bundle_text)
    (run_id,) = bundle.import_bytes(kernel_bundle_text.encode(), "kernels-layers.json")
    run = repo.get_run(run_id)
    assert (run.kind, run.status, run.spec_version) == ("kernel", "succeeded", SCHEMA_VERSION)
    assert run.info["device"]["gpu"] == "NVIDIA H100 80GB HBM3" and run.name == "imported: NVIDIA H100 80GB HBM3"
    assert set(repo.metrics_frame([run_id], "speedup")["series"]) == {"dense|64x128|8", "csr|64x128|8"}
    assert len(repo.metrics_frame([run_id])) == len(sent["metrics"])
    sweep = pd.read_parquet(repo.artifact_path(run_id, "sweep"))
    assert len(sweep) == len(sent["sweep"]) == 2 and set(sweep["layout"]) == {"dense", "csr"}


def test_an_old_kernel_bundle_without_spec_version_reads_as_version_1(kernel_bundle_text):
    data = json.loads(kernel_bundle_text)
    del data["spec_version"]
    (run_id,) = bundle.import_bytes(json.dumps(data).encode())
    assert repo.get_run(run_id).spec_version == SCHEMA_VERSION  # read as 1, stored upgraded


@pytest.mark.parametrize("change, message", [
    ({"format": "something else"}, "not a Sparsity Lab bundle"),
    ({"version": 2}, "invalid bundle at version"),
    ({"spec": {"kind": "prune", "model": "digits-mlp"}}, "is not a kernel spec"),
    ({"spec_version": 99}, "run 1: spec version 99"),
    ({"metrics": [{"key": "speedup", "value": "fast"}]}, "invalid bundle at metrics.0.value"),
])
def test_a_bad_kernel_bundle_changes_nothing(kernel_bundle_text, change, message):
    data = {**json.loads(kernel_bundle_text), **change}
    before = _snapshot()
    with pytest.raises(bundle.BundleError, match=message):
        bundle.import_bytes(json.dumps(data).encode())
    assert _snapshot() == before


def test_a_kernel_bundle_whose_sweep_cannot_be_written_stores_no_run(kernel_bundle_text, monkeypatch):
    before = _snapshot()

    def full_disk(run_id):
        raise OSError("No space left on device")

    monkeypatch.setattr(bundle, "artifacts_dir", full_disk)
    with pytest.raises(OSError):
        bundle.import_bytes(kernel_bundle_text.encode())
    assert _snapshot() == before
