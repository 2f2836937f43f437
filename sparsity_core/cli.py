"""Headless twin of the UI: the same specs, the same store.

    python -m sparsity_core run SPEC.json        # runs in the foreground; last line: JSON summary
    python -m sparsity_core submit SPEC.json     # queues it for the worker; prints the run id
    python -m sparsity_core list [--json]
    python -m sparsity_core show ID              # one run as JSON: record, spec, facts, artifacts
    python -m sparsity_core export --runs 3,7 --html report.html --json bundle.json [--csv m.csv]
    python -m sparsity_core import bundle.json   # a store's bundle or a GPU kernel bundle; last line: new ids
    python -m sparsity_core delete ID [--yes]    # asks first; removes metrics and artifact files too
    python -m sparsity_core worker               # the background worker
    python -m sparsity_core serve                # worker + Streamlit app, each restarted if it dies; Ctrl-C stops both
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
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

    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise CLIError("--max-concurrent must be at least 1")
    if args.executor != "ray" and (args.ray_address or args.max_concurrent):
        raise CLIError("--ray-address and --max-concurrent need --executor ray")
    main(args.executor, args.ray_address, args.max_concurrent)
    return 0


def cmd_delete(args) -> int:
    """Delete a run with its metrics and artifact files, after saying what goes and asking (or --yes)."""
    from db import repo

    plan = repo.delete_plan(args.id)  # KeyError "no run N": one line, exit 2
    if plan.status == "running":
        raise CLIError(f"run {args.id} is running: cancel it first")
    print(f"deleting {plan.summary}", file=sys.stderr)
    if not args.yes:
        sys.stderr.write("delete it? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):  # "" at end of input: no stdin is a no
            print("nothing deleted", file=sys.stderr)
            return 1
    done = repo.delete_run(args.id)
    print(json.dumps({"deleted": done.run_id, "metrics": done.metrics, "files": done.files,
                      "children_unlinked": list(done.children)}))
    return 0


class _Child:
    """One process `serve` keeps alive. It gets its own process group, so Ctrl-C reaches `serve`
    alone (which stops the worker before the app) and a dead child's leftovers (a worker's job
    processes) can be ended as a group; on Linux it also gets SIGTERM should `serve` itself die."""

    QUICK_S = 10.0  # a death this soon after a start counts towards giving up
    GIVE_UP_AFTER = 5  # quick deaths in a row: a crash loop (port taken, store unreachable), not bad luck

    def __init__(self, name: str, argv: list[str], cwd: Path):
        self.name, self.argv, self.cwd = name, argv, cwd
        self.proc: Optional[subprocess.Popen] = None
        self.started, self.quick_deaths = 0.0, 0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, start_new_session=True, preexec_fn=_die_with_parent)
        self.started = time.monotonic()

    def died(self) -> Optional[int]:
        """The exit code when the child has ended since its start (its group's leftovers killed), else None."""
        code = self.proc.poll()
        if code is not None:
            self.kill_group()
            self.quick_deaths = self.quick_deaths + 1 if time.monotonic() - self.started < self.QUICK_S else 0
        return code

    def stop(self, grace_s: float) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                print(f"serve: the {self.name} did not stop within {grace_s:.0f} s; killing it", file=sys.stderr)
        self.kill_group()
        self.proc.wait()

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # the group is empty already
            pass


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to send SIGTERM when `serve` dies, even by kill -9."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _exit_words(code: int) -> str:
    return f"exit code {code}" + (f" (killed by signal {-code})" if code < 0 else "")


def _forget_dead_worker(pid: int, code: int) -> None:
    """Drop a dead worker's liveness row and re-queue (once, then fail) the runs it held, ending any
    process of theirs still alive, so the sidebar and the runs say so now."""
    from db import repo
    from sparsity_core.jobs.worker import end_orphan_processes

    try:
        orphans = repo.forget_worker_process(socket.gethostname(), pid,
                                             f"the worker running it died ({_exit_words(code)})")
        end_orphan_processes(orphans)
    except Exception as exc:  # noqa: BLE001  (the store's trouble must not stop the supervisor)
        print(f"serve: could not record the dead worker in the store: {_one_line(exc)}", file=sys.stderr)
        return
    for orphan in orphans:
        print(f"serve: run {orphan.run_id} {orphan.action}: its worker died", file=sys.stderr)


def streamlit_flags(host: str) -> list[str]:
    """The app's Streamlit settings, the values of .streamlit/config.toml (flags win over it, and
    hold from any folder) with the address `serve --host` names: nothing leaves the machine at start."""
    return ["--server.address", host, "--server.headless", "true", "--server.showEmailPrompt", "false",
            "--browser.gatherUsageStats", "false",
            # set by hand, so the start banner prints it and never looks up an external IP over HTTP
            # (a wildcard address alone would: streamlit/net_util.py get_external_ip)
            "--browser.serverAddress", host if host not in ("", "0.0.0.0", "::") else "localhost"]


def cmd_serve(args) -> int:
    """Keep the worker and the Streamlit app running until Ctrl-C or SIGTERM, then stop both: the
    worker first (it ends its job and records it), then the app. A child that dies is restarted."""
    root = Path(__file__).resolve().parent.parent
    problem = access_problem(args.host, os.environ.get("SPARSITY_TOKEN"), _auth_section(root))
    if problem:
        raise CLIError(problem)
    if not is_loopback(args.host):
        os.environ["SPARSITY_EXPOSED"] = "1"  # the app and worker limit hf: paths (SPARSITY_MODEL_DIRS)
    py = sys.executable
    worker_argv = [py, "-m", "sparsity_core", "worker"]
    store = None
    if args.cluster:  # a local cluster: PostgreSQL, and a worker that starts a Ray head and sends runs to it
        store = _cluster_store()
        worker_argv += ["--executor", "ray"]
    worker = _Child("worker", worker_argv, root)
    app = _Child("app", [py, "-m", "streamlit", "run", str(root / "app.py"), "--server.port", str(args.port),
                         *streamlit_flags(args.host)], root)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    for child in (worker, app):
        child.start()
    print(f"Sparsity Lab on http://{args.host}:{args.port}  (Ctrl-C stops the app and the worker)", flush=True)
    code = 0
    try:
        while not stop.wait(0.5):
            for child in (worker, app):
                died = child.died()
                if died is None:
                    continue
                if child is worker:
                    _forget_dead_worker(child.proc.pid, died)
                if child.quick_deaths >= child.GIVE_UP_AFTER:
                    print(f"serve: the {child.name} died {child.quick_deaths} times in a row within "
                          f"{child.QUICK_S:.0f} s of starting ({_exit_words(died)}); giving up", file=sys.stderr)
                    code = 1
                    stop.set()
                    break
                old = child.proc.pid
                time.sleep(child.quick_deaths)  # at once the first time, slower while it keeps dying
                child.start()
                print(f"serve: the {child.name} (pid {old}) exited with {_exit_words(died)}; "
                      f"restarted it as pid {child.proc.pid}", file=sys.stderr, flush=True)
    finally:
        worker.stop(grace_s=20)  # SIGTERM: the worker ends its job and puts the run back in the queue
        app.stop(grace_s=10)
        if store is not None:
            store.stop()
    return code


def _cluster_store():
    """`serve --cluster`'s store: a PostgreSQL server kept under SPARSITY_HOME/cluster-pg (its data
    survives restarts), on a free loopback port; the app, the worker and Ray's tasks inherit its
    URL through SPARSITY_DB_URL."""
    from db import pgserver
    from sparsity_core.paths import home

    try:
        server = pgserver.start(folder=home() / "cluster-pg", keep=True, fast=False)
    except pgserver.PgServerError as exc:
        raise CLIError(f"serve --cluster: {exc}") from None
    os.environ["SPARSITY_DB_URL"] = server.url
    print(f"serve: PostgreSQL store on 127.0.0.1:{server.port} (data in {server.folder})", flush=True)
    return server


MIN_TOKEN_CHARS = 16  # a shared secret a visitor cannot guess by trying


def is_loopback(host: str) -> bool:
    """Only this machine can reach `host` ("" binds every interface)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _auth_section(root: Path) -> Optional[dict]:
    """The [auth] section of Streamlit's secrets.toml (user-wide, then the project's), if any."""
    import tomllib

    found = None
    for path in (Path.home() / ".streamlit" / "secrets.toml", root / ".streamlit" / "secrets.toml"):
        if path.is_file():
            try:
                found = tomllib.loads(path.read_text()).get("auth", found)
            except (OSError, ValueError) as exc:
                raise CLIError(f"{path} cannot be read: {_one_line(exc)}") from None
    return found


def access_problem(host: str, token: Optional[str], auth: Optional[dict]) -> Optional[str]:
    """Why `serve --host HOST` must not start (one line), or None: beyond loopback it needs a token
    of MIN_TOKEN_CHARS or more, or a complete st.login [auth] section with Authlib installed."""
    import importlib.util

    if is_loopback(host):
        return None
    if token:
        if len(token) < MIN_TOKEN_CHARS:
            return (f"SPARSITY_TOKEN has {len(token)} characters: use at least {MIN_TOKEN_CHARS} "
                    "(python -c 'import secrets; print(secrets.token_urlsafe(24))')")
        return None
    if auth:
        provider = ("client_id", "client_secret", "server_metadata_url")
        complete = {"redirect_uri", "cookie_secret"} <= set(auth) and (
            all(k in auth for k in provider)
            or any(isinstance(v, dict) and all(k in v for k in provider) for v in auth.values()))
        if not complete:
            return ("[auth] in secrets.toml needs redirect_uri, cookie_secret and a provider's "
                    "client_id, client_secret, server_metadata_url (Streamlit's st.login docs)")
        if importlib.util.find_spec("authlib") is None:
            return "st.login needs Authlib>=1.3.2: pip install 'streamlit[auth]'"
        return None
    return (f"--host {host or '(every interface)'} lets other machines reach the app: set SPARSITY_TOKEN "
            f"({MIN_TOKEN_CHARS}+ characters) or configure st.login ([auth] in .streamlit/secrets.toml)")


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
    p = sub.add_parser("delete", help="delete a run, its metrics and artifact files (asks first)")
    p.add_argument("id", type=int)
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.set_defaults(fn=cmd_delete)
    p = sub.add_parser("worker", help="run the background worker")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: one child process at a time; ray: Ray tasks, several at once")
    p.add_argument("--ray-address", help="the Ray cluster (auto: the one this machine belongs to; none: start one)")
    p.add_argument("--max-concurrent", type=int, help="cap on runs at once with Ray (default: the cluster's CPUs)")
    p.set_defaults(fn=cmd_worker)
    p = sub.add_parser("serve", help="start the worker and the app")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", "--address", dest="host", default="127.0.0.1",
                   help="the address the app binds; beyond loopback it needs SPARSITY_TOKEN or st.login ([auth])")
    p.add_argument("--cluster", action="store_true",
                   help="a local cluster: PostgreSQL store, Ray head and a Ray-executor worker (make cluster)")
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
