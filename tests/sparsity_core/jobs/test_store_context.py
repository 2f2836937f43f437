"""The store's run context: reports land in the store as they happen, and a parent read back from
the store is the very view an in-memory context gives of the same run."""

import pytest

from db import repo
from sparsity_core.jobs import api, submit
from sparsity_core.jobs.api import load_pruned_run, preflight
from sparsity_core.jobs.context import ParentRun
from sparsity_core.jobs.executors import EXECUTORS, PREFLIGHTS
from sparsity_core.jobs.store_context import StoreContext, parent_run
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import SCHEMA_VERSION, SPECS, SpecError, parse_spec

PRUNE = {"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0.5, 0.9]}


def test_every_report_goes_through_to_the_store():
    run_id = repo.create_run(kind="prune", model="digits-mlp", spec=PRUNE, spec_version=SCHEMA_VERSION,
                             status="running")
    ctx = StoreContext(run_id)
    ctx.update(0.4, "halfway there")
    ctx.metric("accuracy", 0.9, x=0.5)
    ctx.metric("layer_sparsity", 0.52, x=0.5, series="body.0")
    path = ctx.artifact_dir / "notes.json"
    path.write_text('{"a": 1}')
    ctx.artifact("notes", path, "json")
    ctx.info(evaluation={"dataset": "digits"})
    ctx.info(device={"name": "cpu"})
    run = repo.get_run(run_id)
    assert (run.progress, run.message) == (0.4, "halfway there")
    assert run.info == {"evaluation": {"dataset": "digits"}, "device": {"name": "cpu"}}
    frame = repo.metrics_frame([run_id])
    assert list(zip(frame["key"], frame["series"], frame["x"], frame["value"])) == [
        ("accuracy", "", 0.5, 0.9), ("layer_sparsity", "body.0", 0.5, 0.52)]
    assert repo.artifact_path(run_id, "notes") == path
    assert ctx.values("accuracy") == {0.5: 0.9}  # and it keeps everything in memory, as RunContext does


@pytest.fixture
def pruned():
    """A real magnitude run of digits-mlp at 0.5 and 0.9, made through the store's context."""
    spec = parse_spec(PRUNE)
    run_id = submit(spec, status="running")
    ctx = StoreContext(run_id)
    run_prune(spec, ctx)
    repo.finish_run(run_id, "succeeded")
    return run_id, spec, ctx


def test_a_parent_from_the_store_is_the_parent_the_run_context_gives(pruned, store):
    run_id, spec, ctx = pruned
    stored = StoreContext(run_id + 1).parent(run_id)
    assert stored == ctx.as_parent(run_id, spec)
    assert stored.targets() == [0.5, 0.9]
    assert stored.path("masks@0.5") == store / "artifacts" / f"run-{run_id:06d}" / "masks-s0.5.safetensors"
    assert stored.path("masks@0.5").is_file()
    assert parent_run(run_id) == stored  # what the preflight reads


def test_load_pruned_run_rebuilds_the_stored_model(pruned):
    run_id, _, _ = pruned
    measured = repo.metrics_frame([run_id], "layer_sparsity")
    measured = dict(zip(measured.loc[measured["x"] == 0.5, "series"], measured.loc[measured["x"] == 0.5, "value"]))
    handle = load_pruned_run(run_id, 0.5)
    zeros = {name: float((handle.model.get_submodule(name).weight == 0).float().mean()) for name in measured}
    assert len(zeros) == 2 and zeros == pytest.approx(measured)  # the layers the run pruned, as it measured them
    assert zeros == pytest.approx(dict.fromkeys(zeros, 0.5), abs=0.01)
    assert load_pruned_run(run_id).meta["target_sparsity"] == 0.9  # no sparsity: the highest
    with pytest.raises(KeyError, match="no run 99"):
        load_pruned_run(99)


def test_no_run_is_no_parent_and_an_unreadable_spec_names_the_parent_field():
    assert parent_run(42) is None and StoreContext(1).parent(42) is None
    newer = repo.create_run(kind="prune", model="digits-mlp", spec=PRUNE, spec_version=99, status="succeeded")
    with pytest.raises(SpecError) as err:
        parent_run(newer)
    assert list(err.value.errors) == ["parent_run"] and "spec version 99" in err.value.errors["parent_run"]


def test_a_stored_version_1_parent_comes_back_upgraded():
    run_id = repo.create_run(kind="prune", model="digits-mlp", method="sparsegpt", status="succeeded",
                             spec={**PRUNE, "method": "sparsegpt", "params": {}}, spec_version=1)
    assert parent_run(run_id).spec["params"] == {"damp": 0.01}  # sparsegpt's default, filled in


def test_preflight_reads_the_parent_once_and_hands_it_to_the_lab(monkeypatch):
    run_id = repo.create_run(kind="prune", model="digits-mlp", spec=PRUNE, spec_version=SCHEMA_VERSION,
                             status="succeeded")
    seen = []
    monkeypatch.setattr(api, "resolve", lambda target: lambda spec, parent: seen.append((target, parent)))
    preflight(parse_spec({"kind": "kernel", "parent_run": run_id}))
    preflight(parse_spec({"kind": "kernel", "parent_run": 77}))
    preflight(parse_spec({"kind": "kernel", "shapes": [[8, 8]]}))
    expected = ParentRun(id=run_id, kind="prune", model="digits-mlp", status="succeeded", spec=PRUNE, artifacts={})
    assert seen == [(PREFLIGHTS["kernel"], expected), (PREFLIGHTS["kernel"], None), (PREFLIGHTS["kernel"], None)]


def test_every_kind_has_a_job_and_a_preflight():
    assert set(EXECUTORS) == set(PREFLIGHTS) == set(SPECS)
