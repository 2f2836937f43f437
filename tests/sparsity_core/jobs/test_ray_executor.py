"""The Ray executor on a real two-node Ray cluster on this machine (ray.cluster_utils.Cluster):
runs spread over both nodes, cancel ends the task, a node removed mid-run fails only its run."""

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
    """A head and a second node, one CPU each, told apart by a custom resource."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1},
                                                      "include_dashboard": False})
    second = c.add_node(num_cpus=1, resources={"second": 1})
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c, second
    ray.shutdown()
    c.shutdown()


def start_worker(job: str, stale_after_s: float = 30.0):
    worker = Worker(poll_s=0.05, heartbeat_s=0.2, stale_after_s=stale_after_s,
                    executors={"prune": f"{JOBS}:{job}"}, executor=RayExecutor(max_concurrent=2))
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


def test_ten_runs_spread_over_both_nodes(cluster):
    c, second = cluster
    ids = [submit(SPEC) for _ in range(10)]
    worker, thread = start_worker("magnitude_job")
    try:
        wait_for(lambda: all(repo.get_run(i).status not in ("queued", "running") for i in ids), 90)
    finally:
        worker.stop.set()
        thread.join(timeout=30)
    runs = [repo.get_run(i) for i in ids]
    assert [r.status for r in runs] == ["succeeded"] * 10, [r.error for r in runs]
    for run_id in ids:
        frame = repo.metrics_frame([run_id], "sparsity")
        assert dict(zip(frame["x"], frame["value"])) == {0.25: 0.25, 0.5: 0.5}
    nodes = {r.info["executor"]["node"] for r in runs}
    assert nodes == {c.head_node.node_id, second.node_id}  # both nodes ran some
    assert {r.info["executor"]["name"] for r in runs} == {"ray"}
    assert {r.info["executor"]["device"] for r in runs} == {"cpu"}


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
