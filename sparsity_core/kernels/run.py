"""The kernel job (kind `kernel`): the layer sweep, then, with a parent pruning run, its model.

Metrics (long format, x = sparsity):
  sweep   latency_ms, speedup, rel_error, latency_iqr_ms  series `layout[+mode]|OUTxIN|TOKENS`
  model   layer_latency_ms                                series `layout|layer name`
          latency_ms (series model:dense, model:per_layer, model:auto), speedup (model:auto),
          rel_error (model:per_layer, model:auto); auto = the faster of per_layer and dense
  a WINA / TEAL parent: batch-1 GEMVs, dense vs gathered columns, series `gemv:*` (kernels/activation.py)
Artifacts: `sweep` (parquet, every row including unsupported ones and their reasons), `layers`
(parquet, the layout chosen for each layer at each sparsity). Info: device fingerprint, timing setup.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd
import torch

from sparsity_core.jobs.context import ParentRun, RunContext, Stage
from sparsity_core.kernels.checks import preflight_kernel
from sparsity_core.kernels.fingerprint import fingerprint
from sparsity_core.kernels.harness import threads
from sparsity_core.kernels.model import (
    capture_inputs,
    choose_layout,
    model_inputs,
    pick_auto,
    pruned_model,
    swap_linears,
)
from sparsity_core.kernels.sweep import sweep
from sparsity_core.specs import KernelSpec, SpecError
from sparsity_core.zoo import prunable_linears
from sparsity_core.zoo.devices import resolve_device

E2E_MAX_REPEATS = 10  # a forward is ~100x a layer call: 10 rounds keep a 5-sparsity run near a minute
LAYER_REPEATS = 7  # per-layer choice: enough to rank candidates that differ by 20%+


def run_kernel(spec: KernelSpec, ctx: RunContext) -> None:
    # Step 1: the submit-time checks again (the parent by the one rule) and the device the spec asks for
    parent = ctx.parent(spec.parent_run) if spec.parent_run is not None else None
    preflight_kernel(spec, parent)
    device = kernel_device(spec)
    with threads(spec.threads) as n_threads:
        # Step 2: where and how this was measured
        ctx.info(device=fingerprint(device),
                 timing={"warmup": spec.warmup, "repeats": spec.repeats, "threads": n_threads,
                         "clock": "cuda events" if device.type == "cuda" else "perf_counter",
                         "l2_flush": spec.l2_flush, "statistic": "median, IQR; interleaved with dense"})
        split = 0.5 if parent and spec.shapes else (1.0 if spec.shapes else 0.0)
        # Step 3: the layer sweep
        if spec.shapes:
            run_sweep(spec, ctx, Stage(ctx, 0.0, split), device)
        # Step 4: the pruned model, layer by layer and end to end; a WINA / TEAL parent's dense
        # weights instead, batch-1 GEMVs over the columns its kept inputs need (kernels/activation.py)
        from sparsity_core.kernels.checks import activation_parent

        if parent and activation_parent(parent):
            from sparsity_core.kernels.activation import run_activation_gemv

            run_activation_gemv(spec, parent, ctx, Stage(ctx, split, 1.0), device)
        elif parent:
            run_model(spec, parent, ctx, Stage(ctx, split, 1.0), device)
    ctx.update(1.0, "done")


def kernel_device(spec: KernelSpec) -> torch.device:
    """The spec's device, resolved by the one resolver; a missing GPU says where GPU numbers come from."""
    try:
        return resolve_device(spec.device)
    except SpecError as exc:
        raise SpecError({"device": f"{exc.errors['device']}: run benchmarks/kernels_cuda.py on a GPU "
                                   "machine and import its JSON bundle on the Kernels page"}) from None


