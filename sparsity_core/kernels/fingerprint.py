"""Device fingerprint stored with every latency run: a time means nothing without the machine.

CPU model, cores, the torch thread count in effect, MKL; GPU name, compute capability, driver,
torch / CUDA / cuSPARSELt versions. Everything is read locally; missing facts are None.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any, Optional

import torch


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _driver() -> Optional[str]:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return out.strip().splitlines()[0] if out.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def fingerprint(device: torch.device | str = "cpu") -> dict[str, Any]:
    device = torch.device(device)
    facts: dict[str, Any] = {
        "device": device.type, "cpu_model": _cpu_model(), "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "mkl": torch.backends.mkl.is_available(),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,  # a busy host
        "cuda": torch.version.cuda, "gpu": None, "capability": None, "driver": None, "cusparselt": None,
    }
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        backend = getattr(torch.backends, "cusparselt", None)
        facts.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                     gpu_memory_gb=round(props.total_memory / 2**30, 1), driver=_driver(),
                     cusparselt=backend.version() if backend and backend.is_available() else None)
    return facts
