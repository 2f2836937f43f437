"""Activation sparsity at inference: WINA (Chen et al. 2025) and its baseline TEAL (Liu et al. 2024).

Training-free, and the weights stay dense: while the model runs, every prunable linear layer sees
only some elements of its input, per token, and the others are set to zero, so a batch-1 kernel
could skip the weight columns they multiply (kernels/activation.py times that).

    method = ACTIVATION_METHODS["wina"]
    with sparsify_inputs(prunable_linears(handle), method, 0.5) as counts:
        quality = evaluator(handle)          # each layer keeps half of its inputs, token by token
    counts.sparsity()                         # 0.5: the share of input elements really skipped

    keep_mask(x, 0.5, column_norms(layer))    # one layer's kept elements by |x_i| * ||W[:, i]|| (True = kept)
    plan_layers(prunable_linears(handle), method)   # per layer: its score's norms, who shares its mask
    run_activation(spec, ctx)                 # the `prune` job for methods wina / teal

What is implemented, and how it relates to the papers:
- The score of input element i of a token x entering a layer with (out, in) weight W:
  WINA  |x_i| * ||W[:, i]||_2 on k_proj and gate_proj, |x_i| on every other layer: what the authors'
        release (github.com/microsoft/wina, wina/self_attn.py and mlp.py) does: its column norms are
        those of k_proj and gate_proj, the norms of q, v, up, o and down are set to 1. A model with
        no k_proj / gate_proj (an MLP, GPT-2) gets the paper's formula on every layer instead.
  TEAL  |x_i| (magnitude alone).
  So in a Llama block TEAL keeps one set per shared input (q/k/v read one x, gate/up another), and
  WINA two: k's (gate's) own, and TEAL's for q and v (up).
- Other readings, in VARIANTS for benchmarks/activation_sparsity.py, not catalog methods:
  wina-own (the paper's |x_i| * ||W[:, i]|| on every layer, a mask per layer), wina-stacked (one mask
  per shared input, scored with the stacked consumers' column norms ||[Wq; Wk; Wv][:, i]||, the
  skip error over all consumers and one gather in a kernel), wina-svd / teal-svd (the release's
  optional transform: the shared input is rotated by V of its k_proj / gate_proj SVD, x -> x V and
  W -> W V, so k's columns are orthogonal as the paper's theory assumes; here the layer's actual
  input is rotated and rotated back inside the hook, where the release fuses the RMSNorm gain into
  the weights first and rotates the residual stream). On SmolLM2-135M (BBC News, 8 x 512 tokens,
  2026-12-03) the release reading was the best WINA at 25/50/65% and the rotation hurt both
  methods (perplexity 76 / 90 against 53-54 unrotated at 50%), so `wina` is the release reading.
- Selection is **per-token top-k for both**: each token keeps the k = in - round(s * in) elements
  with the highest score (at least one), so every token of every layer skips exactly the target
  share s. TEAL's paper instead cuts each hidden state at a magnitude threshold calibrated offline
  from its activation distribution (the share skipped varies per token around the target) and
  allocates sparsity across layers greedily; WINA's release offers both top-k and that threshold and
  the same greedy allocation. Here: top-k, and allocation `uniform` (every layer at the target, no
  calibration data read) or `greedy` (activation_greedy.py: TEAL's block-wise greedy allocation on
  calibration text, each input of a block its own level). Every token is sparsified (the release
  can keep the prompt's prefill dense).
- Where: the inputs of `zoo.prunable_linears` (in a Llama block q, k, v, o, gate, up and down, as
  both papers; embeddings and the LM head stay dense). Layers that share a mask compute it once
  per token (the first one called), the others reuse it (`plan_layers`, LayerPlan.key).
- kernels/activation.py times each layer with this plan (`plan_layers`): the parent's kept sets,
  one top-k per shared mask.

A run records, at x = each target: `activation_sparsity` (input elements skipped, measured over
every layer call of the evaluation), `layer_activation_sparsity` and `layer_activation_zeros` (series =
layer; drawn side by side on the run page),
`activation_zeros` (inputs exactly zero after sparsification, the model's own zeros such as
ReLU's included) and the evaluator's quality key (`perplexity`, `accuracy`, ...). Artifacts:
`activation@x` (JSON: method, target, measured shares) per target, and `views` (a causal LM's
greedy generation, dense and at each target). Nothing else is needed to rebuild a target: the
column norms come from the dense weights, the method and targets from the spec.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from sparsity_core.catalog.pruning import METHODS as CATALOG
from sparsity_core.jobs.context import RunContext, Stage, target_tag
from sparsity_core.pruning.artifacts import write_json
from sparsity_core.pruning.base import in_features, weight_2d
from sparsity_core.pruning.record import open_model
from sparsity_core.pruning.views import PROMPT, generate
from sparsity_core.specs import PruneSpec
from sparsity_core.zoo import prunable_linears


# ---------------------------------------------------------------- the keep-mask (pure functions)
def kept_count(width: int, sparsity: float) -> int:
    """Input elements a token keeps at `sparsity`: width - round(sparsity * width), at least one."""
    return max(1, width - math.floor(sparsity * width + 0.5))


def weight_norms(weight: Tensor) -> Tensor:
    """||W[:, i]||_2 of every input column i of an (out, in) weight tensor, in float32."""
    return weight.detach().float().norm(dim=0)


def column_norms(layer: nn.Module) -> Tensor:
    """`weight_norms` of a layer's (out, in) weight (Conv1D's transposed)."""
    return weight_norms(weight_2d(layer))


def scores(x: Tensor, norms: Optional[Tensor] = None) -> Tensor:
    """Importance of each input element (last dim): |x_i| * norms_i (WINA) or |x_i| (TEAL, norms None)."""
    magnitude = x.detach().abs().float()
    return magnitude if norms is None else magnitude * norms.to(x.device)


def keep_mask(x: Tensor, sparsity: float, norms: Optional[Tensor] = None) -> Tensor:
    """Bool mask of x's shape, True where a token keeps the element: the top `kept_count` scores
    along the last dim (ties broken by torch.topk)."""
    width = x.shape[-1]
    k = kept_count(width, sparsity)
    if k == width:
        return torch.ones_like(x, dtype=torch.bool)
    top = scores(x, norms).topk(k, dim=-1, sorted=False).indices
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, top, True)


# ---------------------------------------------------------------- layers that read one input
# Sibling layers fed the very same tensor: a Llama block's q/k/v and gate/up, a BERT block's
# query/key/value. A kernel gathers the kept elements once for all of them; WINA's error of skipping
# x_i is then |x_i| * ||[W_1; W_2; ...][:, i]||_2 over every consumer (Chen et al. 2025, Thm 3.3,
# with the stacked matrix as W).
SHARED_INPUTS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("query", "key", "value"))
# the member whose SVD gives a group's rotation, and the one WINA's release weighs (k_proj, gate_proj)
ANCHORS = ("k_proj", "gate_proj", "key")


def input_groups(names: list[str]) -> dict[str, tuple[str, ...]]:
    """{layer: the layers that read the same input, itself included, in SHARED_INPUTS order}."""
    present, groups = set(names), {}
    for name in names:
        parent, _, leaf = name.rpartition(".")
        family = next((f for f in SHARED_INPUTS if leaf in f), (leaf,))
        groups[name] = tuple(m for m in (f"{parent}.{x}" if parent else x for x in family) if m in present)
    return groups


def stacked_norms(weights: list[Tensor]) -> Tensor:
    """||[W_1; W_2; ...][:, i]||_2 of (out_j, in) weights sharing their input: sqrt(sum_j ||W_j[:, i]||^2)."""
    return torch.stack([weight_norms(w) ** 2 for w in weights]).sum(0).sqrt()


def svd_basis(weight: Tensor) -> Tensor:
    """V of W = U S V^T (in x in, orthogonal): W V = U S has orthogonal columns of norms S (zeros past
    rank), the transform WINA's theory assumes (Chen et al. 2025, sec. 3.3)."""
    return torch.linalg.svd(weight.detach().double(), full_matrices=True).Vh.T.float()


