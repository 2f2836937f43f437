"""The one device resolver every lab uses: a spec's `device`, or CUDA when present.

    resolve_device("auto")   # cuda when torch sees a GPU, else cpu
    resolve_device("cuda:1") # that GPU, or a SpecError naming the field when it is not there
"""

from __future__ import annotations

import torch

from sparsity_core.specs import SpecError


def resolve_device(name: str = "auto", field: str = "device") -> torch.device:
    """`auto` -> the first CUDA GPU when there is one, else the CPU; `cpu`, `cuda`, `cuda:N` as asked.
    Raises SpecError({field: message}) for a GPU this machine does not have."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpecError({field: f"device must be auto, cpu or cuda[:index], got {name!r}"}) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SpecError({field: f"{name} was asked for but this machine has no CUDA GPU"})
        if device.index is not None and device.index >= count:
            raise SpecError({field: f"{name} does not exist: this machine has {count} GPU(s), indices 0..{count - 1}"})
    elif device.type != "cpu":
        raise SpecError({field: f"device must be auto, cpu or cuda[:index], got {name!r}"})
    return device
