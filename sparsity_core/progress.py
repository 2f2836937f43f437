"""What a core function reports through while it runs.

A core function receives `(spec, progress)` and never imports Streamlit or touches the DB itself:

    progress.update(0.3, "layer 4/12")
    progress.metric("accuracy", 0.97, x=0.5)
    progress.metric("layer_sparsity", 0.51, x=0.5, series="body.0")
    path = progress.artifact_dir / "masks.safetensors"; save_file(masks, path)
    progress.artifact("masks", path, "safetensors")
    progress.info(evaluation={"dataset": "digits", "split": "test"})

`Progress` keeps everything in memory (tests, notebooks); `jobs.store_progress.StoreProgress`
also writes each report to the store as it happens, so pages can follow a run live.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional


class Progress:
    def __init__(self, artifact_dir: Optional[Path] = None):
        self.artifact_dir = Path(artifact_dir) if artifact_dir else Path(tempfile.mkdtemp(prefix="sparsity-"))
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self.fraction = 0.0
        self.message = ""
        self.metrics: list[dict[str, Any]] = []
        self.artifacts: dict[str, tuple[Path, str]] = {}
        self.facts: dict[str, Any] = {}

    def update(self, fraction: float, message: str = "") -> None:
        self.fraction, self.message = float(fraction), message

    def metric(self, key: str, value: float, x: Optional[float] = None, series: str = "") -> None:
        self.metrics.append({"key": key, "series": series, "x": None if x is None else float(x),
                             "value": float(value)})

    def artifact(self, name: str, path: Path, kind: str) -> None:
        self.artifacts[name] = (Path(path), kind)

    def info(self, **facts: Any) -> None:
        self.facts.update(facts)

    # convenience for tests and the CLI summary
    def values(self, key: str, series: str = "") -> dict[Optional[float], float]:
        return {m["x"]: m["value"] for m in self.metrics if m["key"] == key and m["series"] == series}


class Stage:
    """Map a sub-task's 0..1 progress into a slice [start, stop] of the whole run's bar."""

    def __init__(self, progress: Progress, start: float, stop: float):
        self.progress, self.start, self.stop = progress, start, stop

    def __call__(self, fraction: float, message: str = "") -> None:
        self.progress.update(self.start + (self.stop - self.start) * fraction, message)
