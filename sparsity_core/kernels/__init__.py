"""Kernel latency lab: what sparsity buys in time, measured beside dense on the machine at hand.

    layouts.py      sparse weight layouts, registered under the catalog's names (catalog/kernels.py)
    harness.py      warm-up, interleaved repeats, median and IQR (perf_counter / CUDA events)
    fingerprint.py  the machine a time was measured on
    sweep.py        shape x tokens x sparsity x layout (x launch mode)
    model.py        a pruned model: fastest correct layout per layer, whole-forward check and timing
    run.py          the `kernel` job, `run_kernel(spec, ctx)`
    checks.py       its pre-run check, `preflight_kernel(spec, parent)` (no torch: the app runs it)
"""
