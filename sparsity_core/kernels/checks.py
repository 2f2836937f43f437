"""Checks before a kernel run is queued (the jobs layer's preflight for kind `kernel`); no torch.

The app runs this at submit, so it reads only the spec and the parent's record. The device is
resolved where the run runs (`run.kernel_device`, the one resolver): the machine that measures is
the one whose GPU counts, which need not be the app's.
"""

from __future__ import annotations

from typing import Optional

from sparsity_core.jobs.context import ParentRun, check_parent
from sparsity_core.specs import KernelSpec, SpecError


def preflight_kernel(spec: KernelSpec, parent: Optional[ParentRun]) -> None:
    """Something to measure (shapes, or a parent pruning run of the spec's model, succeeded)."""
    if not spec.shapes and spec.parent_run is None:
        raise SpecError({"shapes": "give at least one layer shape, or a parent pruning run"})
    if spec.parent_run is not None:
        check_parent(parent, spec)
