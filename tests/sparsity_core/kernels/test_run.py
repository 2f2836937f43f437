"""The kernel job end to end on tiny inputs: spec checks, the sweep's metrics, a pruned model's
layers and forward (digits-mlp, its parent a pruning run chained without a store), and the one
parent rule."""

import json
import subprocess
import sys
import time

import pytest
import torch

from sparsity_core.jobs.context import ParentRun, RunContext
from sparsity_core.kernels.checks import preflight_kernel
from sparsity_core.kernels.model import capture_inputs, model_inputs, pick_auto
from sparsity_core.kernels.run import run_kernel
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import SpecError, parse_spec
from sparsity_core.zoo import load_model, prunable_linears

TINY = {"kind": "kernel", "shapes": [[64, 128]], "tokens": [8], "sparsities": [0.5, 0.9],
        "layouts": ["csr", "semi24", "shrunk"], "repeats": 3, "warmup": 1}


def test_spec_messages_a_person_understands():
    with pytest.raises(SpecError) as err:
        parse_spec({**TINY, "layouts": ["csr", "ell"], "block": 24, "shapes": [[0, 5]]})
    assert "unknown layout 'ell'" in err.value.errors["layouts"]
    assert "power of two" in err.value.errors["block"]
    assert "[out, in]" in err.value.errors["shapes"]
    assert parse_spec(TINY).layouts == ["dense", "csr", "semi24", "shrunk"]  # dense: the baseline


