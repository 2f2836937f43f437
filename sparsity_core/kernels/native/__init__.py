"""The lab's own C kernels, compiled for this CPU at first use and loaded with ctypes.

    reason = csr_linear_unavailable()    # None, or why this machine cannot build/load the kernel
    y = csr_linear(csr_arrays, bias, x)  # x: (tokens, in) fp32 -> (tokens, out)
    y = gather_gemv(weight_t, idx, vals) # W[:, idx] @ vals, weight_t = W^T (in, out): batch-1 activation sparsity

Each shared library is built once per (source, compiler, CPU) into the cache
(`SPARSITY_CACHE/native/<hash>/`), with `-O3 -march=native -fopenmp`; later loads are instant. No C
compiler, or a failed build, makes the `csr_tiled` layout report itself unsupported with the
compiler's message (and leaves the kernel lab's `gathered_c` GEMV out, saying why): the lab never
falls back to a different kernel under the same name.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from sparsity_core.paths import cache_dir

SOURCES = Path(__file__).parent  # csr_linear.c, gather_gemv.c: one library each
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
# each library's one function: (argument types, return type), as the C source declares it
SIGNATURES = {"csr_linear": ([_P, _P, _P, _P, _P, _P, _I64, _I64, _I64, _INT], _INT),
              "gather_gemv": ([_P, _P, _P, _I64, _I64, _I64, _P, _INT], _INT)}
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]


class CSRArrays(NamedTuple):
    """A CSR weight as the C kernel reads it: int32 row pointers and columns, fp32 values."""

    indptr: Tensor
    indices: Tensor
    values: Tensor
    shape: tuple[int, int]


def to_csr_arrays(weight: Tensor) -> CSRArrays:
    csr = weight.detach().float().to_sparse_csr()
    return CSRArrays(csr.crow_indices().to(torch.int32).contiguous(), csr.col_indices().to(torch.int32).contiguous(),
                     csr.values().contiguous(), tuple(weight.shape))


def _cpu_id() -> str:
    """The CPU's model and feature flags: -march=native code is only valid on a matching CPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> Optional[str]:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@lru_cache(maxsize=None)
def _load(name: str = "csr_linear") -> tuple[Optional[ctypes.CDLL], Optional[str]]:
    """(library, None) or (None, why not) for `name`.c. Built at most once per process and per cache."""
    source = SOURCES / f"{name}.c"
    if platform.system() not in ("Linux", "Darwin"):
        return None, f"the compiled kernel {name} is built with a Unix C compiler; this is {platform.system()}"
    cc = _compiler()
    if cc is None:
        return None, "no C compiler found (install gcc, e.g. `apt-get install gcc`, or set CC)"
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"the C compiler {cc} does not run: {exc}"
    key = hashlib.sha256("\0".join([source.read_text(), " ".join(FLAGS), version, _cpu_id()]).encode()).hexdigest()[:16]
    target = cache_dir("native", key) / f"lib{name}.so"
    if not target.exists():
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
            partial = Path(tmp.name)
        try:
            done = subprocess.run([cc, *FLAGS, str(source), "-o", str(partial)], capture_output=True, text=True,
                                  timeout=300)
            if done.returncode != 0:
                return None, f"compiling {source.name} failed: {(done.stderr or done.stdout).strip()[-400:]}"
            partial.replace(target)  # atomic: concurrent workers never load a half-written file
        finally:
            partial.unlink(missing_ok=True)
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        return None, f"loading the compiled kernel failed: {exc}"
    function = getattr(lib, name)
    function.argtypes, function.restype = SIGNATURES[name]
    return lib, None


def csr_linear_unavailable() -> Optional[str]:
    return _load()[1]


def csr_linear(weight: CSRArrays, bias: Optional[Tensor], x: Tensor) -> Tensor:
    """x (tokens, in) @ W^T + bias with the compiled kernel, on torch's CPU thread count."""
    lib, reason = _load()
    if lib is None:
        raise RuntimeError(reason)
    out_features, in_features = weight.shape
    if x.dim() != 2 or x.shape[1] != in_features:
        raise ValueError(f"input of shape {tuple(x.shape)} does not match a {out_features}x{in_features} weight")
    # the C side reads raw pointers: fp32, contiguous (no copy when they already are)
    x = x.detach().float().contiguous()
    bias = None if bias is None else bias.detach().float().contiguous()
    y = torch.empty(x.shape[0], out_features, dtype=torch.float32)
    if x.shape[0] == 0:
        return y
    status = lib.csr_linear(weight.indptr.data_ptr(), weight.indices.data_ptr(), weight.values.data_ptr(),
                            0 if bias is None else bias.data_ptr(), x.data_ptr(), y.data_ptr(),
                            x.shape[0], in_features, out_features, torch.get_num_threads())
    if status != 0:
        raise MemoryError("the CSR kernel could not allocate its token tile")
    return y


def gather_gemv_unavailable() -> Optional[str]:
    return _load("gather_gemv")[1]


def gather_gemv(weight_t: Tensor, idx: Tensor, vals: Tensor, threads: Optional[int] = None) -> Tensor:
    """W[:, idx] @ vals with the compiled kernel, weight_t = W^T (in, out) fp32 contiguous on the CPU,
    idx int64 and vals fp32 of one length (the kept inputs); on torch's CPU thread count by default."""
    lib, reason = _load("gather_gemv")
    if lib is None:
        raise RuntimeError(reason)
    if weight_t.dtype != torch.float32 or weight_t.device.type != "cpu" or not weight_t.is_contiguous():
        raise ValueError("the gathered GEMV reads a contiguous float32 W^T on the CPU")
    if idx.dtype != torch.int64 or idx.numel() != vals.numel():
        raise ValueError(f"int64 indices and as many values are needed, not {idx.dtype} x {idx.numel()} and "
                         f"{vals.numel()}")
    idx, vals = idx.contiguous(), vals.detach().float().contiguous()
    y = torch.empty(weight_t.shape[1], dtype=torch.float32)
    if lib.gather_gemv(weight_t.data_ptr(), idx.data_ptr(), vals.data_ptr(), idx.numel(), weight_t.shape[0],
                       weight_t.shape[1], y.data_ptr(), threads or torch.get_num_threads()):
        raise ValueError(f"an index is outside the {weight_t.shape[0]} inputs of the weight")
    return y