# ---------------------------------------------------------------- the methods
WEIGHTS = ("none", "own", "stacked", "anchor")
SHARING = {"none": "one mask per token for q/k/v and one for gate/up", "stacked": "one mask per token for q/k/v "
           "and one for gate/up", "own": "a mask per layer", "anchor": "k_proj and gate_proj their own mask, "
           "q/v and up TEAL's (a model without them: a mask per layer)"}


@dataclass(frozen=True)
class ActivationMethod:
    """An activation-sparsity criterion.

    weights: what |x_i| is multiplied by: "none" (TEAL), "own" (each layer its own column norms, its
    own mask), "stacked" (one mask per shared input, scored with the stacked consumers' column norms),
    "anchor" (WINA's release: only k_proj / gate_proj weighted, every other layer by |x| alone).
    transform: a shared input is first rotated by V of its anchor's SVD (x -> x V, W -> W V)."""

    name: str
    weights: str
    score: str  # the criterion in words, for the run's info
    transform: bool = False

    def __post_init__(self):
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, not {self.weights!r}")

    def describe(self) -> dict:
        return {"method": self.name, "score": self.score, "selection": "per-token top-k at each layer's level",
                "shared_inputs": SHARING[self.weights], "transform": "SVD rotation of shared inputs" if self.transform else "none",
                "kept_per_token": "in - round(s * in), at least 1", "calibration": "none"}


