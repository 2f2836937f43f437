"""The Ray executor on a real two-node Ray cluster on this machine (ray.cluster_utils.Cluster):
runs spread over both nodes (test jobs on SQLite and PostgreSQL; ten real digits-mlp prunes on
PostgreSQL), a CUDA run waits for a GPU node and runs there, cancel ends the task, a node removed
mid-run fails only its run."""

import threading
import time

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from db import repo  # noqa: E402
from sparsity_core.jobs import cancel, submit  # noqa: E402
from sparsity_core.jobs.ray_executor import RayExecutor  # noqa: E402
from sparsity_core.jobs.worker import Worker  # noqa: E402

JOBS = "tests.sparsity_core.jobs.jobs_for_tests"
SPEC = {"kind": "prune", "model": "digits-mlp", "sparsities": [0.25, 0.5]}


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node, one CPU and no GPU each (even on a machine with one: the GPU test
    adds its own), told apart by a custom resource."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "resources": {"head": 1},
                                                      "include_dashboard": False})
    second = c.add_node(num_cpus=1, num_gpus=0, resources={"second": 1})
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c, second
    ray.shutdown()
    c.shutdown()


def start_worker(job: str | None, stale_after_s: float = 30.0, kind: str = "prune"):
    """A worker on the cluster, two runs at once; `job` replaces the core function of `kind` (None:
    the real core runs)."""
    worker = Worker(poll_s=0.05, heartbeat_s=0.2, stale_after_s=stale_after_s,
                    executors={kind: f"{JOBS}:{job}"} if job else None, executor=RayExecutor(max_concurrent=2))
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    return worker, thread


