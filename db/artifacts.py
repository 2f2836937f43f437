"""Artifact files: written and read through this one module, so every node of a cluster reads them.

A job writes its files under SPARSITY_HOME/artifacts/run-NNNNNN/ on the node it runs on, then
`store(path)` records them. Where they live after that is `SPARSITY_ARTIFACTS`:

    unset (the default)            the files stay where the job wrote them; nothing is copied
    /mnt/lab/sparsity              a folder every node mounts (NFS, SMB, a shared disk)
    file:///mnt/lab/sparsity       the same, as a URL
    s3://bucket/prefix, gs://...   an object store, through fsspec (install s3fs / gcsfs)

With a shared root, `store` uploads each file to `<root>/<key>` (key = the path under
SPARSITY_HOME, e.g. `artifacts/run-000007/masks@0.5.safetensors`) and `local_path` gives any node
a local copy: the writer's own file when it is still there, else a download into this node's
cache (SPARSITY_HOME/artifact-cache/<sha256>/), checked against the recorded sha256 before it is
used. Reads on the default store check the sha256 too, once per file version (size and mtime),
so a corrupted or swapped file is an error, never a silent wrong figure. Model and activation
caches stay per node (SPARSITY_CACHE).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from functools import lru_cache
from pathlib import Path
from typing import Optional

from sparsity_core.paths import home


class ArtifactError(RuntimeError):
    """An artifact file that is missing or does not match its recorded sha256."""


def root() -> Optional[str]:
    """The shared artifact root (a path or an fsspec URL), or None for the embedded default."""
    return os.environ.get("SPARSITY_ARTIFACTS") or None


@lru_cache(maxsize=8)
def _filesystem(url: str):
    from fsspec.core import url_to_fs

    fs, base = url_to_fs(url)
    return fs, base.rstrip("/")


def describe() -> str:
    """One line for the sidebar and the worker's log."""
    url = root()
    return f"artifacts: {url}" if url else f"artifacts: {home() / 'artifacts'} (this machine)"


# ---------------------------------------------------------------- hashing
def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder (its files' relative names and bytes, in sorted order)."""
    digest = hashlib.sha256()
    for rel, file in _files(path):
        if path.is_dir():
            digest.update(rel.encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    return sum(file.stat().st_size for _, file in _files(path))


def _files(path: Path) -> list[tuple[str, Path]]:
    """(name relative to `path`, file) for a folder's files in sorted order; [("", path)] for a file."""
    if path.is_dir():
        return [(str(p.relative_to(path)), p) for p in sorted(path.rglob("*")) if p.is_file()]
    return [("", path)] if path.is_file() else []


_verified: dict[tuple, str] = {}  # (path, sizes, mtimes) -> sha256: a file is hashed once per version
_verified_lock = threading.Lock()


def _version(path: Path) -> tuple:
    return (str(path),) + tuple((rel, f.stat().st_size, f.stat().st_mtime_ns) for rel, f in _files(path))


def _matches(path: Path, sha256: str) -> bool:
    if not path.exists():
        return False
    version = _version(path)
    with _verified_lock:
        known = _verified.get(version)
    if known is None:
        known = sha256_of(path)
        with _verified_lock:
            _verified[version] = known
    return known == sha256


# ---------------------------------------------------------------- write and read
def store(path: Path) -> tuple[str, str, int]:
    """Record a file or folder a job wrote under SPARSITY_HOME: returns (key, sha256, bytes), and
    with a shared root uploads it there, so another node can read it."""
    path = Path(path).resolve()
    try:
        key = path.relative_to(home()).as_posix()
    except ValueError:
        raise ArtifactError(f"{path} is not under SPARSITY_HOME ({home()}): a job writes its "
                            "artifacts in its run folder") from None
    sha256, size = sha256_of(path), size_of(path)
    with _verified_lock:
        _verified[_version(path)] = sha256
    if (url := root()) is not None:
        fs, base = _filesystem(url)
        for rel, file in _files(path):
            target = f"{base}/{key}/{rel}" if rel else f"{base}/{key}"
            fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(str(file), target)
    return key, sha256, size


def local_path(key: str, sha256: str) -> Path:
    """A local copy of the artifact stored under `key`, checked against `sha256`.

    The writer's own file is used when it is there and intact; with a shared root, anything else
    comes from this node's cache or is downloaded into it. ArtifactError when no intact copy exists."""
    own = home() / key
    if _matches(own, sha256):
        return own
    url = root()
    if url is None:
        if not own.exists():
            raise ArtifactError(f"artifact file {key} is missing")
        raise ArtifactError(f"artifact file {key} does not match its recorded sha256 (changed on disk?)")
    cached = home() / "artifact-cache" / sha256 / Path(key).name
    if _matches(cached, sha256):
        return cached
    _download(url, key, cached)
    if not _matches(cached, sha256):
        shutil.rmtree(cached.parent, ignore_errors=True)
        raise ArtifactError(f"artifact {key} in {url} does not match its recorded sha256")
    return cached


def _download(url: str, key: str, target: Path) -> None:
    """Fetch `key` (a file or a folder) into `target`, through a temporary name so that a reader
    never sees half a download."""
    fs, base = _filesystem(url)
    source = f"{base}/{key}"
    if not fs.exists(source):
        raise ArtifactError(f"artifact {key} is not in {url}")
    partial = target.with_name(target.name + f".partial-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(partial, ignore_errors=True)
    if fs.isdir(source):
        for remote in fs.find(source):
            local = partial / remote[len(source):].lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(local))
    else:
        partial.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(source, str(partial))
    shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    os.replace(partial, target)


def remove(keys: list[str]) -> None:
    """Remove stored artifacts (files or folders) from the shared root; local files are the caller's."""
    if (url := root()) is None:
        return
    fs, base = _filesystem(url)
    for key in keys:
        target = f"{base}/{key}"
        if fs.exists(target):
            fs.rm(target, recursive=True)
