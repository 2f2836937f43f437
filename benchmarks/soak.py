"""Soak: two supervised workers, 100 small runs, and a seeded killer; then the store's invariants.

    .venv/bin/python benchmarks/soak.py                       # 100 digits-mlp runs, 2 workers, seed 0
    .venv/bin/python benchmarks/soak.py --runs 20 --seed 3    # a quick check

A fresh SPARSITY_HOME in a temp folder. After one warm-up run (digits-mlp trains once) the runs are
queued and a killer, seeded by --seed, acts at random moments (exponential gaps, mean --kill-every
s): it SIGKILLs a worker (then does what `serve` does: forgets the dead worker in the store, which
re-queues its run once and fails it the second time, and starts a new one), SIGKILLs a job's child
process (the run must end `failed`), or cancels a queued or running run. A watcher polls the store
every 0.25 s and the process table every second meanwhile. Then it prints one table of invariants:
nothing left queued or running after a bounded wait, no run closed twice or run to completion twice,
no process of a closed run alive, no write after a run closed, no run lost, no failure nobody caused.
Exits non-zero when any fails. It keeps two cores busy: run it alone (`flock /tmp/heavy.lock ...`).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = {"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0.5]}  # ~3 s a run
RUN_ENV = "SPARSITY_RUN"  # sparsity_core.jobs.executors.RUN_ENV: "<run_id>:<token>" in a job child's environment
LINGER_S = 5.0  # a process of a closed run may take this long to go (the kernel's PDEATHSIG is immediate)
ORPHAN_GRACE_S = 2.0  # a job child's own watch on its parent checks every 1 s (executors.die_with_parent)
CHILD_KILLED = "the job's process died: killed by signal 9"  # LocalExecutor.poll's words
WORKER_DIED = "the worker running it died"  # what the soak, as `serve`, writes for a dead worker


# ---------------------------------------------------------------- processes
def _env(proc) -> dict:
    import psutil

    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return {}


def _alive(proc) -> bool:
    """Running and not a zombie (an orphan re-parented to a PID 1 that does not reap stays one)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def job_processes(home: str) -> list[tuple[object, int, str]]:
    """(process, run id, token) of every live job child of this soak's store, wherever it was
    re-parented. multiprocessing's resource tracker inherits RUN_ENV of the first spawn; it is not a job."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        env = _env(proc)
        if env.get("SPARSITY_HOME") != home or RUN_ENV not in env or not _alive(proc):
            continue
        if "resource_tracker" in " ".join(proc.info["cmdline"] or []):
            continue
        run_id, _, token = env[RUN_ENV].partition(":")
        found.append((proc, int(run_id), token))
    return found


def _die_with_parent() -> None:
    """In a worker before exec: Linux sends it SIGTERM should the soak itself die."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Slot:
    """One supervised worker process, restarted whenever it dies, as `serve` does."""

    def __init__(self, n: int, logs: Path):
        self.n, self.logs, self.starts = n, logs, 0
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()  # the killer and the supervisor never handle one death both

    def start(self) -> None:
        self.starts += 1
        log = open(self.logs / f"worker{self.n}-{self.starts}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "sparsity_core", "worker"], cwd=ROOT,
                                     env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        log.close()

    def job_children(self) -> list:
        import psutil

        try:
            kids = psutil.Process(self.proc.pid).children()
        except psutil.Error:
            return []
        return [k for k in kids if RUN_ENV in _env(k) and "resource_tracker" not in " ".join(k.cmdline())]


# ---------------------------------------------------------------- the soak
class Soak:
    def __init__(self, args, home: Path):
        self.args, self.home = args, home
        self.rng = random.Random(args.seed)
        self.slots = [Slot(i, home / "logs") for i in range(args.workers)]
        self.ids: list[int] = []
        self.done = threading.Event()
        self.actions: Counter = Counter()
        self.child_killed: set[int] = set()  # runs whose job child the killer SIGKILLed
        self.cancelled: set[int] = set()  # runs the killer asked to cancel
        self.worker_killed: set[int] = set()  # runs held by a worker the killer SIGKILLed
        self.outlived: list[str] = []  # job children alive ORPHAN_GRACE_S after their worker died
        self.orphaned_jobs: list[tuple[int, str, object]] = []  # (run id, token, when) of a killed worker's job
        self.supervisor_ended: list[int] = []  # runs whose process the supervisor had to end
        self.unexpected_deaths: list[str] = []
        self.history: dict[int, list[tuple]] = defaultdict(list)  # (status, finished_at) as seen, changes only
        self.closed_print: dict[int, tuple] = {}  # a run's record and result counts when first seen closed
        self.stale_since: dict[int, float] = {}  # pid -> when first seen alive for a closed/other claim
        self.lingering: dict[int, str] = {}

    # ------------------------------------------------------------ supervision
    def forget(self, pid: int, code: int) -> None:
        """What `serve` does for a dead worker (sparsity_core.cli._forget_dead_worker)."""
        from db import repo
        from sparsity_core.jobs.worker import end_orphan_processes

        words = f"exit code {code}" + (f" (killed by signal {-code})" if code < 0 else "")
        orphans = repo.forget_worker_process(socket.gethostname(), pid, f"{WORKER_DIED} ({words})")
        self.worker_killed.update(o.run_id for o in orphans)
        self.supervisor_ended += end_orphan_processes(orphans)

    def supervise(self) -> None:
        while not self.done.wait(0.2):
            for slot in self.slots:
                with slot.lock:
                    code = slot.proc.poll()
                    if code is None:
                        continue
                    self.unexpected_deaths.append(f"worker{slot.n} pid {slot.proc.pid}: exit {code}")
                    self.forget(slot.proc.pid, code)
                    slot.start()

    # ------------------------------------------------------------ the killer
    def kill_worker(self) -> None:
        busy = [slot for slot in self.slots if slot.job_children()]  # one that holds a run, when any does
        slot = self.rng.choice(busy or self.slots)
        with slot.lock:
            if slot.proc.poll() is not None:
                return
            from db.models import utcnow

            kids = slot.job_children()
            slot.proc.kill()
            code = slot.proc.wait()
            when = utcnow()
            for kid in kids:
                run_id, _, token = _env(kid).get(RUN_ENV, "0:").partition(":")
                self.orphaned_jobs.append((int(run_id), token, when))
            deadline = time.monotonic() + ORPHAN_GRACE_S
            while any(_alive(k) for k in kids) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.outlived += [f"pid {k.pid} ({_env(k).get(RUN_ENV, '?').split(':')[0]})" for k in kids if _alive(k)]
            self.forget(slot.proc.pid, code)
            self.actions["worker SIGKILL" + (" (busy)" if kids else " (idle)")] += 1
            slot.start()

    def kill_child(self) -> None:
        jobs = sorted(job_processes(str(self.home)), key=lambda j: j[1])
        if not jobs:
            return
        proc, run_id, _token = self.rng.choice(jobs)
        try:
            proc.kill()
        except Exception:  # noqa: BLE001  (it ended meanwhile)
            return
        self.child_killed.add(run_id)
        self.actions["child SIGKILL"] += 1

    def cancel(self) -> None:
        from db import repo
        from sparsity_core.jobs import cancel

        open_ids = sorted(r.id for r in repo.list_runs(ids=self.ids) if r.status in ("queued", "running"))
        if open_ids:
            run_id = self.rng.choice(open_ids)
            cancel(run_id)
            self.cancelled.add(run_id)
            self.actions["cancel"] += 1

    def killer(self) -> None:
        act = {"worker": self.kill_worker, "child": self.kill_child, "cancel": self.cancel}
        while not self.done.wait(self.rng.expovariate(1.0 / self.args.kill_every)):
            act[self.rng.choices(["worker", "child", "cancel"], weights=[2, 2, 1])[0]]()

    # ------------------------------------------------------------ the watcher
    def fingerprint(self, run, metrics: int, artifacts: int) -> tuple:
        return (run.status, run.finished_at, run.error, run.message, run.progress, repr(run.info), metrics, artifacts)

    def counts(self) -> tuple[dict, dict]:
        from sqlalchemy import func, select

        from db.engine import session
        from db.models import Artifact, Metric

        with session() as s:
            m = dict(s.execute(select(Metric.run_id, func.count()).where(Metric.run_id.in_(self.ids))
                               .group_by(Metric.run_id)).all())
            a = dict(s.execute(select(Artifact.run_id, func.count()).where(Artifact.run_id.in_(self.ids))
                               .group_by(Artifact.run_id)).all())
        return m, a

    def watch_store(self) -> list:
        from db import repo
        from db.models import FINISHED

        runs = repo.list_runs(ids=self.ids)
        m, a = self.counts()
        for run in runs:
            seen = (run.status, run.finished_at)
            if not self.history[run.id] or self.history[run.id][-1] != seen:
                self.history[run.id].append(seen)
            if run.status in FINISHED and run.id not in self.closed_print:
                self.closed_print[run.id] = self.fingerprint(run, m.get(run.id, 0), a.get(run.id, 0))
        return runs

    def watch_processes(self, runs: dict) -> None:
        now = time.monotonic()
        live = set()
        for proc, run_id, token in job_processes(str(self.home)):
            run = runs.get(run_id)
            if run is not None and run.status == "running" and run.claim_token == token:
                continue  # its claim owns the run: a live job
            live.add(proc.pid)
            first = self.stale_since.setdefault(proc.pid, now)
            if now - first > LINGER_S:
                self.lingering[proc.pid] = f"pid {proc.pid} of run {run_id} ({run.status if run else 'missing'})"
        for pid in set(self.stale_since) - live:
            del self.stale_since[pid]

    # ------------------------------------------------------------ one soak
    def run(self) -> dict:
        from db import repo
        from sparsity_core.jobs import submit

        (self.home / "logs").mkdir()
        for slot in self.slots:
            slot.start()
        warm = submit(SPEC)  # digits-mlp trains once, into SPARSITY_CACHE; no killer yet
        while repo.get_run(warm).status not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.25)
        self.reference = repo.get_run(warm)
        frame = repo.metrics_frame([warm])
        self.ref_metrics = sorted(zip(frame.key, frame.series, frame.x))
        self.ref_artifacts = sorted(a.name for a in repo.list_artifacts(warm))
        self.ids = [submit(SPEC) for _ in range(self.args.runs)]
        started = time.monotonic()
        threads = [threading.Thread(target=self.supervise, daemon=True),
                   threading.Thread(target=self.killer, daemon=True)]
        for t in threads:
            t.start()
        deadline = started + self.args.max_wait
        last_ps, runs = 0.0, []
        while time.monotonic() < deadline:
            runs = self.watch_store()
            if time.monotonic() - last_ps >= 1.0:
                self.watch_processes({r.id: r for r in runs})
                last_ps = time.monotonic()
            if all(r.status in ("succeeded", "failed", "cancelled") for r in runs):
                break
            time.sleep(0.25)
        wall = time.monotonic() - started
        self.done.set()
        for t in threads:
            t.join()
        for slot in self.slots:  # a graceful stop: nothing should be running any more
            slot.proc.terminate()
        for slot in self.slots:
            try:
                slot.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                self.unexpected_deaths.append(f"worker{slot.n} ignored SIGTERM for 30 s")
        time.sleep(1.0)
        runs = {r.id: r for r in self.watch_store()}
        self.watch_processes(runs)
        return self.check(runs, wall)

    # ------------------------------------------------------------ the invariants
    def check(self, runs: dict, wall: float) -> dict:
        from db import repo
        from db.models import FINISHED
        from db.repo import MAX_ATTEMPTS
        from sparsity_core.paths import home

        status = Counter(r.status for r in runs.values())
        m, a = self.counts()
        frame = repo.metrics_frame(self.ids)
        twice, closed_twice, late, incomplete, unexplained, too_many = [], [], [], [], [], []
        for run_id in self.ids:
            run = runs.get(run_id)
            if run is None:
                continue
            closes = [h for h in self.history[run_id] if h[0] in FINISHED]
            if len(closes) > 1:
                closed_twice.append(run_id)
            mine = frame[frame.run_id == run_id]
            arts = repo.list_artifacts(run_id)
            names = [x.name for x in arts]
            if mine.duplicated(["key", "series", "x"]).any() or len(names) != len(set(names)):
                twice.append(run_id)
            if run.attempts > MAX_ATTEMPTS:
                too_many.append(run_id)
            if run.status not in FINISHED:
                continue
            finished = run.finished_at.replace(tzinfo=timezone.utc).timestamp()
            now_print = self.fingerprint(run, m.get(run_id, 0), a.get(run_id, 0))
            files = [p for p in (home() / "artifacts" / f"run-{run_id:06d}").rglob("*") if p.is_file()]
            if (now_print != self.closed_print.get(run_id, now_print)
                    or any(x.created_at > run.finished_at for x in arts)
                    or any(p.stat().st_mtime > finished for p in files)):
                late.append(run_id)
            if run.status == "succeeded":
                ok = (sorted(zip(mine.key, mine.series, mine.x)) == self.ref_metrics
                      and sorted(names) == self.ref_artifacts
                      and all(repo.sha256_of(home() / x.path) == x.sha256 for x in arts))
                if not ok:
                    incomplete.append(run_id)
            elif run.status == "cancelled" and run_id not in self.cancelled:
                unexplained.append(f"{run_id} cancelled")
            elif run.status == "failed":
                err = run.error or ""
                by_child = err.startswith(CHILD_KILLED) and run_id in self.child_killed
                by_policy = err.startswith(WORKER_DIED) and run_id in self.worker_killed and run.attempts == MAX_ATTEMPTS
                if not (by_child or by_policy):
                    unexplained.append(f"{run_id}: {err[:120]}")
        lost = [i for i in self.ids if i not in runs] + incomplete
        # a job whose worker died must not close its run itself: it should have died with the worker
        unsupervised = sorted({i for i, token, when in self.orphaned_jobs if i in runs and runs[i].status in FINISHED
                               and runs[i].claim_token == token and runs[i].finished_at > when})
        left = status["queued"] + status["running"]
        failed_by = Counter("child SIGKILL" if (r.error or "").startswith(CHILD_KILLED) else
                            "worker died twice" if (r.error or "").startswith(WORKER_DIED) else "other"
                            for r in runs.values() if r.status == "failed")
        rows = [
            ("runs total", len(self.ids), True),
            ("succeeded", status["succeeded"], True),
            ("failed", f"{status['failed']} ({', '.join(f'{k} {v}' for k, v in sorted(failed_by.items())) or '-'})",
             True),
            ("cancelled", status["cancelled"], True),
            ("queued/running left", left, left == 0),
            ("re-queued after a worker death (attempts 2)", sum(r.attempts == 2 for r in runs.values()), True),
            ("runs claimed more than twice", len(too_many), not too_many),
            ("runs closed more than once", len(closed_twice), not closed_twice),
            ("runs completed twice (duplicate metrics/artifacts)", len(twice), not twice),
            ("processes of closed runs alive (> 5 s)", len(self.lingering), not self.lingering),
            ("job children outliving their worker (> 2 s)", len(self.outlived), not self.outlived),
            ("runs closed by a job whose worker was dead", len(unsupervised), not unsupervised),
            ("processes the supervisor had to end", len(self.supervisor_ended), not self.supervisor_ended),
            ("writes after close", len(late), not late),
            ("lost runs (missing, or succeeded incomplete)", len(lost), not lost),
            ("failures/cancels nobody caused", len(unexplained), not unexplained),
            ("workers that died on their own", len(self.unexpected_deaths), not self.unexpected_deaths),
        ]
        details = {"left": [i for i, r in runs.items() if r.status not in FINISHED], "too_many": too_many,
                   "closed_twice": {i: self.history[i] for i in closed_twice}, "twice": twice,
                   "lingering": list(self.lingering.values()), "outlived": self.outlived, "unsupervised": unsupervised,
                   "supervisor_ended": self.supervisor_ended, "late": late, "lost": lost,
                   "unexplained": unexplained, "unexpected_deaths": self.unexpected_deaths}
        return {"rows": rows, "details": {k: v for k, v in details.items() if v}, "wall": wall,
                "actions": dict(self.actions)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seeds the killer's moments and choices")
    parser.add_argument("--kill-every", type=float, default=6.0, help="mean seconds between the killer's acts")
    parser.add_argument("--max-wait", type=float, default=None,
                        help="seconds before giving up on runs still queued/running (default 60 + 6 per run)")
    parser.add_argument("--keep", action="store_true", help="keep the temp SPARSITY_HOME (its path is printed)")
    args = parser.parse_args()
    args.max_wait = args.max_wait or 60 + 6 * args.runs
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="sparsity-soak-")
    home = Path(tmp) / "home"
    home.mkdir()
    os.environ["SPARSITY_HOME"] = str(home)
    os.environ["SPARSITY_CACHE"] = str(Path(tmp) / "cache")
    os.environ["SPARSITY_DB_URL"] = f"sqlite:///{home / 'sparsity.db'}"
    os.environ.pop(RUN_ENV, None)
    try:
        result = Soak(args, home).run()
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    print(f"soak: {args.runs} runs, {args.workers} workers, seed {args.seed}, {result['wall']:.0f} s; killer: "
          + ", ".join(f"{k} {v}" for k, v in sorted(result["actions"].items())))
    print(f"load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}; "
          f"after: {' '.join(f'{x:.2f}' for x in load_after)}; cores: {os.cpu_count()}"
          + (f"; kept {tmp}" if args.keep else ""))
    print(f"{'check':52} {'ok':3} value")
    for name, value, ok in result["rows"]:
        print(f"{name:52} {'yes' if ok else 'NO':3} {value}")
    for key, value in result["details"].items():
        print(f"  {key}: {value}")
    return 0 if all(ok for _, _, ok in result["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
