"""Headless twin of the UI: the same specs, the same store.

    python -m sparsity_core run SPEC.json        # runs in the foreground; last line: JSON summary
    python -m sparsity_core submit SPEC.json     # queues it for the worker; prints the run id
    python -m sparsity_core list [--json]
    python -m sparsity_core show ID              # one run as JSON: record, spec, facts, artifacts
    python -m sparsity_core export --runs 3,7 --html report.html --json bundle.json [--csv m.csv]
    python -m sparsity_core import bundle.json   # a store's bundle or a GPU kernel bundle; last line: new ids
    python -m sparsity_core worker               # the background worker
    python -m sparsity_core serve                # worker + Streamlit app; Ctrl-C stops both
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional


class CLIError(Exception):
    """An error for a person: printed as one line, exit code 2 (as are KeyError and ValueError)."""


def _summary(run_id: int) -> dict:
    from db import repo

    run = repo.get_run(run_id)
    frame = repo.metrics_frame([run_id])
    metrics = [{"key": r.key, "series": r.series, "x": None if r.x != r.x else r.x, "value": r.value}
               for r in frame.itertuples()]
    return {"run_id": run_id, "status": run.status, "error": run.error, "metrics": metrics}


def cmd_run(args) -> int:
    from sparsity_core.jobs import submit
    from sparsity_core.jobs.worker import supervise
    from sparsity_core.specs import SpecError

    try:
        run_id = submit(_spec_text(args.spec), status="running", worker=f"cli:{socket.gethostname()}:{os.getpid()}")
    except SpecError as exc:
        raise CLIError(f"invalid spec: {exc}") from None
    print(f"run {run_id} started", file=sys.stderr)
    try:
        supervise(run_id)
    except KeyboardInterrupt:
        from db import repo

        repo.finish_run(run_id, "cancelled", message="interrupted from the command line")
    summary = _summary(run_id)
    print(json.dumps(summary))
    return 0 if summary["status"] == "succeeded" else 1


def _spec_text(arg: str) -> str:
    """A spec given as a JSON file path or as JSON text."""
    if arg.lstrip().startswith("{"):
        return arg
    path = Path(arg)
    if not path.is_file():
        raise CLIError(f"no spec file {path}")
    return path.read_text()


def cmd_submit(args) -> int:
    """Queue a spec for the background worker; prints the run id and returns at once."""
    from sparsity_core.jobs import submit
    from sparsity_core.specs import SpecError

    try:
        run_id = submit(_spec_text(args.spec))
    except SpecError as exc:
        raise CLIError(f"invalid spec: {exc}") from None
    print(json.dumps({"run_id": run_id, "status": "queued"}))
    return 0


def run_row(run) -> dict:
    return {"id": run.id, "kind": run.kind, "name": run.name, "model": run.model, "method": run.method,
            "status": run.status, "parent_run": run.parent_run_id,
            "created_at": run.created_at.isoformat(timespec="seconds"),
            "duration_s": None if run.duration_s is None else round(run.duration_s, 2), "error": run.error}


def cmd_list(args) -> int:
    from db import repo

    rows = [run_row(r) for r in repo.list_runs(kind=args.kind, limit=args.limit)]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'id':>5}  {'kind':<7} {'status':<10} {'model':<16} {'method':<12} {'dur s':>7}  name / error")
    for r in rows:
        dur = "" if r["duration_s"] is None else f"{r['duration_s']:.1f}"
        tail = r["error"] or r["name"] or ""
        print(f"{r['id']:>5}  {r['kind']:<7} {r['status']:<10} {r['model'][:16]:<16} "
              f"{(r['method'] or '')[:12]:<12} {dur:>7}  {tail[:60]}")
    return 0


def cmd_show(args) -> int:
    """One run as JSON: its record, spec, recorded facts and artifacts."""
    from db import repo

    run = repo.get_run_with_artifacts(args.id)
    if run is None:
        raise CLIError(f"no run {args.id}")
    print(json.dumps({**run_row(run), "spec": run.spec, "spec_version": run.spec_version, "info": run.info,
                      "artifacts": [{"name": a.name, "kind": a.kind, "bytes": a.bytes, "path": a.path}
                                    for a in run.artifacts]}, default=str))
    return 0


def cmd_export(args) -> int:
    """Write the selected runs as an HTML report, a JSON bundle and/or metrics CSV."""
    from sparsity_core.reports import bundle, html_report
    from sparsity_core.reports.compare import parse_ids
    from sparsity_core.reports.loaders import load_selection

    ids = parse_ids(args.runs)
    if not ids:
        raise CLIError(f"--runs needs run ids like 3,7 (got {args.runs!r})")
    if not (args.html or args.json or args.csv):
        raise CLIError("nothing to write: give --html, --json and/or --csv")
    try:
        texts = {}  # everything is built before anything is written: no half export on error
        if args.html:
            texts[args.html] = html_report.render_html(load_selection(ids), args.summary, args.at)
        if args.json:
            texts[args.json] = json.dumps(bundle.bundle_dict(ids, args.with_artifacts))
        if args.csv:
            texts[args.csv] = bundle.metrics_csv(ids)
    except KeyError as exc:
        raise CLIError(exc.args[0]) from None
    for path, text in texts.items():
        Path(path).write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_import(args) -> int:
    """Load a bundle's runs into this store; the last stdout line is the JSON list of new ids."""
    from sparsity_core.reports.bundle import BundleError, import_bundle

    try:
        new_ids = import_bundle(Path(args.bundle))
    except BundleError as exc:
        raise CLIError(str(exc)) from None
    print(f"imported {len(new_ids)} run(s) as {', '.join(f'#{i}' for i in new_ids)}", file=sys.stderr)
    print(json.dumps(new_ids))
    return 0


