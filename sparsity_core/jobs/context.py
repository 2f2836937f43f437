"""The run context: everything a core function may touch while it runs, and nothing of the store.

A core function receives `(spec, ctx)`:

    ctx.update(0.3, "target 50%: pruning layer 4/12")
    ctx.metric("accuracy", 0.97, x=0.5)
    ctx.metric("layer_sparsity", 0.51, x=0.5, series="body.0")
    path = ctx.artifact_dir / "masks.safetensors"; save_file(masks, path)
    ctx.artifact("masks", path, "safetensors")
    ctx.info(evaluation={"dataset": "digits", "split": "test"})
    parent = ctx.parent(spec.parent_run)          # ParentRun: a read-only view of another run

`RunContext` keeps everything in memory (tests, notebooks, a process without the store); the jobs
layer's `StoreContext` (jobs/store_context.py) also writes each report to the store as it happens,
so pages can follow a run live, and reads parents from the store. This module imports neither the
store nor torch, so every compute module may import it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from sparsity_core.specs import SpecError


@dataclass(frozen=True)
class ParentArtifact:
    name: str
    kind: str  # safetensors | parquet | json | dir
    path: Path  # where the writer put it
    fetch: Optional[Callable[[], Path]] = field(default=None, compare=False)  # a checked local copy, made on first use (a store's artifact)


@dataclass(frozen=True)
class ParentRun:
    """What a run may read of another run: its record and its artifacts, never a writer."""

    id: int
    kind: str
    model: str
    status: str
    method: Optional[str] = None
    spec: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, ParentArtifact] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        """The file (or folder) of artifact `name`; KeyError naming what the run has."""
        if name not in self.artifacts:
            raise KeyError(f"run {self.id} has no artifact {name!r}")
        art = self.artifacts[name]
        return art.fetch() if art.fetch is not None else art.path

    def targets(self, prefix: str = "pruned") -> list[float]:
        """Sparsities with an artifact `<prefix>@<x>`: for a pruning run, what `load_pruned` rebuilds."""
        return sorted(float(n.split("@", 1)[1]) for n in self.artifacts if n.startswith(prefix + "@"))


def target_tag(target: float) -> str:
    """How a target sparsity is written in artifact names (`masks@0.5`)."""
    return f"{target:g}"


LAB_NAMES = {"prune": "pruning", "sae": "SAE", "explain": "explanation", "kernel": "kernel latency"}


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" or noun.startswith("SAE") else "a ") + noun  # "an SAE": ess-ay-ee


def check_parent(parent: Optional[ParentRun], spec: Any, *, kinds: Iterable[str] = ("prune",),
                 same_model: bool = True, sparsity: Optional[float] = None,
                 sparsity_field: str = "parent_sparsity") -> Optional[float]:
    """The one rule for a `parent_run`, shared by every lab. Raises SpecError naming the field.

    The parent must exist, be of one of `kinds`, have succeeded and (with `same_model`) be of the
    spec's model. For a pruning parent it returns the target to use: `sparsity` when stored, else
    the highest stored target."""
    run_id, kinds = spec.parent_run, tuple(kinds)
    if parent is None:
        raise SpecError({"parent_run": f"run {run_id} does not exist"})
    if parent.kind not in kinds:
        want = " or ".join(_a(LAB_NAMES.get(k, k)) + " run" for k in kinds)
        raise SpecError({"parent_run": f"run {parent.id} is {_a(LAB_NAMES.get(parent.kind, parent.kind))} run; "
                                       f"this needs {want}"})
    if parent.status != "succeeded":
        raise SpecError({"parent_run": f"run {parent.id} has not succeeded (it is {parent.status})"})
    if same_model and parent.model != spec.model:
        raise SpecError({"parent_run": f"run {parent.id} is of {parent.model}, not {spec.model}: use that model"})
    if parent.kind != "prune":
        return None
    stored = parent.targets()
    if not stored:
        raise SpecError({"parent_run": f"pruning run {parent.id} stored no pruned weights"})
    if sparsity is None:
        return stored[-1]
    match = [s for s in stored if target_tag(s) == target_tag(sparsity)]
    if not match:
        raise SpecError({sparsity_field: f"run {parent.id} has sparsities {', '.join(map(target_tag, stored))}"})
    return match[0]


class RunContext:
    """In-memory context: collects progress, metrics, artifacts and facts; serves given parents."""

    def __init__(self, artifact_dir: Optional[Path] = None, parents: Optional[Iterable[ParentRun]] = None):
        self.artifact_dir = Path(artifact_dir) if artifact_dir else Path(tempfile.mkdtemp(prefix="sparsity-"))
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self.fraction = 0.0
        self.message = ""
        self.metrics: list[dict[str, Any]] = []
        self.artifacts: dict[str, tuple[Path, str]] = {}
        self.facts: dict[str, Any] = {}
        self._parents = {p.id: p for p in parents or ()}

    # ---------------------------------------------------------------- what the run reports
    def update(self, fraction: float, message: str = "") -> None:
        self.fraction, self.message = float(fraction), message

    def metric(self, key: str, value: float, x: Optional[float] = None, series: str = "") -> None:
        self.metrics.append({"key": key, "series": series, "x": None if x is None else float(x),
                             "value": float(value)})

    def artifact(self, name: str, path: Path, kind: str) -> None:
        self.artifacts[name] = (Path(path), kind)

    def info(self, **facts: Any) -> None:
        self.facts.update(facts)

    # ---------------------------------------------------------------- what the run reads
    def parent(self, run_id: int) -> Optional[ParentRun]:
        """A read-only view of run `run_id`, or None when there is no such run."""
        return self._parents.get(run_id)

    # ---------------------------------------------------------------- for tests and the CLI summary
    def values(self, key: str, series: str = "") -> dict[Optional[float], float]:
        return {m["x"]: m["value"] for m in self.metrics if m["key"] == key and m["series"] == series}

    def as_parent(self, run_id: int, spec: Any, status: str = "succeeded") -> ParentRun:
        """This finished context seen as a parent run (tests chain labs without a store)."""
        return ParentRun(id=run_id, kind=spec.kind, model=spec.model, status=status,
                         method=getattr(spec, "method_name", None), spec=spec.model_dump(mode="json"),
                         info=dict(self.facts),
                         artifacts={n: ParentArtifact(n, k, p) for n, (p, k) in self.artifacts.items()})


class Stage:
    """Map a sub-task's 0..1 progress into a slice [start, stop] of the whole run's bar."""

    def __init__(self, ctx: RunContext, start: float, stop: float):
        self.ctx, self.start, self.stop = ctx, start, stop

    def __call__(self, fraction: float, message: str = "") -> None:
        self.ctx.update(self.start + (self.stop - self.start) * fraction, message)