def test_nothing_to_measure_is_refused_before_queueing():
    with pytest.raises(SpecError) as err:
        preflight_kernel(parse_spec({**TINY, "shapes": []}), None)
    assert "at least one layer shape" in err.value.errors["shapes"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_anything_is_measured():
    ctx = RunContext()
    with pytest.raises(SpecError) as err:
        run_kernel(parse_spec({**TINY, "device": "cuda"}), ctx)
    assert "no CUDA GPU" in err.value.errors["device"] and "kernels_cuda.py" in err.value.errors["device"]
    assert ctx.metrics == []


def test_sweep_reports_speedup_error_and_unsupported():
    ctx = RunContext()
    run_kernel(parse_spec(TINY), ctx)
    speed = ctx.values("speedup", "dense|64x128|8")
    assert speed == {0.5: 1.0, 0.9: 1.0}  # dense over itself, timed in the same rounds
    for layout in ("csr", "shrunk"):
        errors = ctx.values("rel_error", f"{layout}|64x128|8")
        assert set(errors) == {0.5, 0.9} and max(errors.values()) < 1e-5
        assert all(v > 0 for v in ctx.values("latency_ms", f"{layout}|64x128|8").values())
    reasons = ctx.facts["unsupported"]
    assert "CUDA" in reasons["semi24|64x128|8 @ 0.5"] and "CUDA" in reasons["semi24|64x128|8 @ 0.9"]
    assert ctx.facts["device"]["torch_threads"] == ctx.facts["timing"]["threads"] >= 1
    assert ctx.artifacts["sweep"][1] == "parquet"


def pruning_parent(run_id: int, sparsities=(0.0, 0.9), model: str = "digits-mlp") -> ParentRun:
    """A finished magnitude pruning run of `model`, run by the pruning lab itself, seen as a parent."""
    spec = parse_spec({"kind": "prune", "model": model, "method": "magnitude", "sparsities": list(sparsities),
                       "eval_samples": 64})
    ctx = RunContext()
    run_prune(spec, ctx)
    return ctx.as_parent(run_id, spec)


@pytest.fixture(scope="module")
def digits_parent() -> ParentRun:
    return pruning_parent(11)


def test_pruned_model_layers_and_forward_match_the_masked_model(digits_parent):
    spec = parse_spec({"kind": "kernel", "model": "digits-mlp", "shapes": [], "parent_run": 11,
                       "repeats": 3, "batch": 16})
    preflight_kernel(spec, digits_parent)
    ctx = RunContext(parents=[digits_parent])
    run_kernel(spec, ctx)
    for s in (0.0, 0.9):
        assert ctx.values("rel_error", "model:auto")[s] < 1e-4
        assert ctx.values("rel_error", "model:per_layer")[s] < 1e-4  # the swapped model is checked too
        assert ctx.values("latency_ms", "model:dense")[s] > 0
    layer_series = {m["series"] for m in ctx.metrics if m["key"] == "layer_latency_ms"}
    assert {"dense|body.0", "csr|body.0", "dense|body.2", "csr|body.2"} <= layer_series
    chosen = ctx.facts["model"]["layouts_chosen"]
    assert sum(chosen["0"].values()) == 2 and sum(chosen["0.9"].values()) == 2
    assert ctx.facts["model"]["input_shape"] == [16, 8, 8]  # 16 digits test images


def test_auto_at_zero_sparsity_is_never_slower_than_dense(digits_parent):
    # 10 interleaved rounds (the job's cap) for a median that one load spike cannot move
    spec = parse_spec({"kind": "kernel", "model": "digits-mlp", "shapes": [], "parent_run": 11,
                       "repeats": 10, "batch": 32})
    ctx = RunContext(parents=[digits_parent])
    run_kernel(spec, ctx)
    pick = ctx.facts["model"]["auto"]["0"]
    dense_ms, auto_ms = ctx.values("latency_ms", "model:dense")[0.0], ctx.values("latency_ms", "model:auto")[0.0]
    assert pick["dense_ms"] == dense_ms and pick["per_layer_ms"] == ctx.values("latency_ms", "model:per_layer")[0.0]
    assert auto_ms == min(pick["dense_ms"], pick["per_layer_ms"]) <= dense_ms
    assert pick["chose"] == ("dense" if pick["dense_ms"] <= pick["per_layer_ms"] else "per_layer")
    assert ctx.values("speedup", "model:auto")[0.0] >= 1.0
    assert ctx.values("rel_error", "model:auto")[0.0] < 1e-4  # auto's output is the masked dense model's


class Sleepy(torch.nn.Module):
    """A model that is the given one plus a fixed wait: a hand-made slow candidate."""

    def __init__(self, model: torch.nn.Module, seconds: float):
        super().__init__()
        self.model, self.seconds = model, seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return self.model(x)


@pytest.mark.parametrize("slow, chose", [("per_layer", "dense"), ("dense", "per_layer")])
def test_auto_keeps_the_faster_whole_model(slow, chose):
    handle = load_model("digits-mlp")
    inputs = model_inputs(handle, batch=8, seed=0)
    # 20 ms: far above a digits forward (~0.1 ms) even when a load spike stalls a thread pool (~10 ms)
    dense = Sleepy(handle.model, 0.02) if slow == "dense" else handle.model
    swapped = Sleepy(handle.model, 0.02) if slow == "per_layer" else handle.model
    auto = pick_auto(dense, swapped, inputs, torch.device("cpu"), warmup=1, repeats=5)
    assert auto.chose == chose
    assert auto.auto_ms == (auto.dense if chose == "dense" else auto.per_layer).median_ms
    assert (auto.dense if slow == "dense" else auto.per_layer).median_ms >= 20.0
    assert auto.error == 0.0  # both candidates compute the same function here


def test_a_parent_of_another_model_is_refused():
    parent = ParentRun(id=3, kind="prune", model="digits-mlp", status="succeeded")
    with pytest.raises(SpecError) as err:
        preflight_kernel(parse_spec({"kind": "kernel", "model": "minilm-l6", "parent_run": 3}), parent)
    assert err.value.errors["parent_run"] == "run 3 is of digits-mlp, not minilm-l6: use that model"


@pytest.mark.parametrize("kind, what", [("explain", "an explanation"), ("sae", "an SAE")])
def test_a_parent_that_is_not_a_pruning_run_is_refused_by_the_one_rule(kind, what):
    parent = ParentRun(id=7, kind=kind, model="digits-mlp", status="succeeded")
    spec = parse_spec({"kind": "kernel", "model": "digits-mlp", "shapes": [], "parent_run": 7})
    for check in (lambda: preflight_kernel(spec, parent), lambda: run_kernel(spec, RunContext(parents=[parent]))):
        with pytest.raises(SpecError) as err:
            check()
        assert err.value.errors == {"parent_run": f"run 7 is {what} run; this needs a pruning run"}


def test_capture_removes_its_hooks_even_when_the_forward_fails():
    handle = load_model("digits-mlp")
    linears = prunable_linears(handle)
    with pytest.raises(RuntimeError):
        capture_inputs(handle.model, linears, {"x": torch.zeros(2, 3)})  # wrong input width
    assert all(not m._forward_pre_hooks for m in linears.values())


def test_the_preflight_loads_no_torch():
    code = ("import json, sys\n"
            "from sparsity_core.jobs.context import ParentRun\n"
            "from sparsity_core.kernels.checks import preflight_kernel\n"
            "from sparsity_core.specs import parse_spec\n"
            "parent = ParentRun(id=1, kind='prune', model='minilm-l6', status='succeeded', artifacts={'pruned@0.5': None})\n"
            "preflight_kernel(parse_spec({'kind': 'kernel', 'model': 'minilm-l6', 'parent_run': 1}), parent)\n"
            "print(json.dumps(sorted({'torch', 'transformers'} & set(sys.modules))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