ACTIVATION_METHODS: dict[str, ActivationMethod] = {}


def register_activation(method: ActivationMethod) -> ActivationMethod:
    """Register the implementation of catalog method `method.name`, an `activation=True` entry."""
    entry = CATALOG.get(method.name)
    if entry is None or not entry.activation:
        raise ValueError(f"{method.name!r} is no activation-sparsity method of the catalog "
                         "(sparsity_core/catalog/pruning.py, activation=True)")
    if method.name in ACTIVATION_METHODS:
        raise ValueError(f"activation method {method.name!r} is registered already")
    ACTIVATION_METHODS[method.name] = method
    return method


register_activation(ActivationMethod("wina", "anchor", "k_proj, gate_proj: |x_i| * ||W[:, i]||_2; other layers "
                                     "|x_i| (Chen et al. 2025, the authors' release)"))
register_activation(ActivationMethod("teal", "none", "|x_i| (Liu et al. 2024)"))

# Other readings of WINA, compared by benchmarks/activation_sparsity.py (not catalog methods)
VARIANTS: dict[str, ActivationMethod] = {m.name: m for m in (
    ActivationMethod("wina-own", "own", "|x_i| * ||W[:, i]||_2, each layer its own mask"),
    ActivationMethod("wina-stacked", "stacked", "|x_i| * ||[W_1; W_2; ...][:, i]||_2 over the layers reading x, "
                     "one mask per shared input"),
    ActivationMethod("wina-svd", "anchor", "as wina, shared inputs rotated by V of k / gate",
                     transform=True),
    ActivationMethod("teal-svd", "none", "|x_i| of shared inputs rotated by V of k / gate", transform=True),
)}


@dataclass
class LayerPlan:
    """How one layer's input is sparsified: layers with equal `key` read the same x with the same score,
    so they share one mask per token; `basis` (orthogonal V) rotates x before selection."""

    key: tuple
    norms: Optional[Tensor]
    basis: Optional[Tensor] = None


def in_basis(layer: nn.Module, basis: Optional[Tensor]) -> Tensor:
    """The layer's (out, in) weight in the coordinates its mask is chosen in: W, or W V (float32)."""
    w = weight_2d(layer).detach().float()
    return w if basis is None else w @ basis


def plan_layers(linears: dict[str, nn.Module], method: ActivationMethod) -> dict[str, LayerPlan]:
    """{layer: its LayerPlan} for `method` (norms and bases on each layer's device, float32)."""
    groups, bases, plans = input_groups(list(linears)), {}, {}
    weights = method.weights
    if weights == "anchor" and not any(n.rpartition(".")[2] in ANCHORS for n in linears):
        weights = "own"  # no k_proj / gate_proj (an MLP, GPT-2): the paper's per-layer score everywhere
    for name, layer in linears.items():
        # Step 1: the group reading this layer's input, its anchor, and its rotation if any
        members = groups[name]
        anchor = next((m for m in members if m.rpartition(".")[2] in ANCHORS), None)
        device = weight_2d(layer).device
        basis = None
        if method.transform and anchor is not None:
            if members[0] not in bases:
                bases[members[0]] = svd_basis(weight_2d(linears[anchor])).to(device)
            basis = bases[members[0]]

        # Step 2: the score's weights and who shares the mask
        if weights == "none" or (weights == "anchor" and name != anchor):
            plans[name] = LayerPlan((members[0], "magnitude"), None, basis)
        elif weights == "stacked":
            plans[name] = LayerPlan((members[0], "stacked"), stacked_norms([in_basis(linears[m], basis) for m in members]).to(device),
                                    basis)
        else:  # own, or the anchor itself
            plans[name] = LayerPlan((name, "own"), weight_norms(in_basis(layer, basis)).to(device), basis)
    return plans


