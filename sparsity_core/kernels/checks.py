"""Checks before a kernel run is queued (the jobs layer's preflight for kind `kernel`); no torch.

The app runs this at submit, so it reads only the spec and the parent's record. The device is
resolved where the run runs (`run.kernel_device`, the one resolver): the machine that measures is
the one whose GPU counts, which need not be the app's. The run itself calls this preflight again
before it allocates anything, so the memory check is repeated where the tensors will live.

    sweep_bytes(spec)                 # what the sweep allocates at its largest point, in bytes
    memory_problem(spec, free_bytes)  # "needs 9.2 GiB, 3.1 GiB free ..." or None
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Optional

import psutil

from sparsity_core.catalog import caps
from sparsity_core.catalog.pruning import METHODS
from sparsity_core.jobs.context import ParentRun, check_parent
from sparsity_core.specs import KernelSpec, SpecError

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
INDEX_BYTES = 8  # torch's CSR / BSR indices are int64


def preflight_kernel(spec: KernelSpec, parent: Optional[ParentRun]) -> None:
    """Something to measure (shapes, or a parent pruning run of the spec's model, succeeded), and
    a sweep whose tensors fit in the free memory of the device it asks for."""
    if not spec.shapes and spec.parent_run is None:
        raise SpecError({"shapes": "give at least one layer shape, or a parent pruning run"})
    problem = memory_problem(spec, free_bytes(spec.device))
    if problem:
        raise SpecError({"shapes": problem})
    if spec.parent_run is not None and activation_parent(parent):
        check_activation_parent(parent, spec)
    elif spec.parent_run is not None:
        check_parent(parent, spec)


def activation_parent(parent: Optional[ParentRun]) -> bool:
    """The parent is a WINA / TEAL run: its weights are dense, its targets are activation sparsities
    (timed at batch 1 by kernels/activation.py, not by the pruned-model path)."""
    entry = METHODS.get((parent.method or parent.spec.get("method") or "") if parent else "")
    return parent is not None and parent.kind == "prune" and entry is not None and entry.activation


def check_activation_parent(parent: ParentRun, spec: KernelSpec) -> None:
    """The one parent rule for an activation-sparsity run, whose targets are `activation@x`."""
    if parent.status != "succeeded" or parent.model != spec.model:
        check_parent(parent, spec)  # raises the shared rule's message
    if not parent.targets("activation"):
        raise SpecError({"parent_run": f"activation-sparsity run {parent.id} stored no targets"})


def point_bytes(spec: KernelSpec, shape: list[int], tokens: int) -> int:
    """Bytes one sweep point holds at once (kernels/sweep.py's `_Point` and its candidates), at the
    spec's lowest sparsity (the most non-zeros):
      input x: fp32 draw + its cast to the dtype                           tokens x in x (4 + b)
      masking: fp32 product, bool mask, masked copy in the dtype           out x in x (4 + 1 + b)
      each layout's weight: dense out x in x b; sparse nnz x (b + 8) + (out + 1) x 8 indices
      outputs: the fp32 reference + one output per (layout, mode)          tokens x out x (4 + b x n)"""
    out, inp = shape
    b = DTYPE_BYTES[spec.dtype]
    nnz = int(out * inp * (1 - min(spec.sparsities)))
    layouts = sum(out * inp * b if name in ("dense", "shrunk") else nnz * (b + INDEX_BYTES) + (out + 1) * INDEX_BYTES
                  for name in spec.layouts)
    outputs = tokens * out * (4 + b * len(spec.layouts) * len(spec.modes))
    return tokens * inp * (4 + b) + out * inp * (4 + 1 + b) + layouts + outputs


def sweep_bytes(spec: KernelSpec) -> tuple[int, list[int]]:
    """(bytes, shape) at the sweep's largest point: every shape's fp32 weight and bias stay cached
    for the whole sweep, plus the working set of the largest shape at the largest token count."""
    if not spec.shapes:
        return 0, []
    cached = sum(out * inp * 4 + out * 4 for out, inp in spec.shapes)
    tokens = max(spec.tokens)
    largest = max(spec.shapes, key=lambda shape: point_bytes(spec, shape, tokens))
    return cached + point_bytes(spec, largest, tokens), largest


def memory_problem(spec: KernelSpec, free: Optional[int]) -> Optional[str]:
    """Why the sweep does not fit in `free` bytes (None: it fits, or free memory is unknown)."""
    needs, shape = sweep_bytes(spec)
    if free is None or needs <= caps.KERNEL_MEMORY_SHARE * free:
        return None
    where = "GPU memory" if spec.device == "cuda" else "memory"
    return (f"the sweep needs {gib(needs)} at its largest point ({shape[0]}x{shape[1]} at {max(spec.tokens)} "
            f"tokens), {gib(free)} {where} free here (a sweep may use {caps.KERNEL_MEMORY_SHARE:.0%} of it): "
            "use fewer tokens or smaller shapes")


def gib(n: float) -> str:
    """9.2 GiB; below a GiB in MiB (0.0 GiB says nothing)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def free_bytes(device: str) -> Optional[int]:
    """Free memory of `device` on this machine: available RAM for the CPU; for CUDA, torch's count
    when torch is loaded already (the worker), else nvidia-smi's (the app, which never loads torch);
    None when neither can tell (then the run checks again where it runs)."""
    if device == "cpu":
        return psutil.virtual_memory().available
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
    return _nvidia_smi_free()


def _nvidia_smi_free() -> Optional[int]:
    """Free MiB of GPU 0 as nvidia-smi reports it, in bytes; None without a readable answer."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
        return int(out.split()[0]) * 2**20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
