import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sparsity_core", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


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
