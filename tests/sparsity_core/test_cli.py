import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sparsity_core", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_run_prints_a_json_summary_and_lists_it(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"kind": "prune", "model": "digits-mlp", "method": "magnitude",
                                "scope": "global", "sparsities": [0, 0.5, 0.9], "seed": 0}))
    done = cli("run", str(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded" and summary["error"] is None
    sparsity = {m["x"]: m["value"] for m in summary["metrics"] if m["key"] == "sparsity"}
    assert sparsity.keys() == {0.0, 0.5, 0.9} and abs(sparsity[0.9] - 0.9) < 0.01
    listed = cli("list", "--json", cwd=tmp_path)
    rows = json.loads(listed.stdout.strip().splitlines()[-1])
    assert [(r["id"], r["status"]) for r in rows] == [(summary["run_id"], "succeeded")]


def test_bad_spec_is_one_line_no_traceback_nothing_stored(tmp_path):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"kind": "prune", "model": "digits-mlp", "sparsities": [1.5]}))
    done = cli("run", str(spec), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: invalid spec: sparsities: each sparsity must be in [0, 1), got 1.5"
    assert json.loads(cli("list", "--json", cwd=tmp_path).stdout.strip().splitlines()[-1]) == []


def test_submit_queues_for_the_worker(tmp_path):
    done = cli("submit", '{"kind": "prune", "model": "digits-mlp", "sparsities": [0.5]}', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"run_id": 1, "status": "queued"}
    rows = json.loads(cli("list", "--json", cwd=tmp_path).stdout.strip().splitlines()[-1])
    assert [(r["id"], r["status"]) for r in rows] == [(1, "queued")]


def test_show_prints_one_run_and_every_error_is_one_line(capsys, monkeypatch):
    from db import repo
    from sparsity_core import cli
    from sparsity_core.reports.seed import seed_pruning

    run_id = seed_pruning("magnitude", name="first")
    assert cli.main(["show", str(run_id)]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (shown["id"], shown["name"], shown["spec"]["method"], shown["artifacts"]) == (run_id, "first", "magnitude", [])
    assert cli.main(["show", "99"]) == 2
    assert capsys.readouterr().err == "error: no run 99\n"

    def locked(**_):
        raise RuntimeError("database is locked\n[SQL: SELECT ...]")

    monkeypatch.setattr(repo, "list_runs", locked)
    assert cli.main(["list"]) == 1  # not a person's mistake, still no traceback
    assert capsys.readouterr().err == "error: RuntimeError: database is locked [SQL: SELECT ...]\n"


def seeded_run(status="succeeded"):
    """A run with 2 metric values and one 4-byte artifact file in its folder."""
    from db import repo
    from sparsity_core.paths import artifacts_dir

    run_id = repo.create_run(kind="prune", model="digits-mlp", spec={}, spec_version=2, status=status)
    repo.add_metrics(run_id, [{"key": "accuracy", "x": 0.5, "value": 0.9}, {"key": "sparsity", "x": 0.5, "value": 0.5}])
    (artifacts_dir(run_id) / "masks.safetensors").write_bytes(b"mask")
    return run_id


@pytest.mark.parametrize("answer", ["n\n", "", "maybe\n"])  # "" is an empty stdin: no answer is a no
def test_delete_asks_and_anything_but_yes_keeps_the_run(answer, capsys, monkeypatch):
    from db import repo
    from sparsity_core import cli
    from sparsity_core.paths import artifacts_dir

    run_id = seeded_run()
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    assert cli.main(["delete", str(run_id)]) == 1
    err = capsys.readouterr().err
    assert err == (f"deleting run #{run_id} (succeeded), 2 metric value(s), 1 artifact file(s) (0.0 MB)\n"
                   "delete it? [y/N] nothing deleted\n")
    assert repo.get_run(run_id) is not None and (artifacts_dir(run_id) / "masks.safetensors").exists()


@pytest.mark.parametrize("how", [["--yes"], []])
def test_delete_with_yes_or_a_y_answer_removes_everything(how, capsys, monkeypatch, store):
    from db import repo
    from sparsity_core import cli

    run_id = seeded_run()
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert cli.main(["delete", str(run_id), *how]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done == {"deleted": run_id, "metrics": 2, "files": 1, "children_unlinked": []}
    assert repo.get_run(run_id) is None and repo.metrics_frame([run_id]).empty
    assert not (store / "artifacts" / f"run-{run_id:06d}").exists()


def test_delete_refuses_a_missing_or_running_run_in_one_line(capsys):
    from db import repo
    from sparsity_core import cli

    assert cli.main(["delete", "99", "--yes"]) == 2
    assert capsys.readouterr().err == "error: no run 99\n"
    running = seeded_run(status="running")
    assert cli.main(["delete", str(running), "--yes"]) == 2
    assert capsys.readouterr().err == f"error: run {running} is running: cancel it first\n"
    assert repo.get_run(running).status == "running"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _until(check, within_s: float):
    """Poll `check` every 0.2 s until it returns something truthy; fail after `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {within_s} s: {check.__doc__}")


def test_serve_restarts_a_killed_worker_binds_localhost_and_stops_both(tmp_path):
    from db import repo

    def worker_pids():
        """a worker heartbeating in the store"""
        return sorted(int(w.id.split(":")[1]) for w in repo.live_workers())

    def listening():
        """the app listening"""
        return [c.laddr for c in app.net_connections("tcp") if c.status == psutil.CONN_LISTEN]

    port = _free_port()
    serve = subprocess.Popen([sys.executable, "-m", "sparsity_core", "serve", "--port", str(port)], cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    try:
        [first] = _until(worker_pids, 20)
        os.kill(first, signal.SIGKILL)
        [second] = _until(lambda: [pid for pid in worker_pids() if pid != first], 15)
        assert worker_pids() == [second]  # the dead worker's row went before the restart: one worker alive
        children = psutil.Process(serve.pid).children()
        [app] = [c for c in children if c.pid != second]
        assert second in {c.pid for c in children} and "streamlit" in " ".join(app.cmdline())
        assert {(addr.ip, addr.port) for addr in _until(listening, 20)} == {("127.0.0.1", port)}
        serve.terminate()
        assert serve.wait(timeout=30) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    restarted = f"serve: the worker (pid {first}) exited with exit code -9 (killed by signal 9); restarted it as pid {second}"
    assert restarted in serve.stderr.read().splitlines()
    assert repo.live_workers() == []  # the restarted worker said goodbye when it stopped
