"""GPU kernel sweep: run on a CUDA machine, then import the JSON bundles on the app's Kernel page.

    python benchmarks/kernels_cuda.py --out bundles/          # writes kernels-<name>.json per sweep
    python -m sparsity_core ... / Kernel page -> "Import results measured on another machine"

Two sweeps, fp16, CUDA events with the L2 cache flushed before every call:
  layers  the issue's shapes (4096x4096 attention, 11008x4096 Llama-7B MLP) x 16..8192 tokens x
          sparsity 0.5 / 0.9 x dense, csr, bsr 64x64, 2:4 (cuSPARSELt and CUTLASS);
  gap     the small-batch gap of 2:4 on 4096x4096 at 16..1024 tokens, eager vs CUDA graphs
          (no per-call CPU launch cost) vs torch.compile, each against dense in the same mode.
Targets (what was measured by hand on an H100, torch 2.11): 2:4 cuSPARSELt >= 1.3x on 11008x4096
at 8192 tokens (1.57x seen); BSR 64x64 at 90% >= 2x at 8192 tokens (2.9x seen). Exit 1 if missed,
2 without a GPU (nothing is measured or faked on a CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install

import torch  # noqa: E402

from sparsity_core.jobs.context import RunContext  # noqa: E402
from sparsity_core.kernels.run import run_kernel  # noqa: E402
from sparsity_core.reports.bundle import kernel_bundle  # noqa: E402
from sparsity_core.specs import parse_spec  # noqa: E402

SWEEPS = {
    "layers": {"shapes": [[4096, 4096], [11008, 4096]], "tokens": [16, 64, 256, 1024, 8192],
               "sparsities": [0.5, 0.9], "layouts": ["dense", "csr", "bsr", "semi24", "semi24_cutlass"],
               "block": 64, "modes": ["eager"]},
    "gap": {"shapes": [[4096, 4096]], "tokens": [16, 64, 256, 1024], "sparsities": [0.5],
            "layouts": ["dense", "semi24"], "modes": ["eager", "cuda_graph", "compile"]},
}
TARGETS = [("semi24|11008x4096|8192", 0.5, 1.3), ("bsr|11008x4096|8192", 0.9, 2.0)]


def print_table(name: str, rows: list[dict]) -> None:
    print(f"\n== {name}")
    print(f"{'series':<34} {'sparsity':>8} {'ms':>9} {'IQR':>7} {'speedup':>8} {'rel_err':>8}  status")
    for r in rows:
        if r["status"] == "unsupported":
            print(f"{r['series']:<34} {r['sparsity']:>8g} {'-':>9} {'-':>7} {'-':>8} {'-':>8}  unsupported: {r['reason']}")
        else:
            print(f"{r['series']:<34} {r['sparsity']:>8g} {r['latency_ms']:>9.4f} {r['iqr_ms']:>7.4f} "
                  f"{r['speedup']:>8.2f} {r['rel_error']:>8.1e}  {r['status']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bundles", help="folder for the JSON bundles")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--only", choices=list(SWEEPS), help="run one sweep")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this sweep only measures on a GPU (see benchmarks/kernels.py for the CPU)")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    speedups: dict[tuple[str, float], float] = {}
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
