"""GPU kernel sweep: run on a CUDA machine, then import the JSON bundles on the app's Kernel page.

    python benchmarks/kernels_cuda.py --out bundles/          # writes kernels-<name>.json per sweep
    python -m sparsity_core ... / Kernel page -> "Import results measured on another machine"

Three sweeps, fp16, CUDA events with the L2 cache flushed before every call:
  layers  the issue's shapes (4096x4096 attention, 11008x4096 Llama-7B MLP) x 16..8192 tokens x
          sparsity 0.5 / 0.9 x dense, csr, bsr 64x64 (cuSPARSE and Triton), 2:4 (cuSPARSELt
          through torch's subclass and directly, and CUTLASS);
  gap     the small-batch gap of 2:4 on 4096x4096 at 16..1024 tokens, eager vs CUDA graphs
          (no per-call CPU launch cost) vs torch.compile, each against dense in the same mode;
  gemv    activation sparsity at batch 1 (WINA's score |x_i| * ||W[:, i]||): SmolLM2-135M's and
          Llama-7B's layer shapes at 25 / 50 / 65% of the input skipped, dense torch.mv vs the
          gathered GEMV over the kept columns, torch's embedding_bag and the lab's Triton kernel
          (kernels/activation.py's time_layer, CUDA-graph replays; x is random here, the kernel
          page times a real run's activations), written to gemv.json.
Targets, on the lab's best path for each: 2:4 through cuSPARSELt called directly (semi24_direct)
>= 1.3x on 11008x4096 at 8192 tokens; BSR 64x64 at 90% through torch's Triton kernel (bsr_triton)
>= 2x at 8192 tokens. Exit 1 if missed, 2 without a GPU (nothing is measured or faked on a CPU).
First run on an H200 (torch 2.11+cu130, cuSPARSELt 0.8.0, 2026-12-04), through torch's default
paths: semi24 (the SparseSemiStructuredTensor subclass) 0.59x, bsr (cuSPARSE bsrmm) 0.30x;
semi24 cost ~0.6 ms of CPU dispatch per call (0.65 ms eager vs 0.04 ms as a CUDA graph at 16
tokens), and semi24_cutlass refuses sm 9.0. semi24_direct and bsr_triton are the answer to that
run and have not yet run on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install

import torch  # noqa: E402

from sparsity_core.jobs.context import RunContext  # noqa: E402
from sparsity_core.kernels.activation import own_kernels, time_layer, timed_calls  # noqa: E402
from sparsity_core.kernels.run import run_kernel  # noqa: E402
from sparsity_core.pruning.activation import weight_norms  # noqa: E402
from sparsity_core.reports.bundle import kernel_bundle  # noqa: E402
from sparsity_core.specs import parse_spec  # noqa: E402

SWEEPS = {
    "layers": {"shapes": [[4096, 4096], [11008, 4096]], "tokens": [16, 64, 256, 1024, 8192],
               "sparsities": [0.5, 0.9], "layouts": ["dense", "csr", "bsr", "bsr_triton", "semi24", "semi24_direct", "semi24_cutlass"],
               "block": 64, "modes": ["eager"]},
    "gap": {"shapes": [[4096, 4096]], "tokens": [16, 64, 256, 1024], "sparsities": [0.5],
            "layouts": ["dense", "semi24", "semi24_direct"], "modes": ["eager", "cuda_graph", "compile"]},
}
GEMV = {"shapes": [[576, 576], [1536, 576], [576, 1536], [4096, 4096], [11008, 4096], [4096, 11008]],
        "targets": [0.25, 0.5, 0.65]}
TARGETS = [("semi24_direct|11008x4096|8192", 0.5, 1.3), ("bsr_triton|11008x4096|8192", 0.9, 2.0)]


def print_table(name: str, rows: list[dict]) -> None:
    print(f"\n== {name}")
    print(f"{'series':<34} {'sparsity':>8} {'ms':>9} {'IQR':>7} {'speedup':>8} {'rel_err':>8}  status")
    for r in rows:
        if r["status"] == "unsupported":
            print(f"{r['series']:<34} {r['sparsity']:>8g} {'-':>9} {'-':>7} {'-':>8} {'-':>8}  unsupported: {r['reason']}")
        else:
            print(f"{r['series']:<34} {r['sparsity']:>8g} {r['latency_ms']:>9.4f} {r['iqr_ms']:>7.4f} "
                  f"{r['speedup']:>8.2f} {r['rel_error']:>8.1e}  {r['status']}")


def gemv_sweep(device: torch.device, dtype: torch.dtype, repeats: int) -> list[dict]:
    """One row per (shape, target): time_layer's medians for dense, gathered and topk+gathered."""
    gen = torch.Generator().manual_seed(0)
    own = tuple(call for call, why in own_kernels(device, dtype).items() if why is None)
    rows = []
    for out, inp in GEMV["shapes"]:
        weight = (torch.randn(out, inp, generator=gen) / math.sqrt(inp)).to(device, dtype)
        x = torch.randn(inp, generator=gen).to(device, dtype)
        for target in GEMV["targets"]:
            row = time_layer(weight, x, weight_norms(weight), target, device, warmup=10, repeats=repeats,
                             own=own, l2_flush=device.type == "cuda")
            rows.append({"shape": f"{out}x{inp}", "target": target, **row})
    return rows


