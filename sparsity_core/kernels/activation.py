"""Batch-1 latency of activation sparsity: what the input columns a WINA / TEAL run skips buy.

    x = last_token_inputs(handle, seed=0)                       # {layer: the input it sees, one token}
    rows = time_layers(handle, x, ACTIVATION_METHODS["wina"], [0, 0.5], device, warmup=2, repeats=7)
    run_activation_gemv(spec, parent, ctx, stage, device)      # the kernel job, parent a wina / teal run

A decoding step at batch 1 multiplies every weight by one token's activation: y = W x, a GEMV
that reads all of W. With activation sparsity only the kept elements idx of x matter, so a kernel
can read just those columns: y = W[:, idx] x[idx]. Per prunable layer and per target of the
parent run, three calls are timed side by side (harness.time_interleaved: median and IQR):
  dense          torch.mv(W, x), the whole weight;
  gathered       the kept columns only, with idx given: torch's embedding_bag (mode "sum",
                 per-sample weights x[idx]) over the transposed weight W^T (in, out), one fused
                 kernel that reads the kept rows of W^T, i.e. the kept columns of W, and adds them
                 up, as the papers' sparse GEMV kernels do (W^T is stored once, like their
                 column-major weights);
  topk+gathered  the same with the selection included: the method's score of x and its top-k.
  gathered_c     the kept columns through the lab's C kernel (native/gather_gemv.c: the kept rows
                 of W^T stream through an output vector that stays in L1), on the CPU in float32
                 when a C compiler is there; otherwise the call is left out and info says why.
                 torch's embedding_bag pays a fixed cost per call that, on small layers, eats what
                 the skipped columns save; this is what a decoding kernel of the papers does.
  gathered_triton  the same on a CUDA GPU through the lab's Triton kernel (triton_gemv.py), where
                 Triton is installed; embedding_bag is 10x slower than dense there.
On CUDA every call is timed as a CUDA-graph replay (and, with the spec's l2_flush, the L2 cache
flushed before it): a serving engine replays its decoding step as a graph, and eager timing of a
576x576 GEMV measures the CPU's launch cost (~30 us on an H200 host), not the GPU's few microseconds.
x is a real activation, not a random one: the input each layer sees at the last token of one
Rotten Tomatoes sentence (the first test image for an image model), captured from the dense
model; idx is the parent method's keep set of that x, chosen as the parent run chose it
(`pruning.activation.plan_layers` + `keep_mask`): WINA weighs k_proj's and gate_proj's columns and
gives q / v / up the magnitude set, TEAL keeps the largest |x_i| everywhere. Layers that read one
input with one score (q / k / v under TEAL, q / v under WINA, gate / up) share one selection, as a
decoding kernel would: the first of them pays the top-k in `topk+gathered`, the others gather with
its indices. Check: each gathered output against W @ (x with the skipped elements zeroed), as a
relative error.

Metrics (x = the activation-sparsity target):
  layer_latency_ms  series `dense|layer`, `gathered|layer`, `topk+gathered|layer`
  latency_ms, latency_iqr_ms  series `gemv:<call>` (dense, gathered, topk+gathered, gathered_c, gathered_triton):
                    summed over the prunable layers, one token through all of them (attention,
                    norms and the LM head are not in it)
  speedup           series `gemv:<call>` for every call but dense: summed dense / summed sparse
  rel_error         series `gemv:gathered`: the largest over the layers and the gathered calls
Artifact `gemv` (parquet): one row per (target, layer) with the calls' medians, the kept count, the
layer whose selection it uses (`mask_of`) and whether it pays that selection (`selects`).
"""

from __future__ import annotations

from typing import Optional

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from sparsity_core.jobs.context import ParentRun, RunContext, Stage
from sparsity_core.kernels.harness import GraphCaptureError, rel_error, time_interleaved
from sparsity_core.kernels.model import capture_inputs, model_inputs
from sparsity_core.kernels.native import gather_gemv, gather_gemv_unavailable
from sparsity_core.kernels.triton_gemv import triton_gather_gemv, triton_unavailable
from sparsity_core.pruning.activation import (
    ACTIVATION_METHODS,
    ActivationMethod,
    keep_mask,
    kept_count,
    plan_layers,
    scores,
)
from sparsity_core.pruning.base import weight_2d
from sparsity_core.specs import KernelSpec
from sparsity_core.zoo import ModelHandle, load_model, prunable_linears

CALLS = ("dense", "gathered", "topk+gathered", "gathered_c", "gathered_triton")  # the last two where they run
OWN_KERNELS = {"gathered_c": gather_gemv, "gathered_triton": triton_gather_gemv}  # the lab's, by call
OWN_DESCRIPTIONS = {"gathered_c": "the lab's C kernel (kernels/native/gather_gemv.c) over W^T",
                    "gathered_triton": "the lab's Triton kernel (kernels/triton_gemv.py) over W^T"}
