"""The kernel job end to end on tiny inputs: spec checks, the sweep's metrics, a pruned model's
layers and forward (digits-mlp), and a bundle measured elsewhere coming into the store."""

import json

import pytest
import torch
from safetensors.torch import save_file

from db import repo
from sparsity_core.jobs import submit
from sparsity_core.kernels.bundle import import_bundle, make_bundle
from sparsity_core.kernels.model import capture_inputs
from sparsity_core.kernels.run import run_kernel
from sparsity_core.paths import artifacts_dir
from sparsity_core.progress import Progress
from sparsity_core.pruning.masks import unstructured_mask
from sparsity_core.specs import SCHEMA_VERSION, SpecError, parse_spec
from sparsity_core.zoo import ModelHandle, prunable_linears
from sparsity_core.zoo.digits_mlp import DigitsMLP

TINY = {"kind": "kernel", "shapes": [[64, 128]], "tokens": [8], "sparsities": [0.5, 0.9],
        "layouts": ["csr", "semi24", "shrunk"], "repeats": 3, "warmup": 1}


def test_spec_messages_a_person_understands():
    with pytest.raises(SpecError) as err:
        parse_spec({**TINY, "layouts": ["csr", "ell"], "block": 24, "shapes": [[0, 5]]})
    assert "unknown layout 'ell'" in err.value.errors["layouts"]
    assert "power of two" in err.value.errors["block"]
    assert "[out, in]" in err.value.errors["shapes"]
    assert parse_spec(TINY).layouts == ["dense", "csr", "semi24", "shrunk"]  # dense: the baseline


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_is_refused_before_queueing_without_a_gpu():
    with pytest.raises(SpecError) as err:
        submit({**TINY, "device": "cuda"})
    assert "no CUDA GPU" in err.value.errors["device"]
    assert repo.list_runs() == []


def test_sweep_reports_speedup_error_and_unsupported():
    progress = Progress()
    run_kernel(parse_spec(TINY), progress)
    speed = progress.values("speedup", "dense|64x128|8")
    assert speed == {0.5: 1.0, 0.9: 1.0}  # dense over itself, timed in the same rounds
    for layout in ("csr", "shrunk"):
        errors = progress.values("rel_error", f"{layout}|64x128|8")
        assert set(errors) == {0.5, 0.9} and max(errors.values()) < 1e-5
        assert all(v > 0 for v in progress.values("latency_ms", f"{layout}|64x128|8").values())
    reasons = progress.facts["unsupported"]
    assert "CUDA" in reasons["semi24|64x128|8 @ 0.5"] and "CUDA" in reasons["semi24|64x128|8 @ 0.9"]
    assert progress.facts["device"]["torch_threads"] == progress.facts["timing"]["threads"] >= 1
    assert progress.artifacts["sweep"][1] == "parquet"


def untrained_digits(*_args, **_kwargs) -> ModelHandle:
    """digits-mlp's architecture with seeded random weights: latency and the sparse-vs-dense check
    do not depend on training, and training it costs minutes on a busy 2-core machine."""
    torch.manual_seed(0)
    return ModelHandle("digits-mlp", DigitsMLP().eval(), "classifier", "mlp")


@pytest.fixture(autouse=True)
def fast_model(monkeypatch):
    monkeypatch.setattr("sparsity_core.kernels.model.load_model", untrained_digits)


def make_parent(sparsities=(0.0, 0.9)) -> int:
    """A finished digits-mlp pruning run with magnitude masks, written as the pruning lab does."""
    handle = untrained_digits()
    linears = prunable_linears(handle)
    run_id = repo.create_run(kind="prune", model="digits-mlp", method="magnitude", spec={},
                             spec_version=SCHEMA_VERSION, status="running")
    for s in sparsities:
        masks = {n: unstructured_mask(m.weight.abs(), s) for n, m in linears.items()}
        path = artifacts_dir(run_id) / f"masks-{s:g}.safetensors"
        save_file(masks, path)
        repo.add_artifact(run_id, f"masks@{s:g}", path, "safetensors")
        repo.add_metrics(run_id, [{"key": "accuracy", "x": s, "value": 0.9 - 0.1 * s}])
    repo.finish_run(run_id, "succeeded")
    return run_id


def test_pruned_model_layers_and_forward_match_the_masked_model():
    parent = make_parent()
    spec = parse_spec({"kind": "kernel", "model": "digits-mlp", "shapes": [], "parent_run": parent,
                       "repeats": 3, "batch": 16})
    progress = Progress()
    run_kernel(spec, progress)
    for s in (0.0, 0.9):
        assert progress.values("rel_error", "model:auto")[s] < 1e-4
        assert progress.values("latency_ms", "model:dense")[s] > 0
    layer_series = {m["series"] for m in progress.metrics if m["key"] == "layer_latency_ms"}
    assert {"dense|body.0", "csr|body.0", "dense|body.2", "csr|body.2"} <= layer_series
    chosen = progress.facts["model"]["layouts_chosen"]
    assert sum(chosen["0"].values()) == 2 and sum(chosen["0.9"].values()) == 2


def test_preflight_refuses_a_model_other_than_the_parents():
    parent = make_parent((0.5,))
    with pytest.raises(SpecError) as err:
        submit({"kind": "kernel", "model": "minilm-l6", "parent_run": parent})
    assert "digits-mlp" in err.value.errors["model"]


def test_capture_removes_its_hooks_even_when_the_forward_fails():
    handle = untrained_digits()
    linears = prunable_linears(handle)
    with pytest.raises(RuntimeError):
        capture_inputs(handle.model, linears, {"x": torch.zeros(2, 3)})  # wrong input width
    assert all(not m._forward_pre_hooks for m in linears.values())


def test_bundle_round_trip_keeps_metrics_and_fingerprint():
    spec = parse_spec({**TINY, "layouts": ["csr"], "sparsities": [0.9]})
    progress = Progress()
    run_kernel(spec, progress)
    bundle = json.loads(json.dumps(make_bundle(spec, progress)))  # through real JSON text
    bundle["info"]["device"]["gpu"] = "NVIDIA H100 80GB HBM3"  # as if measured there
    run_id = import_bundle(bundle)
    run = repo.get_run(run_id)
    assert run.status == "succeeded" and run.info["device"]["gpu"] == "NVIDIA H100 80GB HBM3"
    assert "H100" in run.name
    frame = repo.metrics_frame([run_id], "speedup")
    assert set(frame["series"]) == {"dense|64x128|8", "csr|64x128|8"}
    with pytest.raises(SpecError):
        import_bundle({"format": "something else"})
