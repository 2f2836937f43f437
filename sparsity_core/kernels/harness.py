"""The timing harness: warm-up, interleaved repeats, median and spread, on a CPU or a CUDA GPU.

    timings = time_interleaved({"dense": f, "csr": g}, device, warmup=5, repeats=30)
    timings["csr"].median_ms, timings["csr"].iqr_ms

Candidates are timed in rounds, each round running every candidate once in a rotating order, so
a burst of load from another process hits all of them alike and their *ratio* stays honest on a
shared machine. On the CPU a sample is `perf_counter` around enough calls to last at least
MIN_SAMPLE_MS; on CUDA it is a pair of events around one call, with the stream synchronised and,
if asked, the L2 cache flushed before the call (so a small layer is not timed from a warm cache).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

MIN_SAMPLE_MS = 1.0  # perf_counter resolution is ~100 ns, but call overhead jitters by ~10 us
L2_FLUSH_BYTES = 256 << 20  # larger than any GPU's L2 (H100: 50 MB) by a safe margin


@dataclass(frozen=True)
class Timing:
    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def iqr_ms(self) -> float:
        """Interquartile range: the spread of the middle half of the samples."""
        if len(self.samples_ms) < 2:
            return 0.0
        q = statistics.quantiles(self.samples_ms, n=4)
        return q[2] - q[0]


@contextlib.contextmanager
def threads(n: Optional[int]) -> Iterator[int]:
    """Set torch's CPU thread count for the block (None: leave it); yields the count in effect."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _calls_per_sample(fn: Callable[[], object]) -> int:
    start = time.perf_counter()
    fn()
    once_ms = (time.perf_counter() - start) * 1e3
    return max(1, math.ceil(MIN_SAMPLE_MS / max(once_ms, 1e-4)))


def _cpu_sample(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) * 1e3 / number


class _CudaSampler:
    def __init__(self, device: torch.device, l2_flush: bool):
        self.device = device
        self.flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device=device) if l2_flush else None
        self.start = torch.cuda.Event(enable_timing=True)
        self.stop = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.flush is not None:
            self.flush.zero_()  # evicts the layer's weights and inputs from L2
        torch.cuda.synchronize(self.device)
        self.start.record()
        fn()
        self.stop.record()
        self.stop.synchronize()
        return self.start.elapsed_time(self.stop)


class GraphCaptureError(RuntimeError):
    """A callable could not be captured into a CUDA graph (it syncs with the host, say)."""


def cuda_graph(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """`fn` captured once into a CUDA graph; the returned call replays it (the same kernels, with no
    per-call CPU launch cost, as a serving engine runs a decoding step) and returns the captured output."""
    before = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(before)
    with torch.cuda.stream(side):  # warm-up off the capture stream, as the CUDA graph docs ask
        for _ in range(3):
            fn()
    before.wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            out = fn()
    finally:  # a failed capture leaves torch on the capture stream (graphs.py exits it without a finally)
        torch.cuda.set_stream(before)

    def replay() -> object:
        graph.replay()
        return out
    return replay


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device | str = "cpu",
                     warmup: int = 5, repeats: int = 30, l2_flush: bool = False,
                     graphs: bool = False) -> dict[str, Timing]:
    """Median-ready samples for each callable, measured side by side (see the module docstring).
    graphs: on CUDA, time each callable's CUDA-graph replay (`cuda_graph`) instead of its eager call."""
    device = torch.device(device)
    names = list(fns)
    if graphs and device.type == "cuda":
        captured = {}
        for name, fn in fns.items():
            try:
                captured[name] = cuda_graph(fn, device)
            except RuntimeError as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise GraphCaptureError(f"{name}: {first[:200]}") from exc
        fns = captured
    # Step 1: warm-up (allocator, MKL/cuBLAS/cuSPARSELt plan caches, lazy CUDA modules)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        sampler = _CudaSampler(device, l2_flush)
        sample = lambda name: sampler(fns[name])  # noqa: E731
    else:
        number = {name: _calls_per_sample(fns[name]) for name in names}
        sample = lambda name: _cpu_sample(fns[name], number[name])  # noqa: E731
    # Step 2: rounds in rotating order, so no candidate always runs first (or last) in a round
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            samples[name].append(sample(name))
    return {name: Timing(tuple(s)) for name, s in samples.items()}


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float32 (0 when both are zero)."""
    out, ref = out.float(), ref.float()
    denom = ref.norm().item()
    return (out - ref).norm().item() / denom if denom else float((out - ref).norm().item())
