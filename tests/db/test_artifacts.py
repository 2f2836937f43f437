"""Artifact files through db.artifacts: checked on read, and shared through SPARSITY_ARTIFACTS so a
node that did not write a file can still read it."""

import hashlib
import shutil

import pytest

from db import repo
from db.artifacts import ArtifactError
from sparsity_core.paths import artifacts_dir, home

SPEC = {"kind": "prune", "model": "digits-mlp", "sparsities": [0.5]}


def _run_with_file(data: bytes = b"0123456789") -> tuple[int, str]:
    run_id = repo.create_run(kind="prune", model="digits-mlp", spec=SPEC, spec_version=2)
    path = artifacts_dir(run_id) / "views.json"
    path.write_bytes(data)
    repo.add_artifact(run_id, "views", path, "json")
    return run_id, f"artifacts/run-{run_id:06d}/views.json"


def test_default_store_keeps_the_file_in_place_and_checks_it_on_read():
    run_id, key = _run_with_file()
    (art,) = repo.list_artifacts(run_id)
    assert art.path == key and art.bytes == 10
    assert art.sha256 == hashlib.sha256(b"0123456789").hexdigest()  # sha256 of the bytes, by hand
    assert repo.artifact_path(run_id, "views") == home() / key
    (home() / key).write_bytes(b"9876543210")  # same size, other bytes: a swapped file
    with pytest.raises(ArtifactError, match="does not match its recorded sha256"):
        repo.artifact_path(run_id, "views")


def test_a_shared_root_serves_a_node_that_lacks_the_file(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setenv("SPARSITY_ARTIFACTS", f"file://{shared}")
    run_id, key = _run_with_file()
    assert (shared / key).read_bytes() == b"0123456789"  # uploaded when recorded

    shutil.rmtree(artifacts_dir(run_id))  # another node: the writer's folder is not here
    local = repo.artifact_path(run_id, "views")
    assert local != home() / key and local.read_bytes() == b"0123456789"  # from this node's cache
    assert repo.artifact_path(run_id, "views") == local  # and the second read reuses it


def test_a_tampered_shared_copy_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setenv("SPARSITY_ARTIFACTS", str(shared))  # a plain folder works as well as a URL
    run_id, key = _run_with_file()
    shutil.rmtree(artifacts_dir(run_id))
    (shared / key).write_bytes(b"tampered!!")
    with pytest.raises(ArtifactError, match="does not match its recorded sha256"):
        repo.artifact_path(run_id, "views")


def test_a_folder_artifact_round_trips_through_the_shared_root(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setenv("SPARSITY_ARTIFACTS", str(shared))
    run_id = repo.create_run(kind="sae", model="minilm-l6", spec=SPEC, spec_version=2)
    folder = artifacts_dir(run_id) / "saelens"
    (folder / "sub").mkdir(parents=True)
    (folder / "cfg.json").write_text("{}")
    (folder / "sub" / "w.bin").write_bytes(b"\x00\x01")
    repo.add_artifact(run_id, "saelens", folder, "dir")
    shutil.rmtree(artifacts_dir(run_id))
    local = repo.artifact_path(run_id, "saelens")
    assert (local / "cfg.json").read_text() == "{}" and (local / "sub" / "w.bin").read_bytes() == b"\x00\x01"


def test_delete_removes_the_shared_copies(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setenv("SPARSITY_ARTIFACTS", str(shared))
    run_id, key = _run_with_file()
    assert (shared / key).exists()
    repo.delete_run(run_id)
    assert not (shared / key).exists() and not (shared / key).parent.exists()