def cmd_worker(args) -> int:
    from sparsity_core.jobs.worker import main

    main()
    return 0


def cmd_serve(args) -> int:
    """Start the worker and the Streamlit app; Ctrl-C (or SIGTERM) stops both."""
    root = Path(__file__).resolve().parent.parent
    py = sys.executable
    worker = subprocess.Popen([py, "-m", "sparsity_core", "worker"], cwd=root)
    app = subprocess.Popen([py, "-m", "streamlit", "run", str(root / "app.py"), "--server.port", str(args.port),
                            "--server.headless", "true", "--browser.gatherUsageStats", "false"], cwd=root)
    print(f"Sparsity Lab on http://localhost:{args.port}  (Ctrl-C stops the app and the worker)", flush=True)

    def stop(*_):
        for proc in (app, worker):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    try:
        while app.poll() is None and worker.poll() is None:
            try:
                app.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for proc in (app, worker):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sparsity_core", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a spec (JSON file) in the foreground")
    p.add_argument("spec")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("submit", help="queue a spec (JSON file or text) for the worker; prints the run id")
    p.add_argument("spec")
    p.set_defaults(fn=cmd_submit)
    p = sub.add_parser("list", help="list the runs in the store")
    p.add_argument("--json", action="store_true", help="a JSON array as the last stdout line")
    p.add_argument("--kind")
    p.add_argument("--limit", type=int)
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("show", help="one run as JSON")
    p.add_argument("id", type=int)
    p.set_defaults(fn=cmd_show)
    p = sub.add_parser("export", help="export runs: HTML report, JSON bundle, metrics CSV")
    p.add_argument("--runs", required=True, help="run ids, e.g. 3,7,9")
    p.add_argument("--html", help="self-contained HTML report (opens offline)")
    p.add_argument("--json", help="JSON bundle another store can import")
    p.add_argument("--csv", help="metrics in long format")
    p.add_argument("--with-artifacts", action="store_true", help="embed artifact files in the bundle")
    p.add_argument("--summary", choices=["last", "min", "max", "at"], default="last",
                   help="which value of each metric the report's table shows")
    p.add_argument("--at", type=float, help="the x (sparsity) for --summary at")
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("import", help="import a JSON bundle (a store's export or a GPU kernel bundle)")
    p.add_argument("bundle")
    p.set_defaults(fn=cmd_import)
    p = sub.add_parser("worker", help="run the background worker")
    p.set_defaults(fn=cmd_worker)
    p = sub.add_parser("serve", help="start the worker and the app")
    p.add_argument("--port", type=int, default=8501)
    p.set_defaults(fn=cmd_serve)
    return parser


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)  # str(KeyError) adds quotes
    return " ".join(str(text).split())[:500] or type(exc).__name__


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (CLIError, KeyError, ValueError) as exc:  # SpecError and BundleError are ValueErrors
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001  (a locked store, a full disk: still one line, no traceback)
        print(f"error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
