"""The lab's gathered GEMV for CUDA GPUs, in Triton: y = W[:, idx] @ x[idx], reading only the kept
rows of W^T, for activation sparsity at batch 1 (the GPU side of native/gather_gemv.c).

    reason = triton_unavailable(device, dtype)        # None, or why it cannot run here
    y = triton_gather_gemv(weight_t, idx, values)     # weight_t = W^T (in, out); idx (k,) int64; values (k,)

torch has no fused gathered GEMV that is fast on a GPU: embedding_bag, the CPU's, walks the kept
rows of one bag almost serially there (measured on an H200: 1.3 ms for 3,072 of 4,096 columns of a
4096x4096 layer, dense 0.1 ms). This kernel is the shape of the papers' (TEAL's, WINA's) Triton
GEMVs. The grid is (output blocks of BLOCK_N, SPLIT slices of the kept list): each program walks its
slice BLOCK_K indices at a time, loads their x values and the BLOCK_K x BLOCK_N tile of W^T at those
rows (each row's outputs are contiguous, so the loads coalesce), and accumulates in float32; the
slices meet through atomic adds into a float32 output, cast to the weight's dtype at the end. At
batch 1 a layer has few output blocks (576 outputs: 5 of 128), so the kept list is split until the
grid has a few programs per multiprocessor. The atomics make the sum's order, and so its last bits,
vary between calls.

With TRITON_INTERPRET=1 Triton runs the kernel on the CPU (tests check it there when Triton is
installed); CI has no Triton and no GPU, and the kernel lab then leaves `gathered_triton` out, saying why.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

try:  # Triton ships with CUDA builds of torch; the CPU build has none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

BLOCK_N = 128  # outputs per program: 128 fp16 = 256 contiguous bytes of each kept W^T row
BLOCK_K = 32  # kept rows per step: a 32x128 tile in registers
PROGRAMS_PER_SM = 4
DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_unavailable(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the Triton gathered GEMV can run on `device` in `dtype`, else why not."""
    if triton is None:
        return "Triton is not installed (it comes with torch's CUDA builds)"
    if device.type != "cuda" and not interpreted():
        return "the Triton gathered GEMV is a CUDA kernel (TRITON_INTERPRET=1 runs it on the CPU, slowly)"
    if dtype not in DTYPES:
        return f"the Triton gathered GEMV takes {', '.join(str(d) for d in DTYPES)}, not {dtype}"
    return None


if triton is not None:
    @triton.jit
    def _gather_gemv_kernel(wt_ptr, idx_ptr, val_ptr, out_ptr, kept, width, row_stride, per_slice,
                            BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < width
        start = tl.program_id(1) * per_slice
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for step in range(0, per_slice, BLOCK_K):  # the last slice's tail is masked off
            offs = start + step + tl.arange(0, BLOCK_K)
            ok = offs < kept
            rows = tl.load(idx_ptr + offs, mask=ok, other=0)
            vals = tl.load(val_ptr + offs, mask=ok, other=0.0).to(tl.float32)
            tile = tl.load(wt_ptr + rows[:, None] * row_stride + cols[None, :],
                           mask=ok[:, None] & col_ok[None, :], other=0.0)
            acc += tl.sum(tile.to(tl.float32) * vals[:, None], axis=0)
        tl.atomic_add(out_ptr + cols, acc, mask=col_ok)


def slices_for(kept: int, width: int, programs: int) -> tuple[int, int]:
    """(slices, kept rows per slice, a multiple of BLOCK_K) so that output blocks x slices is about
    `programs`, with every slice non-empty."""
    blocks = -(-width // BLOCK_N)
    steps = max(1, -(-kept // BLOCK_K))  # BLOCK_K-row steps in the whole kept list
    wanted = max(1, min(steps, -(-programs // blocks)))
    per_slice = -(-steps // wanted) * BLOCK_K
    return -(-kept // per_slice), per_slice


def triton_gather_gemv(weight_t: Tensor, idx: Tensor, values: Tensor) -> Tensor:
    """sum_j values[j] * weight_t[idx[j]] (out,) in weight_t's dtype: W[:, idx] @ x[idx]."""
    if triton is None:
        raise RuntimeError(triton_unavailable(weight_t.device, weight_t.dtype))
    if weight_t.stride(1) != 1:
        raise ValueError("weight_t must be contiguous: W^T stored (in, out), each kept row read whole")
    idx, values = idx.contiguous(), values.contiguous()  # the kernel reads both with stride 1
    kept, width = idx.numel(), weight_t.shape[1]
    out = torch.zeros(width, dtype=torch.float32, device=weight_t.device)
    if kept == 0:
        return out.to(weight_t.dtype)
    sms = torch.cuda.get_device_properties(weight_t.device).multi_processor_count \
        if weight_t.device.type == "cuda" else 1
    slices, per_slice = slices_for(kept, width, PROGRAMS_PER_SM * sms)
    grid = (-(-width // BLOCK_N), slices)
    _gather_gemv_kernel[grid](weight_t, idx, values, out, kept, width, weight_t.stride(0), per_slice,
                              BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
    return out.to(weight_t.dtype)
