"""What the browser benchmarks share: wait until a served app answers its health check."""

from __future__ import annotations

import subprocess
import time
import urllib.request


def wait_healthy(url: str, procs: dict[str, subprocess.Popen], where: str, timeout_s: float = 90) -> None:
    """Return once `url` answers Streamlit's health check; RuntimeError (naming a child that exited,
    or the time-out, and `where` its log is) when it does not."""
    deadline = time.monotonic() + timeout_s
    while True:
        dead = [f"the {name} exited" for name, proc in procs.items() if proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"the app did not start ({', '.join(dead) or f'no answer in {timeout_s:g} s'}): "
                               f"see {where}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
