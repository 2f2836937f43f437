"""Latency of a pruned model: its real masks, layer by layer, and its whole forward pass.

    handle, masks = pruned_model(parent, sparsity)                # the pruned model + its masks
    seen = capture_inputs(handle.model, layers, inputs)           # the input each layer sees
    choice = choose_layout(name, layer, seen[name], 2, 7)         # fastest correct layout of one layer
    sparse_model = swap_linears(handle.model, {name: choice.module, ...})   # a copy, layers swapped
    auto = pick_auto(handle.model, sparse_model, inputs, device, 2, 10)    # "auto": swapped or dense

Each prunable Linear is replaced by a module that holds its weight in the fastest layout that gives
the masked layer's output (CSR on a CPU when the layer is sparse enough, 2:4 on a GPU when its mask
is 2:4, shrunk when whole rows/columns are gone, dense otherwise), chosen by timing every candidate
on the very input the layer sees in the model. The swapped model is checked against the masked
dense model and timed beside it (`compare_models`). Per-layer winners need not add up to a faster
model (a layer timed alone runs from a warm cache, thread pools of different kernels contend), so
"auto" is whichever of the swapped and the all-dense model ran the whole forward faster, measured
in the same interleaved rounds: never slower than dense beyond that measurement's noise.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from sparsity_core.data import load_dataset, rotten_tomatoes
from sparsity_core.jobs.context import ParentRun, target_tag
from sparsity_core.kernels.harness import Timing, rel_error, time_interleaved
from sparsity_core.kernels.layouts import LAYOUTS
from sparsity_core.pruning.artifacts import load_pruned
from sparsity_core.zoo import ModelHandle
from sparsity_core.zoo.minilm import MAX_LEN

LAYER_TOLERANCE = 1e-5  # per layer, fp32: a sparse kernel only reorders the sums (~1e-7 seen)
SHRINK_MIN = 0.1  # try `shrunk` only if it drops at least 10% of the weight matrix


def pruned_model(parent: ParentRun, sparsity: float, device: torch.device | str = "cpu") -> tuple[ModelHandle, dict]:
    """The parent pruning run's model at `sparsity` (its stored pruned weights, rebuilt by the
    pruning lab's own loader) and its masks. Timing depends only on where the zeros are; the
    check compares against this same model."""
    masks = load_file(str(parent.path(f"masks@{target_tag(sparsity)}")))
    return load_pruned(parent, sparsity, device=device), masks


def model_inputs(handle: ModelHandle, batch: int, seed: int) -> dict[str, Any]:
    """Keyword inputs for one forward of `batch` real examples: pictures of the model's own
    evaluation set for an image model, Rotten Tomatoes sentences (short, like a query) for text."""
    if handle.image:
        images = load_dataset(handle.entry.eval_data, "test", seed=0).images[:batch]
        return {"x": torch.from_numpy(images).to(handle.device)}
    texts = rotten_tomatoes("test", seed=seed).texts[:batch]
    if handle.tokenizer.pad_token is None:  # causal LMs ship without one
        handle.tokenizer.pad_token = handle.tokenizer.eos_token
    enc = handle.tokenizer(texts, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
    return dict(enc.to(handle.device))


def forward(model: nn.Module, inputs: dict[str, Any]) -> Tensor:
    """One forward; the tensor to compare (last hidden state, logits or the plain output)."""
    out = model(inputs["x"]) if set(inputs) == {"x"} else model(**inputs)
    for attr in ("last_hidden_state", "logits"):
        if hasattr(out, attr):
            return getattr(out, attr)
    return out


def capture_inputs(model: nn.Module, layers: dict[str, nn.Module], inputs: dict[str, Any]) -> dict[str, Tensor]:
    """The input each layer sees in one forward (hooks removed even if the forward fails)."""
    seen: dict[str, Tensor] = {}
    handles = [layer.register_forward_pre_hook(lambda _m, args, n=name: seen.setdefault(n, args[0].detach()))
               for name, layer in layers.items()]
    try:
        with torch.no_grad():
            forward(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return seen


@dataclass
class LayerChoice:
    name: str
    layout: str
    module: nn.Module
    latency_ms: dict[str, float]  # every candidate that ran correctly
    rel_error: float


def candidates(weight: Tensor, device: torch.device) -> list[str]:
    """Layouts worth timing for one masked weight on this device."""
    names = ["dense", "csr", "csr_tiled"]
    rows, cols = weight.ne(0).any(1).float().mean(), weight.ne(0).any(0).float().mean()
    if 1 - rows * cols >= SHRINK_MIN:
        names.append("shrunk")
    two_of_four = weight.shape[1] % 4 == 0 and bool(weight.ne(0).reshape(-1, 4).sum(1).le(2).all())
    if device.type == "cuda" and two_of_four:
        names += ["semi24", "semi24_direct", "semi24_cutlass"]
    return names


@torch.no_grad()
def choose_layout(name: str, layer: nn.Linear, x: Tensor, warmup: int, repeats: int) -> LayerChoice:
    """Time every candidate layout on the layer's real input; keep the fastest correct one."""
    weight, bias = layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
    ref = layer(x)
    fns, errors, modules = {}, {}, {}
    for layout_name in candidates(weight, weight.device):
        layout = LAYOUTS[layout_name]
        if layout.unsupported(weight, weight.device, weight.dtype):
            continue
        try:
            module = layout.build(weight, bias)
            errors[layout_name] = rel_error(module(x), ref)
        except (RuntimeError, ValueError, NotImplementedError):  # e.g. CUTLASS 2:4 on sm 9.0: not a candidate
            continue
        if errors[layout_name] <= LAYER_TOLERANCE:
            modules[layout_name] = module
            fns[layout_name] = lambda m=module: m(x)
    timings = time_interleaved(fns, weight.device, warmup, repeats)
    latency = {k: t.median_ms for k, t in timings.items()}
    best = min(latency, key=latency.get)
    return LayerChoice(name, best, modules[best], latency, errors[best])