def print_gemv(rows: list[dict]) -> None:
    print("\n== gemv: batch 1, WINA's keep set (speedup = dense / call)")
    calls = timed_calls(rows)[1:]  # every timed call but dense, the reference
    print(f"{'shape':<11} {'target':>6} {'kept':>11} {'dense ms':>9} "
          + " ".join(f"{c[:15]:>15} {'x':>5}" for c in calls) + f" {'rel_err':>8}")
    for r in rows:
        dense = r["dense_ms"]
        print(f"{r['shape']:<11} {r['target']:>6g} {r['kept']:>5}/{r['inputs']:<5} {dense:>9.4f} "
              + " ".join(f"{r[c + '_ms']:>15.4f} {dense / r[c + '_ms']:>5.2f}" for c in calls)
              + f" {r['rel_error']:>8.1e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bundles", help="folder for the JSON bundles")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--only", choices=[*SWEEPS, "gemv"], help="run one sweep")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this sweep only measures on a GPU (see benchmarks/kernels.py for the CPU)")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    speedups: dict[tuple[str, float], float] = {}
    if args.only in (None, "gemv"):
        rows = gemv_sweep(torch.device("cuda", torch.cuda.current_device()), torch.float16, args.repeats)
        (out / "gemv.json").write_text(json.dumps(rows))
        print_gemv(rows)
    for name, fields in SWEEPS.items():
        if args.only and name != args.only:
            continue
        spec = parse_spec({"kind": "kernel", "device": "cuda", "dtype": "float16", "l2_flush": True,
                           "repeats": args.repeats, "warmup": 10, "name": f"GPU sweep: {name}", **fields})
        ctx = RunContext()
        run_kernel(spec, ctx)
        bundle = kernel_bundle(spec, ctx)
        (out / f"kernels-{name}.json").write_text(json.dumps(bundle))
        print_table(f"{name} on {bundle['info']['device'].get('gpu')}", bundle["sweep"])
        speedups.update({(r["series"], r["sparsity"]): r["speedup"] for r in bundle["sweep"] if r["speedup"]})
    missed = 0
    print("\ntargets")
    for series, sparsity, target in TARGETS:
        got = speedups.get((series, sparsity))
        ok = got is not None and got >= target
        missed += not ok
        print(f"  {'PASS' if ok else 'MISS'}  {series} at {sparsity:g} >= {target}x: "
              f"{'not measured' if got is None else f'{got:.2f}x'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