# ---------------------------------------------------------------- the hooks
class InputCounts:
    """What the layers saw while sparsified: per layer, input elements seen, skipped, and zero
    after sparsification (kept on the model's device; read once at the end)."""

    def __init__(self, names: list[str]):
        self.seen = dict.fromkeys(names, 0)
        self.skipped: dict[str, Tensor | int] = dict.fromkeys(names, 0)
        self.zeros: dict[str, Tensor | int] = dict.fromkeys(names, 0)

    def add(self, name: str, mask: Tensor, sparse: Tensor) -> None:
        self.seen[name] += mask.numel()
        self.skipped[name] = self.skipped[name] + (~mask).sum()
        self.zeros[name] = self.zeros[name] + (sparse == 0).sum()

    def per_layer(self) -> dict[str, float]:
        """Share of input elements skipped, per layer that was called."""
        return {n: float(self.skipped[n]) / self.seen[n] for n in self.seen if self.seen[n]}

    def zeros_per_layer(self) -> dict[str, float]:
        """Share of input elements exactly zero after sparsification, per layer that was called."""
        return {n: float(self.zeros[n]) / self.seen[n] for n in self.seen if self.seen[n]}

    def sparsity(self) -> float:
        """Share of all input elements skipped, over every layer call."""
        seen = sum(self.seen.values())
        return sum(float(v) for v in self.skipped.values()) / seen if seen else 0.0

    def zero_share(self) -> float:
        """Share of all inputs exactly zero after sparsification (the model's own zeros included)."""
        seen = sum(self.seen.values())
        return sum(float(v) for v in self.zeros.values()) / seen if seen else 0.0


def sparsify(x: Tensor, sparsity: float, plan: LayerPlan) -> tuple[Tensor, Tensor, Tensor]:
    """(mask, the kept coordinates with the others zeroed, the layer's new input) of one x."""
    coords = x if plan.basis is None else x.float() @ plan.basis
    mask = keep_mask(coords, sparsity, plan.norms)
    kept = coords.masked_fill(~mask, 0)
    return mask, kept, kept if plan.basis is None else (kept @ plan.basis.T).to(x.dtype)


def _hook(name: str, levels: dict[str, float], plan: LayerPlan, counts: InputCounts, shared: dict, readers: int):
    """The pre-hook of one layer, at sparsity levels[name] (read at each call). Layers that read one
    input (q / k / v) share its mask: the first reader of an x computes it and keeps it in `shared`
    for the `readers - 1` others, the last one drops it, so at most one block's shared inputs are
    alive at a time (not every layer's)."""
    def pre_hook(_module: nn.Module, args: tuple):
        x = args[0]
        hit = shared.get(plan.key)
        if hit is None or hit[0] is not x:  # the first reader of this x computes the mask
            hit = [x, *sparsify(x, levels[name], plan), readers]
            if readers > 1:
                shared[plan.key] = hit
        _, mask, kept, sparse, _ = hit
        hit[4] -= 1
        if hit[4] <= 0:  # the last reader: nothing else needs this x's mask
            shared.pop(plan.key, None)
        counts.add(name, mask, kept)
        return (sparse, *args[1:])

    return pre_hook


@contextlib.contextmanager
def sparsify_inputs(linears: dict[str, nn.Module], method: ActivationMethod, sparsity: float | dict[str, float],
                    plans: Optional[dict[str, LayerPlan]] = None) -> Iterator[InputCounts]:
    """Within the block every layer of `linears` sees its input sparsified per token by `method`
    at `sparsity`, one level for all or {layer: level} (a layer allocation, e.g. activation_greedy's;
    read at every call, so its owner may change it between forwards; layers sharing a mask need one
    level); yields the InputCounts. `plans`: `plan_layers(linears, method)` when the caller has it
    already (it does not depend on the target). The hooks are removed on exit, also after an error."""
    levels = sparsity if isinstance(sparsity, dict) else dict.fromkeys(linears, sparsity)
    counts, shared, handles = InputCounts(list(linears)), {}, []
    plans = plans if plans is not None else plan_layers(linears, method)
    readers = Counter(plan.key for plan in plans.values())
    try:
        for name, plan in plans.items():
            handles.append(linears[name].register_forward_pre_hook(
                _hook(name, levels, plan, counts, shared, readers[plan.key])))
        yield counts
    finally:
        for handle in handles:
            handle.remove()
        shared.clear()


