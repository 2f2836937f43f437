"""Kernel latency lab: what sparsity buys in time, measured beside dense on the machine at hand.

    layouts.py      sparse weight layouts registered by name (dense, csr, coo, bsr, semi24, shrunk)
    harness.py      warm-up, interleaved repeats, median and IQR (perf_counter / CUDA events)
    fingerprint.py  the machine a time was measured on
    sweep.py        shape x tokens x sparsity x layout (x launch mode)
    model.py        a pruned model: fastest correct layout per layer, whole-forward check and timing
    run.py          the `kernel` job and its pre-run checks
    bundle.py       JSON bundles measured on another machine (a GPU) imported into the store
    catalog.py      names and presets without torch, for the page
"""
