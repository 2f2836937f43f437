"""Progress that writes through to the store as the job reports, so pages follow runs live."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from db import repo
from sparsity_core.paths import artifacts_dir
from sparsity_core.progress import Progress

MIN_UPDATE_INTERVAL_S = 0.25  # progress-bar writes are throttled; metrics never are


class StoreProgress(Progress):
    def __init__(self, run_id: int):
        super().__init__(artifacts_dir(run_id))
        self.run_id = run_id
        self._last_update = 0.0

    def update(self, fraction: float, message: str = "") -> None:
        super().update(fraction, message)
        now = time.monotonic()
        if now - self._last_update >= MIN_UPDATE_INTERVAL_S or fraction >= 1.0:
            repo.set_progress(self.run_id, fraction, message)
            self._last_update = now

    def metric(self, key: str, value: float, x: Optional[float] = None, series: str = "") -> None:
        super().metric(key, value, x, series)
        repo.add_metrics(self.run_id, [self.metrics[-1]])

    def artifact(self, name: str, path: Path, kind: str) -> None:
        super().artifact(name, path, kind)
        repo.add_artifact(self.run_id, name, path, kind)

    def info(self, **facts: Any) -> None:
        super().info(**facts)
        repo.update_info(self.run_id, **facts)
