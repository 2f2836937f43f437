"""Run bundles: runs with their metrics (and optionally their artifact files) as one JSON file, so a
colleague loads them into their own store. Also the metrics of a selection as CSV. The one importer.

    write_bundle([3, 7], "bundle.json", with_artifacts=False)
    new_ids = import_bundle("bundle.json")     # BundleError: one line, and the store is unchanged
    kernel_bundle(spec, ctx)                   # a kernel run measured on a GPU box (benchmarks/kernels_cuda.py)

Two formats come in through the same door: a store's export (`sparsity-lab-bundle`, any runs) and
a kernel bundle (`sparsity-lab/kernel-bundle`: one kernel run's spec, facts, metrics and sweep
table, written where no store is). A bundle is data from somebody else, so import trusts nothing:
the file size is capped before it is parsed, every field is checked by the pydantic schema below
(types, lengths, counts), artifact paths must be plain relative file names (no `..`, no absolute
paths), file contents must match their sha256, each spec is read at its own `spec_version`
(upgraded, or refused when a newer release wrote it), and only then do all rows go in within one
transaction; files written before a failure are removed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from db import artifacts, repo
from db.models import FINISHED, RUN_STATUSES
from sparsity_core.jobs.context import RunContext
from sparsity_core.paths import artifacts_dir
from sparsity_core.specs import SCHEMA_VERSION, KernelSpec, SpecError, upgrade_spec

FORMAT = "sparsity-lab-bundle"
VERSION = 1
KERNEL_FORMAT = "sparsity-lab/kernel-bundle"
MAX_SWEEP_ROWS = 1_000_000  # a sweep is shapes x tokens x sparsities x layouts x modes: thousands
MAX_BUNDLE_BYTES = 512 * 2**20  # a bundle with artifacts can be large; beyond this it is not a bundle
MAX_ARTIFACT_BYTES = 256 * 2**20  # one embedded file (pruning masks of a 135M model are ~20 MB)
MAX_RUNS = 10_000
MAX_METRICS_PER_RUN = 1_000_000  # per-layer metrics of a 30-layer LM over 20 sparsities are ~5k
MAX_SPEC_VERSION = 10_000  # far above any release's SCHEMA_VERSION; 1e30 is a clear refusal, not an OverflowError
# JSON nesting: an export is ~6 levels deep (runs, run, spec, params, ...); ~990 would pass json.loads
# here and then exceed the recursion limit when the store serialises it, a RecursionError mid-import
MAX_DEPTH = 64
SAFE_NAME = re.compile(r"^[A-Za-z0-9._@:+=-][A-Za-z0-9._@:+= -]{0,199}$")


def _version_in_range(value: Any) -> Any:
    """spec_version must be a whole number 1..MAX_SPEC_VERSION; 1e30 or 2**70 reads as one clear
    line here, before int conversion can overflow (pydantic's own words for that are obscure)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (1 <= value <= MAX_SPEC_VERSION) \
            or value != int(value):
        raise ValueError(f"spec_version {str(value)[:40]} is not a whole number from 1 to {MAX_SPEC_VERSION}")
    return int(value)


class BundleError(ValueError):
    """A bundle that cannot be imported; the message is one line for a person."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), strict=False)


class BundleMetric(_Strict):
    key: str = Field(min_length=1, max_length=64)
    series: str = Field("", max_length=200)
    x: Optional[float] = None
    value: float


class BundleArtifact(_Strict):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["safetensors", "parquet", "json", "dir"]
    path: str = Field(description="file name inside the run's artifact folder")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0, le=MAX_ARTIFACT_BYTES)
    data_b64: Optional[str] = Field(None, max_length=MAX_ARTIFACT_BYTES * 4 // 3 + 4)

    @field_validator("path")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # one file name, no folders: nothing can land outside the new run's artifact folder
        if not SAFE_NAME.match(value) or value in (".", "..") or ".." in value:
            raise ValueError(f"artifact path {value[:80]!r} is not a plain file name")
        return value


class BundleRun(_Strict):
    id: int = Field(ge=1, description="the run's id in the store it came from")
    kind: str = Field(min_length=1, max_length=32, pattern=r"^[a-z_][a-z0-9_]*$")
    name: Optional[str] = Field(None, max_length=200)
    notes: Optional[str] = Field(None, max_length=100_000)
    model: str = Field(min_length=1, max_length=500)
    method: Optional[str] = Field(None, max_length=64)
    spec: dict[str, Any]
    spec_version: int = Field(ge=1, le=MAX_SPEC_VERSION)
    status: Literal[RUN_STATUSES]  # type: ignore[valid-type]
    _spec_version = field_validator("spec_version", mode="before")(_version_in_range)
    parent_run: Optional[int] = Field(None, ge=1)
    created_at: datetime
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    error: Optional[str] = Field(None, max_length=100_000)
    info: dict[str, Any] = {}
    metrics: list[BundleMetric] = Field([], max_length=MAX_METRICS_PER_RUN)
    artifacts: list[BundleArtifact] = Field([], max_length=1000)

    @model_validator(mode="after")
    def _whole(self) -> "BundleRun":
        # NaN / Inf are refused, not stored: the store has no way to show them, and a sum over them is junk
        for m in self.metrics:
            if not math.isfinite(m.value) or (m.x is not None and not math.isfinite(m.x)):
                raise ValueError(f"run {self.id} metric {m.key!r}: value {m.value} at x {m.x} is not finite "
                                 "(NaN / Inf are refused)")
        # two files with one path (or name) would overwrite each other and leave a sha256 that no longer matches
        for field in ("path", "name"):
            seen: set[str] = set()
            for art in self.artifacts:
                if getattr(art, field) in seen:
                    raise ValueError(f"run {self.id} has two artifacts with {field} {getattr(art, field)[:80]!r}")
                seen.add(getattr(art, field))
        return self


class Bundle(_Strict):
    format: Literal["sparsity-lab-bundle"]
    version: Literal[1]
    exported_at: datetime
    runs: list[BundleRun] = Field(max_length=MAX_RUNS)

    @field_validator("runs")
    @classmethod
    def _unique_ids(cls, runs: list[BundleRun]) -> list[BundleRun]:
        if len({r.id for r in runs}) != len(runs):
            raise ValueError("two runs share one id")
        parent = {r.id: r.parent_run for r in runs}
        acyclic: set[int] = set()  # runs whose parent chain is known to leave the bundle: each walked once
        for run in runs:  # lineage is a tree: following parents inside the bundle must leave it, never loop
            path, at = [run.id], parent[run.id]
            while at in parent and at not in acyclic:
                if at in path:
                    raise ValueError(f"parent runs form a cycle: {' -> '.join(map(str, [*path, at]))}")
                path.append(at)
                at = parent[at]
            acyclic.update(path)
        return runs


class KernelBundle(_Strict):
    """One kernel run measured where no store is (benchmarks/kernels_cuda.py on a GPU machine)."""

    format: Literal["sparsity-lab/kernel-bundle"]
    version: Literal[1]
    spec: dict[str, Any]
    spec_version: int = Field(1, ge=1, le=MAX_SPEC_VERSION)  # kernel bundles written before they said so hold version-1 specs
    _spec_version = field_validator("spec_version", mode="before")(_version_in_range)
    info: dict[str, Any] = {}
    metrics: list[BundleMetric] = Field([], max_length=MAX_METRICS_PER_RUN)
    sweep: list[dict[str, Any]] = Field([], max_length=MAX_SWEEP_ROWS)

    @field_validator("spec")
    @classmethod
    def _a_kernel_spec(cls, spec: dict[str, Any]) -> dict[str, Any]:
        if spec.get("kind") != "kernel" or not isinstance(spec.get("model"), str) or not spec["model"]:
            raise ValueError("the bundle's spec is not a kernel spec naming its model")
        return spec

    def as_bundle(self) -> Bundle:
        """The same run as a one-run store bundle, its sweep table an embedded parquet file."""
        artifacts = []
        if self.sweep:
            buffer = io.BytesIO()
            try:
                pd.DataFrame(self.sweep).to_parquet(buffer, index=False)
            except (ValueError, TypeError, OverflowError, NotImplementedError) as exc:
                # pyarrow's ArrowInvalid / ArrowTypeError / ArrowNotImplementedError ({} as a cell) are
                # these; an int past 64 bits is a plain OverflowError
                raise BundleError(f"the sweep table cannot be stored: {str(exc)[:120]}") from None
            data = buffer.getvalue()
            artifacts.append(BundleArtifact(name="sweep", kind="parquet", path="sweep.parquet", bytes=len(data),
                                            sha256=hashlib.sha256(data).hexdigest(),
                                            data_b64=base64.b64encode(data).decode()))
        device = self.info.get("device")
        device = device if isinstance(device, dict) else {}  # a bundle's own words: "device": "cpu" is no dict
        name = self.spec.get("name") or \
            f"imported: {device.get('gpu') or device.get('cpu_model') or 'unknown device'}"
        now = datetime.now(timezone.utc)
        run = BundleRun(id=1, kind="kernel", name=str(name)[:200], model=self.spec["model"][:500],
                        spec=self.spec, spec_version=self.spec_version, status="succeeded", created_at=now,
                        finished_at=now, info=self.info, metrics=self.metrics, artifacts=artifacts)
        return Bundle(format=FORMAT, version=VERSION, exported_at=now, runs=[run])


def kernel_bundle(spec: KernelSpec, ctx: RunContext) -> dict[str, Any]:
    """A kernel run measured here, in memory (`run_kernel(spec, ctx)`), as a JSON-able kernel
    bundle: spec, device fingerprint and facts, metric rows and the sweep table as rows."""
    sweep = ctx.artifacts.get("sweep")
    rows = pd.read_parquet(sweep[0]).to_dict("records") if sweep else []
    return {"format": KERNEL_FORMAT, "version": 1, "spec": spec.model_dump(mode="json"),
            "spec_version": SCHEMA_VERSION, "info": ctx.facts, "metrics": ctx.metrics, "sweep": _json_safe(rows)}


def _json_safe(rows: list[dict]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]


# ---------------------------------------------------------------- export
def bundle_dict(run_ids: list[int], with_artifacts: bool = False) -> dict[str, Any]:
    """The bundle of `run_ids` as a dict (KeyError for an unknown id: nothing half-exported)."""
    runs = {r.id: r for r in repo.list_runs(ids=run_ids)}
    missing = [i for i in run_ids if i not in runs]
    if missing:
        raise KeyError(f"no run {', '.join(map(str, missing))} in the store")
    metrics = repo.metrics_frame(run_ids)
    out = []
    for run_id in run_ids:
        run = runs[run_id]
        rows = metrics[metrics["run_id"] == run_id]
        out.append({
            "id": run.id, "kind": run.kind, "name": run.name, "notes": run.notes, "model": run.model,
            "method": run.method, "spec": run.spec, "spec_version": run.spec_version, "status": run.status,
            "parent_run": run.parent_run_id, "created_at": _iso(run.created_at),
            "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at), "error": run.error,
            "info": run.info or {},
            "metrics": [{"key": r.key, "series": r.series, "x": None if pd.isna(r.x) else float(r.x),
                         "value": float(r.value)} for r in rows.itertuples()],
            "artifacts": [_artifact_dict(a, with_artifacts) for a in repo.list_artifacts(run_id)
                          if a.kind != "dir"],  # folders (save_pretrained) stay home: too big to mail
        })
    return {"format": FORMAT, "version": VERSION, "exported_at": _iso(datetime.now(timezone.utc)), "runs": out}


def _iso(value: Optional[datetime]) -> Optional[str]:
    return None if value is None else value.isoformat(timespec="seconds")


def _artifact_dict(art, with_data: bool) -> dict[str, Any]:
    row = {"name": art.name, "kind": art.kind, "path": Path(art.path).name, "sha256": art.sha256,
           "bytes": art.bytes}
    if with_data:
        row["data_b64"] = base64.b64encode(repo.artifact_path(art.run_id, art.name).read_bytes()).decode()
    return row


def write_bundle(run_ids: list[int], path: Path, with_artifacts: bool = False) -> Path:
    text = json.dumps(bundle_dict(run_ids, with_artifacts), allow_nan=True)
    Path(path).write_text(text)
    return Path(path)


def metrics_csv(run_ids: list[int]) -> str:
    """Long-format metrics (run_id, run_name, kind, key, series, x, value) as CSV text."""
    frame = repo.metrics_frame(run_ids)
    names = {r.id: (r.name or "", r.kind) for r in repo.list_runs(ids=run_ids)}
    frame.insert(1, "run_name", frame["run_id"].map(lambda i: names.get(i, ("", ""))[0]))
    frame.insert(2, "kind", frame["run_id"].map(lambda i: names.get(i, ("", ""))[1]))
    for column in frame.select_dtypes(exclude="number").columns:
        frame[column] = frame[column].map(_inert_cell)
    # RFC 4180's CRLF: with it the csv writer also quotes a cell holding a lone CR, which with "\n"
    # endings it writes bare, and a spreadsheet then splits the row
    return frame.to_csv(index=False, lineterminator="\r\n")


def _inert_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading
    quote, so it opens as the text it is (OWASP's CSV injection advice); numbers are left alone."""
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# ---------------------------------------------------------------- import
def read_bundle(path: Path) -> Bundle:
    """Parse and validate a bundle file; BundleError with one line on anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"no bundle file {path}")
    if path.stat().st_size > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path.name} is {path.stat().st_size / 2**20:.0f} MiB; a bundle is at most "
                          f"{MAX_BUNDLE_BYTES // 2**20} MiB")
    return parse_bundle_bytes(path.read_bytes(), path.name)


def parse_bundle_bytes(data: bytes, name: str = "the bundle") -> Bundle:
    """Parse and validate a bundle's bytes (a file, an upload); BundleError on anything wrong."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"{name} is {len(data) / 2**20:.0f} MiB; a bundle is at most {MAX_BUNDLE_BYTES // 2**20} MiB")
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, an int of 5000 digits
        raise BundleError(f"{name} is not valid JSON: {str(exc)[:120]}") from None
    return parse_bundle(parsed)


def _shape_problem(data: Any, limit: int = MAX_DEPTH) -> Optional[str]:
    """Why the parsed JSON cannot be stored whatever its schema (walked without recursion): lists /
    dicts nested more than `limit` levels, or a NUL character in a string (PostgreSQL's text refuses it)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            return "a string in the bundle holds a NUL character (\\u0000), which the store cannot keep"
        if isinstance(value, (dict, list)):
            if depth > limit:
                return f"the bundle nests lists / objects more than {limit} levels deep"
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items)
    return None


def parse_bundle(data: Any) -> Bundle:
    """Validate a parsed bundle of either format into a store bundle; BundleError on anything wrong."""
    kind = data.get("format") if isinstance(data, dict) else None
    if kind not in (FORMAT, KERNEL_FORMAT):
        raise BundleError(f"not a Sparsity Lab bundle (expected \"format\": \"{FORMAT}\" or \"{KERNEL_FORMAT}\")")
    if (problem := _shape_problem(data)) is not None:
        raise BundleError(problem)
    try:
        return Bundle.model_validate(data) if kind == FORMAT else KernelBundle.model_validate(data).as_bundle()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise BundleError(f"invalid bundle at {where}: {err['msg'].removeprefix('Value error, ')}{more}") from None


def _decoded(art: BundleArtifact, run_id: int) -> bytes:
    try:
        data = base64.b64decode(art.data_b64 or "", validate=True)
    except ValueError as exc:  # binascii.Error is one, and so is text that is not ASCII
        raise BundleError(f"artifact {art.name!r} of run {run_id} is not valid base64: {exc}") from None
    if len(data) != art.bytes or hashlib.sha256(data).hexdigest() != art.sha256:
        raise BundleError(f"artifact {art.name!r} of run {run_id} does not match its size / sha256")
    return data


def import_bundle(path: Path) -> list[int]:
    """Load a bundle file's runs into this store; returns the new run ids, in bundle order."""
    return import_parsed(read_bundle(path))


def import_bytes(data: bytes, name: str = "the bundle") -> list[int]:
    """Load an uploaded bundle's runs into this store; returns the new run ids, in bundle order."""
    return import_parsed(parse_bundle_bytes(data, name))


def import_parsed(bundle: Bundle) -> list[int]:
    """Load validated runs into this store; returns the new run ids, in bundle order.

    Parents inside the bundle are re-linked to their new ids; a parent that is not in the bundle
    is dropped (its old id is kept in info["imported"]). Artifacts without data are listed in info
    only. All or nothing: on any error nothing is stored."""
    specs = {r.id: _spec(r) for r in bundle.runs}
    payloads = {r.id: {a.name: _decoded(a, r.id) for a in r.artifacts if a.data_b64} for r in bundle.runs}
    written: list[Path] = []

    def write_files(new_ids: dict[int, int]) -> list[dict[str, Any]]:
        rows = []
        for run in bundle.runs:
            for art in run.artifacts:
                if art.name in payloads[run.id]:
                    folder = artifacts_dir(new_ids[run.id])
                    written.append(folder)
                    target = folder / art.path
                    target.write_bytes(payloads[run.id][art.name])
                    key, _, _ = artifacts.store(target)  # uploaded when SPARSITY_ARTIFACTS is shared
                    rows.append({"run_id": new_ids[run.id], "name": art.name, "kind": art.kind,
                                 "path": key, "sha256": art.sha256,
                                 "bytes": art.bytes})
        return rows

    try:
        return repo.import_runs([_run_row(r, specs[r.id], bundle.exported_at) for r in bundle.runs], write_files)
    except Exception:
        for folder in written:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _spec(run: BundleRun) -> dict[str, Any]:
    """The run's spec as this release writes it: an older version upgraded, a newer one refused.
    Not validated against this machine (a colleague's `hf:./checkpoint` need not exist here): the
    run is a record, it will not run here."""
    try:
        return upgrade_spec(run.spec, run.spec_version)
    except SpecError as exc:
        raise BundleError(f"run {run.id}: {exc.errors.get('spec_version', exc)}") from None
    except Exception as exc:  # noqa: BLE001  (an upgrade meets data nobody checked: v1 "params": "x")
        raise BundleError(f"run {run.id}: its version-{run.spec_version} spec cannot be upgraded "
                          f"({type(exc).__name__}: {str(exc)[:80]})") from None


def _run_row(run: BundleRun, spec: dict[str, Any], exported_at: datetime) -> dict[str, Any]:
    provenance = {"bundle_run_id": run.id, "bundle_parent_run": run.parent_run,
                  "exported_at": exported_at.isoformat(timespec="seconds"),
                  "artifacts_not_included": [a.name for a in run.artifacts if not a.data_b64]}
    # a run exported while queued or running must not be picked up by this store's worker
    status = run.status if run.status in FINISHED else "cancelled"
    if status != run.status:
        provenance["status_when_exported"] = run.status
    return {"old_id": run.id, "old_parent": run.parent_run, "kind": run.kind, "name": run.name,
            "notes": run.notes, "model": run.model, "method": run.method, "spec": spec,
            "spec_version": SCHEMA_VERSION, "status": status, "created_at": _naive(run.created_at),
            "started_at": _naive(run.started_at), "finished_at": _naive(run.finished_at),
            "error": run.error, "info": {**run.info, "imported": provenance},
            "metrics": [m.model_dump() for m in run.metrics]}


def _naive(value: Optional[datetime]) -> Optional[datetime]:
    """The store keeps naive UTC (SQLite has no zones)."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    except OverflowError:  # 9999-12-31T23:59-05:00 is in year 10000 in UTC
        raise BundleError(f"date {value.isoformat()} is out of range in UTC") from None