def run_sweep(spec: KernelSpec, ctx: RunContext, stage: Stage, device: torch.device) -> list[dict]:
    rows: list[dict] = []

    def report(row: dict) -> None:
        rows.append(row)
        if row["status"] == "unsupported":
            return
        x, series = row["sparsity"], row["series"]
        ctx.metric("latency_ms", row["latency_ms"], x=x, series=series)
        ctx.metric("latency_iqr_ms", row["iqr_ms"], x=x, series=series)
        ctx.metric("rel_error", row["rel_error"], x=x, series=series)
        if row["speedup"] is not None:
            ctx.metric("speedup", row["speedup"], x=x, series=series)

    sweep(spec, report, stage, device)
    path = ctx.artifact_dir / "sweep.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    ctx.artifact("sweep", path, "parquet")
    where = lambda r: f"{r['series']} @ {r['sparsity']:g}"  # noqa: E731
    ctx.info(unsupported={where(r): r["reason"] for r in rows if r["status"] == "unsupported"},
             mismatched=[where(r) for r in rows if r["status"] == "mismatch"])
    return rows


def run_model(spec: KernelSpec, parent: ParentRun, ctx: RunContext, stage: Stage, device: torch.device) -> None:
    sparsities = parent.targets()
    choices_rows, chosen, auto_picks = [], {}, {}
    for i, s in enumerate(sparsities):
        stage(i / len(sparsities), f"pruned model at sparsity {s:g} ({i + 1}/{len(sparsities)}): "
                                   "choosing a layout per layer")
        # Step 1: the pruned model, the real batch, and what each layer sees
        handle, masks = pruned_model(parent, s, device)
        inputs = model_inputs(handle, spec.batch, spec.seed)
        layers = {n: m for n, m in prunable_linears(handle).items() if n in masks}
        seen = capture_inputs(handle.model, layers, inputs)
        # Step 2: the fastest correct layout per layer, timed on its own input
        modules = {}
        for name, layer in layers.items():
            choice = choose_layout(name, layer, seen[name], warmup=2, repeats=LAYER_REPEATS)
            modules[name] = choice.module
            for layout, ms in choice.latency_ms.items():
                ctx.metric("layer_latency_ms", ms, x=s, series=f"{layout}|{name}")
            choices_rows.append({"sparsity": s, "layer": name, "layout": choice.layout,
                                 "layer_sparsity": float((~masks[name]).float().mean()),
                                 "dense_ms": choice.latency_ms["dense"],
                                 "chosen_ms": choice.latency_ms[choice.layout], "rel_error": choice.rel_error})
        chosen[f"{s:g}"] = dict(Counter(r["layout"] for r in choices_rows if r["sparsity"] == s))
        # Step 3: the whole forward, swapped vs masked dense, checked and timed side by side; the faster is auto
        stage((i + 0.5) / len(sparsities), f"pruned model at sparsity {s:g} ({i + 1}/{len(sparsities)}): "
                                         "timing the whole forward")
        sparse_model = swap_linears(handle.model, modules)
        auto = pick_auto(handle.model, sparse_model, inputs, device,
                         warmup=2, repeats=min(spec.repeats, E2E_MAX_REPEATS))
        dense_ms, per_layer_ms = auto.dense.median_ms, auto.per_layer.median_ms
        ctx.metric("latency_ms", dense_ms, x=s, series="model:dense")
        ctx.metric("latency_ms", per_layer_ms, x=s, series="model:per_layer")
        ctx.metric("latency_ms", auto.auto_ms, x=s, series="model:auto")
        ctx.metric("speedup", dense_ms / auto.auto_ms, x=s, series="model:auto")
        ctx.metric("rel_error", auto.per_layer_error, x=s, series="model:per_layer")
        ctx.metric("rel_error", auto.error, x=s, series="model:auto")
        auto_picks[f"{s:g}"] = {"chose": auto.chose, "dense_ms": dense_ms, "per_layer_ms": per_layer_ms,
                                "dense_iqr_ms": auto.dense.iqr_ms, "per_layer_iqr_ms": auto.per_layer.iqr_ms}
    path = ctx.artifact_dir / "layers.parquet"
    pd.DataFrame(choices_rows).to_parquet(path, index=False)
    ctx.artifact("layers", path, "parquet")
    first = inputs.get("input_ids", inputs.get("x"))
    ctx.info(model={"parent_run": spec.parent_run, "model": spec.model, "batch": spec.batch,
                    "input_shape": list(first.shape), "layouts_chosen": chosen, "auto": auto_picks,
                    "check": "rel_error of the swapped model's output vs the masked dense model"})
