"""Activation sparsity benchmark: WINA vs TEAL on SmolLM2-135M, quality and batch-1 latency.

    flock /tmp/heavy.lock nice -n 5 .venv/bin/python benchmarks/activation_sparsity.py
    ... benchmarks/activation_sparsity.py --windows 8 --threads 1     # faster, noisier
    ... benchmarks/activation_sparsity.py --no-latency --variants wina-own wina-stacked   # perplexity only
    ... benchmarks/activation_sparsity.py --no-latency --greedy      # + both under TEAL's greedy allocation

Quality: perplexity on BBC News test (the pruning lab's evaluator: 16 windows of 512 tokens by
default) of the dense model, then with every prunable linear's input sparsified per token at
25 / 50 / 65% activation sparsity by TEAL (keep the largest |x_i|, Liu et al. 2024) and WINA
(Chen et al. 2025 as released: keep the largest |x_i| * ||W[:, i]||_2 on k_proj and gate_proj,
|x_i| elsewhere): per-token top-k for both, uniform over layers, no calibration
(pruning/activation.py says how this differs from the papers' code). `--greedy` adds both under
TEAL's block-wise greedy allocation, as the papers run them (pruning/activation_greedy.py, on
8 x 128 tokens of BBC News train); `measured` is the share of weight reads skipped (the layers'
skipped shares weighted by their parameters). `--variants` adds other
readings of WINA (pruning/activation.py VARIANTS: wina-own, wina-stacked, wina-svd, teal-svd),
scored for perplexity only.
Latency: one real token (the last token of a Rotten Tomatoes sentence, each layer's input
captured from the dense model) through every prunable layer on the CPU: dense GEMV against the
gathered GEMV over the kept columns (embedding_bag over W^T), with and without the top-k
selection, per-layer medians of interleaved rounds summed over the 210 layers
(kernels/activation.py). Not a whole decode step: attention, norms and the LM head are left out.

Targets (exit 1 when one is missed): WINA's perplexity <= TEAL's at every level, under each
allocation measured (the WINA paper reports WINA ahead of TEAL at every sparsity), and the gathered GEMVs faster than dense at 50%
and 65% (what the skipped columns should buy at batch 1), with the lab's C kernel
(kernels/native/gather_gemv.c) where a C compiler is there, else torch's embedding_bag; both are
printed. The dense row's timings keep every column: its `C ms` is the C kernel's own gain over torch.mv.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from sparsity_core.data.calibration import calibration_set  # noqa: E402
from sparsity_core.kernels.activation import last_token_inputs, summed, time_layers  # noqa: E402
from sparsity_core.kernels.harness import threads  # noqa: E402
from sparsity_core.pruning.activation import ACTIVATION_METHODS, VARIANTS, sparsify_inputs  # noqa: E402
from sparsity_core.pruning.activation_greedy import greedy_levels  # noqa: E402
from sparsity_core.pruning.base import weight_2d  # noqa: E402
from sparsity_core.pruning.evaluate import Perplexity  # noqa: E402
from sparsity_core.specs import GREEDY_CALIBRATION  # noqa: E402
from sparsity_core.zoo import load_model, prunable_linears  # noqa: E402

MODEL = "smollm2-135m"
TARGETS = (0.25, 0.5, 0.65)
METHOD_ORDER = ("teal", "wina")
FASTER_FROM = 0.5  # the gathered GEMV must beat dense from this activation sparsity on


def method(name: str):
    """A catalog method (teal, wina) or one of the other WINA readings compared (pruning/activation.py
    VARIANTS); a `+greedy` suffix names the same method under greedy allocation."""
    name = name.removesuffix("+greedy")
    return ACTIVATION_METHODS.get(name) or VARIANTS[name]


def weight_reads_skipped(counts, linears) -> float:
    """The parameter-weighted share of input elements skipped: the share of weight reads a batch-1
    kernel skips (equal to the element share when every layer is at one level)."""
    params = {n: weight_2d(m).numel() for n, m in linears.items()}
    per_layer = counts.per_layer()
    return sum(per_layer[n] * params[n] for n in per_layer) / sum(params[n] for n in per_layer)


def allocations(handle, names: tuple[str, ...], samples: int, seq_len: int) -> dict[str, dict]:
    """{name: {target: {layer: level}}} for every `<method>+greedy` name: TEAL's greedy allocation
    (pruning/activation_greedy.py) on BBC News train, `samples` x `seq_len` tokens."""
    out = {}
    greedy = [n for n in names if n.endswith("+greedy")]
    if greedy:
        batches = calibration_set(handle, samples, seq_len, seed=0).batches
    for name in greedy:
        start = time.perf_counter()
        out[name] = greedy_levels(handle, method(name), list(TARGETS), batches)
        print(f"{name}: allocated in {time.perf_counter() - start:.0f} s ({samples} x {seq_len} tokens)", flush=True)
    return out


def quality(handle, windows: int, names: tuple[str, ...] = METHOD_ORDER, calibration=GREEDY_CALIBRATION) -> list[dict]:
    """Perplexity of the dense model and of each method at each target, with the sparsity measured
    (the share of weight reads skipped)."""
    evaluate = Perplexity(handle, seed=0, limit=windows)
    linears = prunable_linears(handle)
    levels = allocations(handle, names, *calibration)
    start = time.perf_counter()
    rows = [{"method": "dense", "target": 0.0, "measured": 0.0, "perplexity": evaluate(handle)["perplexity"],
             "eval_s": time.perf_counter() - start}]
    print(f"dense: perplexity {rows[0]['perplexity']:.3f} ({rows[0]['eval_s']:.0f} s)", flush=True)
    for target in TARGETS:
        for name in names:
            start = time.perf_counter()
            level = levels[name][target] if name in levels else target
            with sparsify_inputs(linears, method(name), level) as counts:
                ppl = evaluate(handle)["perplexity"]
            measured = weight_reads_skipped(counts, linears)
            rows.append({"method": name, "target": target, "measured": measured, "perplexity": ppl,
                         "eval_s": time.perf_counter() - start})
            print(f"{name} {target:.0%}: perplexity {ppl:.3f}, measured {measured:.4f} "
                  f"({rows[-1]['eval_s']:.0f} s)", flush=True)
    return rows


def latency(handle, n_threads: int, repeats: int) -> dict[str, "object"]:
    """{method: per-target sums of dense / gathered / topk+gathered ms} on the CPU, batch 1."""
    inputs = last_token_inputs(handle, seed=0)
    out = {}
    with threads(n_threads):
        for name in METHOD_ORDER:
            rows = time_layers(handle, inputs, ACTIVATION_METHODS[name], [0.0, *TARGETS], torch.device("cpu"),
                               warmup=2, repeats=repeats)
            out[name] = summed(rows)
            print(f"{name}: timed {len(rows)} layer x target points", flush=True)
    return out


def report(rows: list[dict], times: dict, n_threads: int, windows: int) -> list[str]:
    """Print the table; return the missed targets (the timing ones only when timed)."""
    timing = (f"; batch-1 GEMVs over the 210 prunable layers, CPU, {n_threads} thread(s), median per layer summed "
              "(ms)") if times else " (no timing)"
    print(f"\nSmolLM2-135M, BBC News test perplexity ({windows} x 512 tokens){timing}")
    head = f"{'method':<6} {'target':>6} {'measured':>8} {'perplexity':>10} {'dense ms':>9} {'gathered ms':>11} " \
           f"{'topk+gath ms':>12} {'speedup':>7} {'C ms':>6} {'C speedup':>9} {'max rel err':>11}"
    if not times:
        head = f"{'method':<16} {'target':>6} {'measured':>8} {'perplexity':>10}"
    print(head + "\n" + "-" * len(head))
    ppl = {(r["method"], r["target"]): r["perplexity"] for r in rows}
    for r in rows:
        if not times:
            print(f"{r['method']:<16} {r['target']:>6.0%} {r['measured']:>8.4f} {r['perplexity']:>10.3f}")
            continue
        if r["method"] == "dense":  # every column kept: any method's 0% timings (C ms: the kernel's own gain)
            r = {**r, "method": METHOD_ORDER[0]}
        if r["method"] not in times:  # a variant run for its perplexity only: no timing of its own
            print(f"{r['method']:<6} {r['target']:>6.0%} {r['measured']:>8.4f} {r['perplexity']:>10.3f} "
                  f"{'-':>9} {'-':>11} {'-':>12} {'-':>7} {'-':>6} {'-':>9} {'-':>11}")
            continue
        t = times[r["method"]].loc[r["target"]]
        name = "dense" if r["target"] == 0 else r["method"]
        c_ms, c_speed = (f"{t['gathered_c_ms']:>6.2f}", f"{t['dense_ms'] / t['gathered_c_ms']:>9.2f}") \
            if "gathered_c_ms" in t else (f"{'-':>6}", f"{'-':>9}")
        print(f"{name:<6} {r['target']:>6.0%} {r['measured']:>8.4f} {r['perplexity']:>10.3f} "
              f"{t['dense_ms']:>9.2f} {t['gathered_ms']:>11.2f} {t['topk+gathered_ms']:>12.2f} "
              f"{t['dense_ms'] / t['gathered_ms']:>7.2f} {c_ms} {c_speed} {t['rel_error']:>11.1e}")
    missed = [f"WINA{suffix} {ppl[('wina' + suffix, s)]:.3f} > TEAL{suffix} {ppl[('teal' + suffix, s)]:.3f} at {s:.0%}"
              for suffix in ("", "+greedy") if ("wina" + suffix, TARGETS[0]) in ppl
              for s in TARGETS if ppl[("wina" + suffix, s)] > ppl[("teal" + suffix, s)]]
    for name in times:
        for s in TARGETS:
            t = times[name].loc[s]
            kernel = "gathered_c" if "gathered_c_ms" in t else "gathered"  # the lab's C kernel where it builds
            if s >= FASTER_FROM and not t[f"{kernel}_ms"] < t["dense_ms"]:
                missed.append(f"{name} {kernel} {t[f'{kernel}_ms']:.2f} ms not below dense {t['dense_ms']:.2f} ms "
                              f"at {s:.0%}")
    print("\ntargets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=Perplexity.WINDOWS, help="512-token windows scored")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for the timing (1: a shared machine's other load hits every call alike)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per layer and target")
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS),
                        help="other WINA readings to score besides teal and wina (pruning/activation.py VARIANTS)")
    parser.add_argument("--greedy", action="store_true",
                        help="also teal and wina under TEAL's greedy layer allocation (each ~10 min on 2 cores)")
    parser.add_argument("--no-latency", action="store_true", help="perplexity only (no timing targets)")
    parser.add_argument("--no-quality", action="store_true", help="latency only (no perplexity target)")
    args = parser.parse_args()
    torch.manual_seed(0)
    handle = load_model(MODEL)
    if args.no_quality and args.no_latency:
        parser.error("--no-quality and --no-latency leave nothing to measure")
    rows = [{"method": m, "target": t, "measured": float("nan"), "perplexity": float("nan")}
            for m, t in [("dense", 0.0), *((m, t) for t in TARGETS for m in METHOD_ORDER)]] if args.no_quality else \
        quality(handle, args.windows, (*METHOD_ORDER, *args.variants,
                                       *((f"{m}+greedy" for m in METHOD_ORDER) if args.greedy else ())))
    times = {} if args.no_latency else latency(handle, args.threads, args.repeats)
    return 1 if report(rows, times, args.threads, args.windows) else 0


if __name__ == "__main__":
    sys.exit(main())