def wait_for(check, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (value := check()):
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s")


def run_all(ids, worker_args, timeout_s):
    """Start a worker, wait until every run in `ids` ended, stop the worker; the runs."""
    worker, thread = start_worker(*worker_args)
    try:
        wait_for(lambda: all(repo.get_run(i).status not in ("queued", "running") for i in ids), timeout_s)
    finally:
        worker.stop.set()
        thread.join(timeout=30)
    return worker, [repo.get_run(i) for i in ids]


def test_test_jobs_spread_over_both_nodes(cluster, db_url):
    """On SQLite and on the real PostgreSQL store: the Ray tasks write to the store they are given."""
    c, second = cluster
    ids = [submit(SPEC) for _ in range(10)]
    _, runs = run_all(ids, ("magnitude_job",), 90)
    assert [r.status for r in runs] == ["succeeded"] * 10, [r.error for r in runs]
    for run_id in ids:
        frame = repo.metrics_frame([run_id], "sparsity")
        assert dict(zip(frame["x"], frame["value"])) == {0.25: 0.25, 0.5: 0.5}
    nodes = {r.info["executor"]["node"] for r in runs}
    assert nodes == {c.head_node.node_id, second.node_id}  # both nodes ran some
    assert {r.info["executor"]["name"] for r in runs} == {"ray"}
    assert {r.info["executor"]["device"] for r in runs} == {"cpu"}


def test_ten_real_digits_prunes_spread_over_both_nodes_on_postgresql(cluster, pg_url):
    """Issue 15: the real core function (sparsity_core.pruning.run), not a test job: ten digits-mlp
    prunes, each on a Ray node, all succeed with their accuracy and measured sparsity in PostgreSQL,
    and both nodes ran some."""
    c, second = cluster
    ids = [submit({"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0.5],
                   "seed": i, "name": f"digits on ray {i}"}) for i in range(10)]
    worker, runs = run_all(ids, (None,), 240)
    assert [r.status for r in runs] == ["succeeded"] * 10, [r.error for r in runs]
    assert {r.worker for r in runs} == {worker.id}
    assert {r.info["executor"]["name"] for r in runs} == {"ray"}
    assert {r.info["executor"]["device"] for r in runs} == {"cpu"}
    assert {r.info["executor"]["node"] for r in runs} == {c.head_node.node_id, second.node_id}
    for run_id in ids:
        accuracy = repo.metrics_frame([run_id], "accuracy").set_index("x")["value"]
        assert 0.1 < accuracy[0.5] <= 1.0  # top-1 on the 359 test digits, above chance (10 classes)
        sparsity = repo.metrics_frame([run_id], "sparsity").set_index("x")["value"]
        assert sparsity[0.5] == pytest.approx(0.5, abs=0.01)  # what it measured in the pruned weights
        assert {a.name for a in repo.list_artifacts(run_id)} >= {"masks@0.5", "pruned@0.5"}


def test_a_cuda_run_waits_for_a_gpu_node_and_runs_there(cluster):
    """A kernel spec asking for CUDA gets num_gpus=1: on a cluster without a GPU it waits, claimed
    but not failed, and once a node with a GPU joins it runs there, on that node's GPU. (Ray takes the
    GPU count on trust; the test job never touches CUDA.) The GPU node is removed afterwards."""
    c, _ = cluster
    assert ray.cluster_resources().get("GPU", 0) == 0
    run_id = submit({"kind": "kernel", "device": "cuda", "shapes": [[8, 8]], "sparsities": [0.5]})
    worker, thread = start_worker("gpu_job", kind="kernel")
    gpu_node = None
    try:
        wait_for(lambda: repo.get_run(run_id).status == "running", 20)  # claimed, its Ray task submitted
        time.sleep(4.0)
        run = repo.get_run(run_id)
        assert run.status == "running" and run.error is None, (run.status, run.error)
        assert "executor" not in (run.info or {})  # no node took it: the task is pending in Ray
        assert run_id in worker.active
        gpu_node = c.add_node(num_cpus=1, num_gpus=1, resources={"gpu_node": 1})
        c.wait_for_nodes()
        wait_for(lambda: repo.get_run(run_id).status not in ("queued", "running"), 60)
        run = repo.get_run(run_id)
        assert run.status == "succeeded", run.error
        assert run.info["executor"]["node"] == gpu_node.node_id
        assert run.info["executor"]["device"] == "cuda (GPU 0)"
        assert run.info["cuda_visible_devices"] == "0"  # Ray gave the task that GPU
    finally:
        worker.stop.set()
        thread.join(timeout=30)
        if gpu_node is not None:
            c.remove_node(gpu_node)
    assert ray.cluster_resources().get("GPU", 0) == 0  # the later tests see the two CPU nodes only


def test_cancel_ends_the_running_task(cluster):
    run_id = submit(SPEC)
    worker, thread = start_worker("ticking_job")
    try:
        wait_for(lambda: repo.get_run(run_id).message == "ticking")
        assert cancel(run_id) == "running"
        wait_for(lambda: repo.get_run(run_id).status == "cancelled", 20)
        wait_for(lambda: not worker.active, 20)  # the task ended: the worker dropped it
        ticks = len(repo.metrics_frame([run_id]))
        time.sleep(1.0)
        assert len(repo.metrics_frame([run_id])) == ticks  # nothing written after the cancel
    finally:
        worker.stop.set()
        thread.join(timeout=30)


def test_a_lost_node_fails_its_run_and_the_others_go_on(cluster):
    """Last in the module: it removes the second node for good."""
    c, second = cluster
    victims = [submit(SPEC), submit(SPEC)]  # two tickers: one per node (each has one CPU)
    worker, thread = start_worker("ticking_job")
    try:
        on = wait_for(lambda: {repo.get_run(i).info.get("executor", {}).get("node"): i for i in victims}
                      if all(repo.get_run(i).info.get("executor") for i in victims) else None)
        assert set(on) == {c.head_node.node_id, second.node_id}
        lost, other = on[second.node_id], on[c.head_node.node_id]
        started = time.monotonic()
        c.remove_node(second, allow_graceful=False)
        wait_for(lambda: repo.get_run(lost).status == "failed", worker.stale_after_s)
        assert time.monotonic() - started < worker.stale_after_s  # within the heartbeat window
        assert repo.get_run(lost).error.startswith("node lost")
        assert repo.get_run(other).status == "running"  # the other run goes on
        cancel(other)
        after = submit({**SPEC})
        worker.executors["prune"] = f"{JOBS}:magnitude_job"
        wait_for(lambda: repo.get_run(after).status == "succeeded", 60)
    finally:
        worker.stop.set()
        thread.join(timeout=30)
