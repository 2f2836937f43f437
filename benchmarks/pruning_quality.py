"""Pruning quality benchmark: what each method costs in quality, time and memory on real models.

    nice -n 10 .venv/bin/python benchmarks/pruning_quality.py            # every table
    nice -n 10 .venv/bin/python benchmarks/pruning_quality.py lm         # table 1 only

Table 1 (`lm`): SmolLM2-135M, 64 calibration sequences of 256 tokens (BBC News train), perplexity
on BBC News test (16 windows of 512 tokens). Dense, then magnitude / wanda / sparsegpt / dsnot
(wanda start) at 50% unstructured, 2:4 and 4:8, each pruned from the same dense weights in one
process. Pruning time includes the calibration pass the method needs. Peak memory is the
process's peak RSS so far. Exits 1 when a target is missed.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from sparsity_core.data.calibration import calibration_set  # noqa: E402
from sparsity_core.pruning import METHODS  # noqa: E402
from sparsity_core.pruning.calibrate import collect_stats  # noqa: E402
from sparsity_core.pruning.evaluate import Perplexity  # noqa: E402
from sparsity_core.zoo import load_model, prunable_linears  # noqa: E402

CALIB_SAMPLES, SEQ_LEN = 64, 256  # the papers' setup scaled to a CPU (they use 128 x 2048)
SETTINGS = [("50%", "unstructured", 0.5), ("2:4", "2:4", 0.5), ("4:8", "4:8", 0.5)]
METHOD_ORDER = ("magnitude", "wanda", "sparsegpt", "dsnot")
LIMITS_S = {"wanda": 120.0, "sparsegpt": 300.0}  # issue targets on a 2-core CPU
RSS_LIMIT_GB = 6.0
BETTER_THAN_MAGNITUDE = 0.8  # "well below": at most 80% of magnitude's perplexity


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # ru_maxrss is KiB on Linux


def timed(fn: Callable, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def table_lm() -> tuple[list[dict], list[str]]:
    """Table 1: SmolLM2-135M perplexity / pruning time / peak RSS per method and pattern."""
    torch.manual_seed(0)
    handle = load_model("smollm2-135m")
    linears = prunable_linears(handle)
    dense = {n: m.weight.detach().clone() for n, m in linears.items()}
    evaluate = Perplexity(handle, seed=0, limit=None)
    calib = calibration_set(handle, CALIB_SAMPLES, SEQ_LEN, seed=0)
    # calibration passes, timed per kind of statistic (Wanda/DSnoT: norms + means; SparseGPT: Hessians)
    light, t_light = timed(collect_stats, handle.model, linears, calib.batches, {"norm", "mean"})
    heavy, t_heavy = timed(collect_stats, handle.model, linears, calib.batches, {"hessian"})
    calibration = {"magnitude": (None, 0.0), "wanda": (light, t_light), "dsnot": (light, t_light),
                   "sparsegpt": (heavy, t_heavy)}
    rows = [{"method": "dense", "pattern": "-", **_row(evaluate(handle)["perplexity"], 0.0, 0.0)}]
    _print_row(rows[-1])
    for label, pattern, target in SETTINGS:
        for name in METHOD_ORDER:
            with torch.no_grad():
                for n, m in linears.items():
                    m.weight.copy_(dense[n])
            stats, t_cal = calibration[name]
            _, t_prune = timed(METHODS[name](seed=0).prune, linears, target, pattern=pattern, stats=stats)
            zeros = sum(int((m.weight == 0).sum()) for m in linears.values())
            ppl = evaluate(handle)["perplexity"]
            rows.append({"method": name, "pattern": label, **_row(ppl, t_cal + t_prune,
                                                                 zeros / sum(w.numel() for w in dense.values()))})
            _print_row(rows[-1])
    return rows, _check_lm(rows)


def _row(ppl: float, seconds: float, sparsity: float) -> dict:
    return {"perplexity": ppl, "time_s": seconds, "sparsity": sparsity, "peak_rss_gb": peak_rss_gb()}


def _print_row(r: dict) -> None:
    print(f"| {r['method']:<10} | {r['pattern']:<7} | {r['sparsity']:>8.3f} | {r['perplexity']:>10.2f} "
          f"| {r['time_s']:>8.1f} | {r['peak_rss_gb']:>11.2f} |", flush=True)


def _check_lm(rows: list[dict]) -> list[str]:
    missed = []
    ppl = {(r["method"], r["pattern"]): r["perplexity"] for r in rows}
    for r in rows:
        limit = LIMITS_S.get(r["method"])
        if limit and r["time_s"] > limit:
            missed.append(f"{r['method']} {r['pattern']}: {r['time_s']:.0f} s > {limit:.0f} s")
    if max(r["peak_rss_gb"] for r in rows) > RSS_LIMIT_GB:
        missed.append(f"peak RSS {max(r['peak_rss_gb'] for r in rows):.2f} GB > {RSS_LIMIT_GB} GB")
    for pattern in ("50%", "2:4"):
        for name in ("wanda", "sparsegpt"):
            if ppl[(name, pattern)] > BETTER_THAN_MAGNITUDE * ppl[("magnitude", pattern)]:
                missed.append(f"{name} {pattern}: perplexity {ppl[(name, pattern)]:.1f} not well below "
                              f"magnitude's {ppl[('magnitude', pattern)]:.1f}")
    return missed


HEADER = ("| method     | pattern | sparsity | perplexity | prune s  | peak RSS GB |\n"
          "|------------|---------|----------|------------|----------|-------------|")

TABLES: dict[str, tuple[str, Callable]] = {
    "lm": ("Table 1: SmolLM2-135M, BBC News perplexity (64 x 256 calibration tokens)", table_lm),
}


def main(argv: list[str]) -> int:
    chosen = argv or list(TABLES)
    missed: list[str] = []
    for key in chosen:
        title, fn = TABLES[key]
        print(f"\n{title}\n{HEADER}", flush=True)
        _, problems = fn()
        missed += problems
    for problem in missed:
        print(f"MISSED: {problem}")
    print("all targets met" if not missed else f"{len(missed)} target(s) missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