MAX_REPEATS = 10  # per layer and target: 210 SmolLM2 layers x 4 targets x 3 calls stay near a minute
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def last_token_inputs(handle: ModelHandle, seed: int = 0) -> dict[str, Tensor]:
    """{layer: its input at the last token of one real example} (float32, 1-D), from the dense model."""
    layers = prunable_linears(handle)
    seen = capture_inputs(handle.model, layers, model_inputs(handle, 1, seed))
    return {name: x.reshape(-1, x.shape[-1])[-1].float() for name, x in seen.items()}


def gathered_gemv(weight_t: Tensor, idx: Tensor, values: Tensor) -> Tensor:
    """sum_j values[j] * weight_t[idx[j]]: W[:, idx] @ x[idx] with weight_t = W^T (in, out), one fused call."""
    return F.embedding_bag(idx.view(1, -1), weight_t, per_sample_weights=values.view(1, -1), mode="sum")[0]


def native_unavailable(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the C gathered GEMV can be timed on `device` in `dtype`, else why not."""
    if device.type != "cpu" or dtype != torch.float32:
        return "the C gathered GEMV is a float32 CPU kernel"
    return gather_gemv_unavailable()


def own_kernels(device: torch.device, dtype: torch.dtype) -> dict[str, Optional[str]]:
    """{call: None where the lab's own gathered kernel runs on `device` in `dtype`, else why not}."""
    return {"gathered_c": native_unavailable(device, dtype), "gathered_triton": triton_unavailable(device, dtype)}


@torch.no_grad()
def time_layer(weight: Tensor, x: Tensor, norms: Optional[Tensor], target: float, device: torch.device,
               warmup: int, repeats: int, selects: bool = True, own: tuple[str, ...] = (),
               l2_flush: bool = False) -> dict:
    """One layer at one target: medians / IQRs of the calls, the kept count and the check.
    norms: the score's column weights (None: |x_i| alone); selects: False for a layer that reuses
    another layer's selection of the same x, whose `topk+gathered` is then the gather alone;
    own: the lab's own kernels to time as well (OWN_KERNELS' calls that `own_kernels` says run here);
    l2_flush: on CUDA, evict the weight from L2 before each call, as a decoding step that streams
    the whole model does. On CUDA the calls are timed as CUDA-graph replays."""
    norms = None if norms is None else norms.to(device, torch.float32)
    mask = keep_mask(x, target, norms)
    idx = mask.nonzero().flatten()  # ascending: the kept rows of W^T in memory order
    weight_t = weight.t().contiguous()
    values = x[idx]
    ref = torch.mv(weight.float(), (x * mask).float())
    err = rel_error(gathered_gemv(weight_t, idx, values), ref)
    for call in own:
        err = max(err, rel_error(OWN_KERNELS[call](weight_t, idx, values), ref))
    k = kept_count(x.numel(), target)

    def select_and_gather() -> Tensor:  # the same top-k as keep_mask, its indices used as they come
        kept = scores(x, norms).topk(k, sorted=False).indices
        return gathered_gemv(weight_t, kept, x[kept])

    calls = {"dense": lambda: torch.mv(weight, x),
             "gathered": lambda: gathered_gemv(weight_t, idx, values),
             "topk+gathered": select_and_gather if selects else lambda: gathered_gemv(weight_t, idx, values)}
    for call in own:
        calls[call] = lambda kernel=OWN_KERNELS[call]: kernel(weight_t, idx, values)
    clock = "cuda graph" if device.type == "cuda" else "perf_counter"
    try:
        timings = time_interleaved(calls, device, warmup, repeats, l2_flush, graphs=device.type == "cuda")
    except GraphCaptureError as exc:  # every call eager then, so the calls stay comparable
        clock = f"cuda events, eager (no graph: {exc})"
        timings = time_interleaved(calls, device, warmup, repeats, l2_flush)
    row = {"kept": int(idx.numel()), "inputs": int(x.numel()), "rel_error": err, "clock": clock}
    for call, t in timings.items():
        row[f"{call}_ms"], row[f"{call}_iqr_ms"] = t.median_ms, t.iqr_ms
    return row


def time_layers(handle: ModelHandle, inputs: dict[str, Tensor], method: ActivationMethod, targets: list[float],
                device: torch.device, warmup: int, repeats: int, dtype: torch.dtype = torch.float32,
                on_step=None, l2_flush: bool = False) -> list[dict]:
    """Every prunable layer at every target, each with the parent method's plan; rows for `gemv`
    (with the own kernels' columns where own_kernels says None)."""
    layers = prunable_linears(handle)
    own = tuple(call for call, why in own_kernels(device, dtype).items() if why is None)
    plans = plan_layers(layers, method)
    if any(plan.basis is not None for plan in plans.values()):
        raise ValueError(f"{method.name} rotates its inputs: a rotated GEMV is not what this times")
    first = {}  # the plan key's first layer: the one that pays the shared selection
    for name, plan in plans.items():
        first.setdefault(plan.key, name)
    rows = []
    for i, target in enumerate(targets):
        for j, (name, layer) in enumerate(layers.items()):
            weight = weight_2d(layer).detach().to(device, dtype).contiguous()
            x = inputs[name].to(device, dtype)
            owner = first[plans[name].key]
            rows.append({"target": target, "layer": name, "mask_of": owner, "selects": owner == name,
                         **time_layer(weight, x, plans[name].norms, target, device, warmup, repeats,
                                      selects=owner == name, own=own, l2_flush=l2_flush)})
            if on_step:
                on_step((i * len(layers) + j + 1) / (len(targets) * len(layers)), target, j + 1, len(layers))
    return rows


def timed_calls(rows: list[dict]) -> list[str]:
    """The CALLS the rows hold (the own kernels only where they ran)."""
    return [c for c in CALLS if rows and f"{c}_ms" in rows[0]]


def summed(rows: list[dict]) -> pd.DataFrame:
    """Per target: each timed call's median and IQR summed over the layers, and the largest rel_error."""
    frame = pd.DataFrame(rows)
    cols = [f"{c}{part}" for part in ("_ms", "_iqr_ms") for c in timed_calls(rows)]
    out = frame.groupby("target")[cols].sum()
    out["rel_error"] = frame.groupby("target")["rel_error"].max()
    out["kept"] = frame.groupby("target")["kept"].sum() / frame.groupby("target")["inputs"].sum()
    return out


def run_activation_gemv(spec: KernelSpec, parent: ParentRun, ctx: RunContext, stage: Stage,
                        device: torch.device) -> None:
    """The kernel job's model part for a WINA / TEAL parent: batch-1 GEMVs, dense vs gathered."""
    # Step 1: the parent's dense model (activation sparsity changes no weight) and one real token
    method = ACTIVATION_METHODS[parent.method or parent.spec["method"]]
    targets = parent.targets("activation")
    stage(0.0, f"loading {parent.model} and capturing one token's inputs")
    handle = load_model(parent.model, device=device)
    inputs = last_token_inputs(handle, spec.seed)
    # Step 2: every layer at every target
    repeats = min(spec.repeats, MAX_REPEATS)

    def on_step(fraction: float, target: float, done: int, total: int) -> None:
        stage(fraction, f"activation sparsity {target:.0%}: layer {done}/{total}, dense vs gathered GEMV")

    rows = time_layers(handle, inputs, method, targets, device, min(spec.warmup, 2), repeats,
                       DTYPES[spec.dtype], on_step, spec.l2_flush)
    # Step 3: metrics, the per-layer table and what was measured
    calls = timed_calls(rows)
    for row in rows:
        for call in calls:
            ctx.metric("layer_latency_ms", row[f"{call}_ms"], x=row["target"], series=f"{call}|{row['layer']}")
    for target, total in summed(rows).iterrows():
        for call in calls:
            ctx.metric("latency_ms", total[f"{call}_ms"], x=target, series=f"gemv:{call}")
            ctx.metric("latency_iqr_ms", total[f"{call}_iqr_ms"], x=target, series=f"gemv:{call}")
        for call in calls[1:]:
            ctx.metric("speedup", total["dense_ms"] / total[f"{call}_ms"], x=target, series=f"gemv:{call}")
        ctx.metric("rel_error", total["rel_error"], x=target, series="gemv:gathered")
    path = ctx.artifact_dir / "gemv.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    ctx.artifact("gemv", path, "parquet")
    ctx.info(activation={"parent_run": parent.id, "method": method.name, "targets": targets, "batch": 1,
                         "layers": len(prunable_linears(handle)), "repeats_per_layer": repeats,
                         "clock": sorted({row["clock"] for row in rows}),
                         "input": "each layer's input at the last token of one example, captured from the dense model",
                         "gathered": "embedding_bag(sum) over W^T: reads only the kept columns of W",
                         **{call: why or OWN_DESCRIPTIONS[call]
                            for call, why in own_kernels(device, DTYPES[spec.dtype]).items()},
                         "selection": "the parent's plan: layers sharing an input and a score share one top-k, "
                                      "paid by the first of them",
                         "sum": "per-layer medians summed over the prunable layers (not the whole decode step)",
                         "check": "rel_error of gathered vs W @ (x with skipped elements zeroed)"})
