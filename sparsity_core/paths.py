"""Where things live on disk: SPARSITY_HOME (default ./data) holds the DB, artifacts and caches."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    path = Path(os.environ.get("SPARSITY_HOME", "data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def artifacts_dir(run_id: int) -> Path:
    path = home() / "artifacts" / f"run-{run_id:06d}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    """Model and activation caches; SPARSITY_CACHE moves them (tests share one across stores)."""
    root = Path(os.environ["SPARSITY_CACHE"]).resolve() if os.environ.get("SPARSITY_CACHE") else home() / "cache"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
