"""End-to-end fixtures: the real worker and Streamlit app on a free port, and headless Chromium.

Without /usr/bin/chromium the browser tests skip, unless SPARSITY_REQUIRE_E2E=1 (CI sets it),
in which case they fail: CI must never pass by skipping the browser.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pytest_collection_modifyitems(items):
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("SPARSITY_REQUIRE_E2E") == "1":
        raise pytest.UsageError(f"SPARSITY_REQUIRE_E2E=1 but {CHROMIUM} is missing: apt-get install -y chromium")
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=f"{CHROMIUM} not installed (apt-get install -y chromium)"))


@dataclass
class LiveApp:
    url: str
    home: Path
    db_url: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, procs, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not answer at {url} within {timeout:.0f} s")


@contextlib.contextmanager
def serve(home: Path, cache: Path, worker: bool = True):
    """The real app (and worker) over a fresh SQLite store in `home`, on a free port."""
    db_url = f"sqlite:///{home / 'sparsity.db'}"
    env = {**os.environ, "SPARSITY_HOME": str(home), "SPARSITY_DB_URL": db_url, "SPARSITY_CACHE": str(cache),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    port = _free_port()
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    procs = [subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.headless", "true", "--server.fileWatcherType", "none"],
                              cwd=ROOT, env=env, stdout=open(logs / "app.log", "w"), stderr=subprocess.STDOUT)]
    if worker:
        procs.append(subprocess.Popen([sys.executable, "-m", "sparsity_core", "worker"], cwd=ROOT, env=env,
                                      stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT))
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, procs)
        yield LiveApp(url, home, db_url)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def live_app(tmp_path_factory, shared_cache):
    """Worker + app over one fresh SQLite store, for the whole e2e session."""
    with serve(tmp_path_factory.mktemp("e2e-home"), shared_cache) as app:
        yield app


@pytest.fixture
def app_server():
    """`serve` itself, for a test that needs a server of its own (e.g. a fresh one)."""
    return serve


@pytest.fixture
def app_store(live_app, monkeypatch):
    """Point this test's repo calls at the live app's store."""
    monkeypatch.setenv("SPARSITY_HOME", str(live_app.home))
    monkeypatch.setenv("SPARSITY_DB_URL", live_app.db_url)
    return live_app


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()
