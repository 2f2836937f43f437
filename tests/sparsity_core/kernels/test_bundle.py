"""A sweep measured elsewhere (a GPU machine) comes into the store as a JSON bundle."""

import json

import pytest

from db import repo
from sparsity_core.jobs.context import RunContext
from sparsity_core.kernels.bundle import import_bundle, make_bundle
from sparsity_core.kernels.run import run_kernel
from sparsity_core.specs import SpecError, parse_spec

TINY = {"kind": "kernel", "shapes": [[64, 128]], "tokens": [8], "sparsities": [0.9], "layouts": ["csr"],
        "repeats": 3, "warmup": 1}


def test_bundle_round_trip_keeps_metrics_and_fingerprint():
    spec = parse_spec(TINY)
    ctx = RunContext()
    run_kernel(spec, ctx)
    bundle = json.loads(json.dumps(make_bundle(spec, ctx)))  # through real JSON text
    bundle["info"]["device"]["gpu"] = "NVIDIA H100 80GB HBM3"  # as if measured there
    run_id = import_bundle(bundle)
    run = repo.get_run(run_id)
    assert run.status == "succeeded" and run.info["device"]["gpu"] == "NVIDIA H100 80GB HBM3"
    assert "H100" in run.name
    frame = repo.metrics_frame([run_id], "speedup")
    assert set(frame["series"]) == {"dense|64x128|8", "csr|64x128|8"}
    with pytest.raises(SpecError):
        import_bundle({"format": "something else"})
