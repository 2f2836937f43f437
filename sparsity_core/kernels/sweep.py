"""The layer sweep: shape x tokens x sparsity x layout (x launch mode), each timed beside dense.

For each point the weight is masked with the pattern the layout needs (unstructured, 2:4 or whole
rows, by magnitude), the layout's output is checked against the dense masked layer in float32
(`rel_error`), and layout and dense are timed side by side (`harness.time_interleaved`).
A point a layout cannot run on this device is a row with status `unsupported` and the reason.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from sparsity_core.kernels.harness import cuda_graph, rel_error, time_interleaved
from sparsity_core.kernels.layouts import layout_for, make_mask
from sparsity_core.zoo.devices import resolve_device

TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 2e-2}  # fp16: 10 mantissa bits
SEMI24_SPARSITY = 0.5  # 2 of every 4 are zero: the pattern has exactly one sparsity

def series_name(layout: str, mode: str, shape: tuple[int, int], tokens: int) -> str:
    """`csr|3072x768|32` (eager) or `semi24+cuda_graph|4096x4096|16`: layout, shape, tokens."""
    label = layout if mode == "eager" else f"{layout}+{mode}"
    return f"{label}|{shape[0]}x{shape[1]}|{tokens}"


def launch(module: nn.Module, x: Tensor, mode: str, device: torch.device) -> Callable[[], Tensor]:
    """A zero-argument call of `module(x)` in the launch mode; raises Unsupported with the reason
    when the mode cannot run here (Unsupported). CUDA graphs replay a captured launch sequence (no per-call CPU
    overhead); torch.compile fuses the bias and may pick other kernels."""
    if mode == "eager":
        return lambda: module(x)
    if mode == "compile":
        compiled = torch.compile(module, dynamic=False)
        return lambda: compiled(x)
    if mode == "cuda_graph":
        if device.type != "cuda":
            raise Unsupported("CUDA graphs need a CUDA device")
        return cuda_graph(lambda: module(x), device)
    raise ValueError(f"unknown mode {mode!r}")


class Unsupported(RuntimeError):
    """This device (or build) cannot run a layout or mode; the message says why."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, Unsupported):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


class _Point:
    """One (shape, tokens, sparsity): the masks per pattern, the fp32 references, the candidates."""

    def __init__(self, weight: Tensor, bias: Tensor, x: Tensor, sparsity: float, dtype: torch.dtype):
        self.weight, self.bias, self.x, self.sparsity, self.dtype = weight, bias, x, sparsity, dtype
        self.masked: dict[str, Tensor] = {}
        self.refs: dict[str, Tensor] = {}

    def masked_weight(self, pattern: str) -> Tensor:
        if pattern not in self.masked:
            w = self.weight * make_mask(self.weight, self.sparsity, pattern)
            self.masked[pattern] = w.to(self.dtype)
            # the reference is the same (rounded) weights multiplied in float32
            self.refs[pattern] = nn.functional.linear(self.x.float(), self.masked[pattern].float(), self.bias.float())
        return self.masked[pattern]


def _candidate(point: _Point, name: str, mode: str, block: int, device: torch.device):
    """(callable, rel_error) for one layout and mode, or raises Unsupported(reason)."""
    layout = layout_for(name, block)
    weight = point.masked_weight(layout.pattern)
    why = layout.unsupported(weight, device, point.dtype)
    if why:
        raise Unsupported(why)
    if layout.pattern == "2:4" and abs(point.sparsity - SEMI24_SPARSITY) > 1e-9:
        raise Unsupported(f"2:4 is exactly {SEMI24_SPARSITY:.0%} sparse; measured at sparsity 0.5 only")
    try:
        module = layout.build(weight, point.bias.to(point.dtype))
        fn = launch(module, point.x, mode, device)
        with torch.no_grad():
            out = fn()
    except Exception as exc:  # the device refused: keep its own words as the reason
        raise Unsupported(_reason(exc)) from None
    return fn, rel_error(out, point.refs[layout.pattern])


@torch.no_grad()
def sweep(spec, report: Callable[[dict], None], on_step: Optional[Callable[[float, str], None]] = None,
          device: Optional[torch.device] = None) -> None:
    """Run the sweep of a KernelSpec on `device` (default: the spec's, resolved); `report(row)` gets
    one dict per (point, layout, mode): shape, tokens, sparsity, layout, mode, series, status,
    reason, latency_ms, iqr_ms, dense_ms, speedup, rel_error."""
    device, dtype = device or resolve_device(spec.device), getattr(torch, spec.dtype)
    gen = torch.Generator().manual_seed(spec.seed)
    points = [(tuple(sh), t, s) for sh in spec.shapes for t in spec.tokens for s in spec.sparsities]
    weights: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
    for i, (shape, tokens, sparsity) in enumerate(points):
        if on_step:
            on_step(i / len(points), f"layer sweep, point {i + 1}/{len(points)}: {shape[0]}x{shape[1]}, "
                                    f"{tokens} tokens, sparsity {sparsity:g}")
        # Step 1: weights like a trained layer's scale (std 1/sqrt(in)), the same for every point of a shape
        if shape not in weights:
            w = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
            weights[shape] = (w.to(device), (0.1 * torch.randn(shape[0], generator=gen)).to(device))
        x = torch.randn(tokens, shape[1], generator=gen).to(device, dtype)
        point = _Point(*weights[shape], x, sparsity, dtype)
        # Step 2: build and check every (layout, mode); dense of the same mode is the baseline
        fns, checks, unsupported = {}, {}, {}
        for mode in spec.modes:
            for name in spec.layouts:
                key = (name, mode)
                try:
                    fns[key], checks[key] = _candidate(point, name, mode, spec.block, device)
                except Unsupported as exc:
                    unsupported[key] = str(exc)
        # Step 3: time everything that runs, side by side
        timings = time_interleaved({k: v for k, v in fns.items()}, device, spec.warmup, spec.repeats,
                                   spec.l2_flush) if fns else {}
        for (name, mode) in [(n, m) for m in spec.modes for n in spec.layouts]:
            row = {"shape": f"{shape[0]}x{shape[1]}", "out": shape[0], "in": shape[1], "tokens": tokens,
                   "sparsity": sparsity, "layout": name, "mode": mode,
                   "series": series_name(name, mode, shape, tokens), "status": "unsupported",
                   "reason": unsupported.get((name, mode)), "latency_ms": None, "iqr_ms": None,
                   "dense_ms": None, "speedup": None, "rel_error": None}
            if (name, mode) in timings:
                t, dense = timings[(name, mode)], timings.get(("dense", mode))
                ok = checks[(name, mode)] <= TOLERANCE.get(dtype, 1e-2)
                row.update(status="ok" if ok else "mismatch", reason=None, latency_ms=t.median_ms,
                           iqr_ms=t.iqr_ms, rel_error=checks[(name, mode)],
                           dense_ms=dense.median_ms if dense else None,
                           speedup=dense.median_ms / t.median_ms if dense else None)
            report(row)