def swap_linears(model: nn.Module, modules: dict[str, nn.Module]) -> nn.Module:
    """A deep copy of `model` with the named submodules replaced (the original is untouched)."""
    swapped = copy.deepcopy(model)
    for name, module in modules.items():
        swapped.set_submodule(name, module)
    return swapped


@torch.no_grad()
def compare_models(dense: nn.Module, sparse: nn.Module, inputs: dict[str, Any], device: torch.device,
                   warmup: int, repeats: int) -> tuple[float, dict[str, Timing]]:
    """(rel_error of sparse vs dense output, {"dense", "auto": Timing}) for one batch, side by side."""
    err = rel_error(forward(sparse, inputs), forward(dense, inputs))
    timings = time_interleaved({"dense": lambda: forward(dense, inputs), "auto": lambda: forward(sparse, inputs)},
                               device, warmup, repeats)
    return err, timings


@dataclass(frozen=True)
class AutoPick:
    """The whole-model "auto" choice: `chose` is "per_layer" (the swapped model) or "dense"."""

    chose: str
    dense: Timing
    per_layer: Timing
    per_layer_error: float  # the swapped model's rel_error vs the masked dense model

    @property
    def auto_ms(self) -> float:
        return min(self.dense.median_ms, self.per_layer.median_ms)

    @property
    def error(self) -> float:
        """rel_error of auto's output: 0 when auto is the masked dense model itself."""
        return self.per_layer_error if self.chose == "per_layer" else 0.0


def pick_auto(dense: nn.Module, swapped: nn.Module, inputs: dict[str, Any], device: torch.device,
              warmup: int, repeats: int) -> AutoPick:
    """Time the swapped and the all-dense model side by side and keep the faster one as "auto"."""
    err, timings = compare_models(dense, swapped, inputs, device, warmup, repeats)
    faster = timings["auto"].median_ms < timings["dense"].median_ms
    return AutoPick("per_layer" if faster else "dense", timings["dense"], timings["auto"], err)