# ---------------------------------------------------------------- the job
def record_target(ctx: RunContext, method: ActivationMethod, target: float, counts: InputCounts,
                  quality: dict[str, float]) -> None:
    """One target's metrics (x = target) and its `activation@x` artifact."""
    overall, per_layer = counts.sparsity(), counts.per_layer()
    ctx.metric("activation_sparsity", overall, x=target)
    ctx.metric("activation_zeros", counts.zero_share(), x=target)
    for name, value in per_layer.items():
        ctx.metric("layer_activation_sparsity", value, x=target, series=name)
    for name, value in counts.zeros_per_layer().items():
        ctx.metric("layer_activation_zeros", value, x=target, series=name)
    for key, value in quality.items():
        ctx.metric(key, value, x=target)
    tag = target_tag(target)
    write_json(ctx, f"activation@{tag}", {"method": method.name, "target": target, "measured": overall,
                                          "zeros": counts.zero_share(), "layers": per_layer}, f"activation-s{tag}")


def run_activation(spec: PruneSpec, ctx: RunContext) -> None:
    """The `prune` job of an activation-sparsity method: evaluate the dense model with each
    layer's inputs sparsified at each target (no weight changes). Allocation uniform reads no
    calibration; greedy (activation_greedy.py) first chooses each layer's level per target."""
    # Step 1: the dense model, its evaluation and the method
    handle, evaluator = open_model(spec, ctx)
    linears = prunable_linears(handle)
    method = ACTIVATION_METHODS[spec.method]
    described = {**method.describe(), "allocation": spec.allocation}
    if spec.allocation == "greedy":
        described["calibration"] = "calibration text, read by the greedy allocation only"
    ctx.info(method_params={}, activation={**described, "layers": len(linears),
                                           "inputs_per_token": sum(in_features(m) for m in linears.values())})
    views: dict = {"pruned": {}}
    if handle.task == "causal_lm":
        views["generation"] = {"prompt": PROMPT, "dense": generate(handle), "pruned": {}}
    # Step 2: each layer's level at each target: the target everywhere, or the greedy allocation
    n, plans = len(spec.sparsities), plan_layers(linears, method)  # the plan (norms, rotations) is target-free
    levels: dict[float, float | dict[str, float]] = {t: t for t in spec.sparsities}
    start = 0.0
    if spec.allocation == "greedy":
        levels, start = greedy_allocation(spec, handle, method, ctx), GREEDY_SHARE
    # Step 3: each target from the same dense weights: evaluate under the hooks, then record
    for i, target in enumerate(spec.sparsities):
        stage = Stage(ctx, start + (1 - start) * i / n, start + (1 - start) * (i + 1) / n)
        stage(0.0, f"activation sparsity {target:.0%}: evaluating")
        with sparsify_inputs(linears, method, levels[target], plans) as counts:
            quality = evaluator(handle)
        record_target(ctx, method, target, counts, quality)
        if "generation" in views:
            stage(0.9, f"activation sparsity {target:.0%}: generating")
            with sparsify_inputs(linears, method, levels[target], plans):
                views["generation"]["pruned"][target_tag(target)] = generate(handle)
    write_json(ctx, "views", views)


GREEDY_SHARE = 0.6  # of the run's progress bar: greedy allocation runs ~200 block forwards per block


def greedy_allocation(spec: PruneSpec, handle, method: ActivationMethod, ctx: RunContext) -> dict[float, dict[str, float]]:
    """{target: {layer: level}} by TEAL's greedy allocation on the spec's calibration text, with
    the progress bar moving block by block; the run's info says what was read."""
    from sparsity_core.data.calibration import calibration_set
    from sparsity_core.pruning.activation_greedy import MAX_LEVEL, STEP, greedy_levels

    stage = Stage(ctx, 0.0, GREEDY_SHARE)
    stage(0.0, "greedy allocation: reading calibration text")
    calib = calibration_set(handle, spec.calibration_samples, spec.seq_len, spec.seed)
    levels = greedy_levels(handle, method, spec.sparsities, calib.batches,
                           lambda i, n: stage(i / n, f"greedy allocation: block {i}/{n}"))
    ctx.info(calibration={**calib.info, "mode": "dense-model block inputs, for greedy allocation"},
             allocation={"kind": "greedy", "step": STEP, "max_level": MAX_LEVEL,
                         "weighting": "each block's levels average to the target, weighted by the parameters "
                                      "of the layers reading each input"})
    return levels
