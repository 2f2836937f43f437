"""Scale-out: the same small runs on (a) the local worker with SQLite and (b) the Ray executor on a
two-node Ray cluster on this machine with a real PostgreSQL store.

    .venv/bin/python benchmarks/scale.py            # 40 digits-mlp runs, 3 sparsities each
    .venv/bin/python benchmarks/scale.py --runs 10  # quicker

Per setup it prints the wall time from the first claim to the last run's end, the per-run overhead
(claim -> first progress the store shows, polled every 50 ms: the executor's start-up cost), and
runs lost (not succeeded) or run twice (attempts > 1). Exits non-zero when a target is missed:
Ray's median overhead under 1 s, (b) at least as fast as (a) in total, nothing lost or run twice.
Run it alone: it uses every core.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db import pgserver, repo  # noqa: E402
from db.models import FINISHED, utcnow  # noqa: E402
from sparsity_core.jobs import submit  # noqa: E402

SPEC = {"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0.25, 0.5, 0.75]}


def drive(name: str, worker_args: list[str], n_runs: int) -> dict:
    """Queue `n_runs`, start a worker process with `worker_args`, poll the store until all end."""
    ids = [submit(SPEC) for _ in range(n_runs)]
    first_progress: dict[int, float] = {}
    worker = subprocess.Popen([sys.executable, "-m", "sparsity_core", "worker", *worker_args], cwd=ROOT,
                              env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 60 * 30
        while time.monotonic() < deadline:
            runs = [repo.get_run(i) for i in ids]
            now = utcnow()
            for run in runs:
                if run.id not in first_progress and run.started_at and (run.progress > 0 or run.status in FINISHED):
                    first_progress[run.id] = (now - run.started_at).total_seconds()
            if all(r.status in FINISHED for r in runs):
                break
            if worker.poll() is not None:
                raise SystemExit(f"{name}: the worker exited: {worker.stderr.read()[-2000:]}")
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    runs = [repo.get_run(i) for i in ids]
    wall = (max(r.finished_at for r in runs if r.finished_at) - min(r.started_at for r in runs if r.started_at))
    overheads = sorted(first_progress.values())
    return {"setup": name, "runs": n_runs, "wall_s": wall.total_seconds(),
            "overhead_median_s": statistics.median(overheads), "overhead_max_s": overheads[-1],
            "lost": sum(r.status != "succeeded" for r in runs), "twice": sum(r.attempts > 1 for r in runs),
            "nodes": len({(r.info.get("executor") or {}).get("node") or (r.info.get("executor") or {}).get("host")
                          for r in runs})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparsity-scale-") as tmp:
        os.environ["SPARSITY_CACHE"] = str(Path(tmp) / "cache")  # one model cache: digits-mlp trains once
        os.environ["SPARSITY_HOME"] = str(Path(tmp) / "local")
        os.environ["SPARSITY_DB_URL"] = f"sqlite:///{Path(tmp) / 'local' / 'sparsity.db'}"
        (Path(tmp) / "local").mkdir()
        drive("warm-up (digits-mlp trains once)", [], 1)
        rows.append(drive("(a) local worker, SQLite", [], args.runs))

        from ray.cluster_utils import Cluster

        os.environ["SPARSITY_HOME"] = str(Path(tmp) / "cluster")
        (Path(tmp) / "cluster").mkdir()
        with pgserver.start(Path(tmp)) as server:
            os.environ["SPARSITY_DB_URL"] = server.create_database("scale")
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            try:
                rows.append(drive("(b) Ray, 2 nodes, PostgreSQL", ["--executor", "ray", "--ray-address",
                                                                    cluster.address], args.runs))
            finally:
                cluster.shutdown()

    print(f"load average before/after: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}")
    print(f"{'setup':32} {'runs':>5} {'wall s':>8} {'overhead median s':>18} {'max s':>7} {'lost':>5} "
          f"{'twice':>6} {'nodes':>6}")
    for r in rows:
        print(f"{r['setup']:32} {r['runs']:>5} {r['wall_s']:>8.1f} {r['overhead_median_s']:>18.2f} "
              f"{r['overhead_max_s']:>7.2f} {r['lost']:>5} {r['twice']:>6} {r['nodes']:>6}")
    local, ray_row = rows
    missed = []
    if ray_row["overhead_median_s"] >= 1.0:
        missed.append(f"Ray's median per-run overhead {ray_row['overhead_median_s']:.2f} s >= 1 s")
    if ray_row["wall_s"] > local["wall_s"]:
        missed.append(f"Ray total {ray_row['wall_s']:.1f} s > local {local['wall_s']:.1f} s")
    if any(r["lost"] or r["twice"] for r in rows):
        missed.append("runs lost or run twice")
    for line in missed:
        print("MISSED:", line)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
