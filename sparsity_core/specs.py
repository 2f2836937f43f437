"""Job specs: one pydantic model per job kind. A spec is everything needed to reproduce a run.

    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0, 0.5, 0.9]})

Validation happens here, before anything is queued, against the catalog alone (this module is a
leaf: it imports pydantic and `sparsity_core.catalog`, nothing heavy). `field_errors` turns a
ValidationError into {field: message} so a page can show each message beside its widget and the
CLI can print one line; a method parameter's message is keyed `params.<name>`.

Every stored spec carries `SCHEMA_VERSION`; `parse_spec(data, version=...)` upgrades an older one
on read (`UPGRADES`) and refuses one from a newer release with a message that says so.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from sparsity_core.catalog import caps
from sparsity_core.catalog.kernels import LAYOUT_HELP, MODES
from sparsity_core.catalog.models import check_model_name
from sparsity_core.catalog.pruning import METHODS, STRUCTURED, parse_pattern
from sparsity_core.catalog.sae import MATRYOSHKA_PREFIXES, MAX_PREFIXES, VARIANTS

# 2: a pruning spec stores its method's parameters in full (v1 stored {} for "the defaults")
# 3: a pruning spec names its calibration (sequential is the new default; v2 ran one_pass)
SCHEMA_VERSION = 3


class BaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    kind: str
    model: str = Field(description="a bundled model name, or hf:<hub-id-or-local-path>")
    name: Optional[str] = Field(None, max_length=caps.NAME_CHARS, description="free text shown in the UI")
    seed: int = Field(0, ge=0, le=caps.MAX_SEED)
    parent_run: Optional[int] = Field(None, ge=1, description="the run this one builds on")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if len(value) > caps.MODEL_CHARS:
            raise ValueError(f"a model name is at most {caps.MODEL_CHARS} characters, got {len(value)}")
        if any(ord(c) < 32 for c in value):
            raise ValueError("a model name has no control characters")
        try:
            return check_model_name(value)
        except (OSError, RuntimeError) as exc:  # a path the OS refuses to look at; `~nobody/x`
            raise ValueError(f"hf path {value[3:83]!r} cannot be read here: {type(exc).__name__}") from None

    @property
    def method_name(self) -> Optional[str]:
        return getattr(self, "method", None) or getattr(self, "variant", None)


GREEDY_CALIBRATION = (8, 128)  # sequences x tokens greedy activation allocation reads unless told


class PruneSpec(BaseSpec):
    """Prune a model at each target sparsity and evaluate it (kind `prune`)."""

    kind: Literal["prune"] = "prune"
    method: str = Field("magnitude", description="a registered pruning method")
    scope: Literal["layer", "global"] = Field(
        "layer", description="layer: every layer at the target; global: one threshold for all")
    sparsities: list[float] = Field(..., min_length=1, max_length=caps.SPARSITIES,
                                    description="target fractions of zeros")
    pattern: str = Field("unstructured", validate_default=True,
                         description="unstructured | N:M | block:RxC | heads | neurons")
    eval_samples: Optional[int] = Field(
        None, ge=16, le=caps.MAX_ROWS, description="cap on evaluation rows, or 512-token windows for a causal LM "
                                 "(None: the whole test split; 16 windows for a causal LM)")
    params: dict[str, Any] = Field({}, validate_default=True, description="the method's own parameters, e.g. dsnot's initial")
    calibration_samples: int = Field(64, ge=1, le=caps.CALIBRATION_SAMPLES, description="calibration sequences (or rows)")
    seq_len: int = Field(256, ge=8, le=caps.SEQ_LEN, description="tokens per calibration sequence")
    # pruning/calibrate.py: the papers' block-by-block statistics, or one pass of the dense model
    calibration: Literal["sequential", "one_pass"] = Field(
        "sequential", description="wanda / sparsegpt / dsnot: statistics block by block from the already-pruned "
                                  "blocks' outputs (the papers), or one pass of the dense model")
    # pruning/allocation.py: how much of each target every layer takes (layer scope, unstructured)
    allocation: Literal["uniform", "owl", "erk", "greedy"] = Field(
        "uniform", description="uniform: every layer at the target; owl: blocks with more outlier activations "
                               "keep more (Yin et al. 2024); erk: density ~ (in + out) / (in x out) (Evci et al. 2020); "
                               "greedy (wina / teal): TEAL's block-wise greedy activation-sparsity allocation")
    owl_m: float = Field(5.0, ge=1, le=100, description="OWL's M: a score |W| x ||X|| above M x its block's mean "
                                                        "is an outlier (the paper: 5)")
    owl_lambda: float = Field(0.08, ge=0, le=0.3, description="OWL's lambda: block sparsities stay within target "
                                                              "+- lambda (the paper: 0.08)")
    # schedule and recovery (pruning/recovery.py): train while pruning, or after a one-shot prune
    schedule: Literal["oneshot", "gradual"] = Field(
        "oneshot", description="oneshot: prune at once; gradual: cubic sparsity ramp while training")
    recovery: Literal["none", "finetune", "distill"] = Field(
        "none", description="train after/while pruning: labels only, or distil from the dense teacher")
    steps: int = Field(200, ge=1, le=caps.TRAIN_STEPS,
                       description="optimizer steps per target: the gradual ramp, or one-shot recovery")
    finetune_steps: int = Field(100, ge=0, le=caps.TRAIN_STEPS,
                                description="gradual: steps at each final sparsity with the mask fixed")
    # 1e-3, not dense fine-tuning's 5e-5: minilm-l6-rt ramped to 90% in 250 steps reached 0.712 at
    # 3e-4 x 100 steps and 0.760 (= dense) at 1e-3 x 250 (benchmarks/pruning_recovery.py)
    lr: float = Field(1e-3, gt=0, le=1.0, description="AdamW peak learning rate (warmup, linear decay)")
    batch_size: int = Field(32, ge=1, le=caps.BATCH_ROWS, description="training rows per step")
    train_rows: Optional[int] = Field(None, ge=16, le=caps.MAX_ROWS, description="cap on training rows (None: whole split)")
    distill_temperature: float = Field(2.0, gt=0, le=100, description="softens both models' logits")
    distill_alpha: float = Field(0.9, ge=0, le=1, description="weight of KL; 1 - alpha on label cross-entropy")
    distill_hidden_weight: float = Field(1.0, ge=0, le=1000, description="weight of the hidden-state MSE")
    # recipes on one-shot recovery (pruning/recovery.py); older stored specs parse with these defaults
    soup_ingredients: int = Field(
        0, ge=0, le=caps.SOUP_INGREDIENTS,
        description="sparse model soup (Zimmer et al. 2023): fine-tune this many copies of each pruned model under "
                    "its mask, seeds seed, seed+1, ..., and average them; 0 or 1: no soup")
    nm_training: Literal["fixed_mask", "sr_ste"] = Field(
        "fixed_mask", description="N:M recovery: fixed_mask trains under the one-shot mask; sr_ste trains the dense "
                                  "weights through a mask recomputed from |W| every step (Zhou et al. 2021)")
    srste_decay: float = Field(2e-4, ge=0, le=1, description="SR-STE's lambda_W, added times W to the gradient "
                                                             "of the pruned weights (the paper: 2e-4, under SGD; "
                                                             "here the optimiser is AdamW, which rescales the term)")

    @field_validator("method")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown pruning method {value!r}; known: {', '.join(METHODS)}")
        return value

    @field_validator("sparsities")
    @classmethod
    def _in_range(cls, values: list[float]) -> list[float]:
        for v in values:
            if not 0.0 <= v < 1.0:
                raise ValueError(f"each sparsity must be in [0, 1), got {v}")
        if len(set(values)) != len(values):
            raise ValueError("sparsities repeat a value")
        return sorted(values)

    @field_validator("pattern")
    @classmethod
    def _pattern_fits_method(cls, value: str, info: ValidationInfo) -> str:
        problem = pattern_problem(value, info.data)
        if problem:
            raise ValueError(problem)
        return value.strip().lower()

    @field_validator("params")
    @classmethod
    def _method_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        entry = METHODS.get(info.data.get("method", ""))
        if entry is None:
            return value  # the method's own message is shown already
        try:
            return entry.params.model_validate(value).model_dump()
        except ValidationError as exc:
            raise ParamsError(field_errors(exc)) from None

    @model_validator(mode="after")
    def _activation_fits(self) -> "PruneSpec":
        """WINA / TEAL (pruning/activation.py) choose each layer's inputs per token at inference:
        the weights never change, so there is nothing to schedule, train or threshold globally."""
        if not METHODS[self.method].activation:
            return self
        errors = {}
        if self.scope != "layer":
            errors["scope"] = (f"{self.method} keeps a share of each layer's inputs per token, layer by layer: "
                               f"use scope layer")
        if self.schedule != "oneshot":
            errors["schedule"] = (f"{self.method} is training-free activation sparsity (weights stay dense): "
                                  f"use the oneshot schedule")
        if self.recovery != "none":
            errors["recovery"] = (f"{self.method} is training-free activation sparsity (weights stay dense): "
                                  f"recovery none")
        if errors:
            raise FieldsError(errors)
        return self

    @model_validator(mode="before")
    @classmethod
    def _greedy_calibrates_small(cls, data: Any) -> Any:
        """Greedy allocation runs each block once per candidate step on every calibration token
        (~19 s a block on SmolLM2 with 8 x 128 tokens, 2 CPU cores): without sizes given, it reads
        8 sequences of 128 tokens, not the weight-pruning default of 64 x 256."""
        if isinstance(data, dict) and data.get("allocation") == "greedy":
            data = {"calibration_samples": GREEDY_CALIBRATION[0], "seq_len": GREEDY_CALIBRATION[1], **data}
        return data

    @model_validator(mode="before")
    @classmethod
    def _global_calibrates_in_one_pass(cls, data: Any) -> Any:
        """A global threshold ranks every layer's scores at once, which a block-by-block pass never
        holds: without a `calibration` given, global scope calibrates in one pass."""
        if isinstance(data, dict) and data.get("scope") == "global" and "calibration" not in data:
            data = {**data, "calibration": "one_pass"}
        return data

    @model_validator(mode="after")
    def _allocation_fits(self) -> "PruneSpec":
        """OWL / ERK give each layer its own unstructured target in a one-shot prune of the weights;
        sequential calibration prunes block by block, so each layer by its own threshold."""
        problem = allocation_problem(self)
        if problem:
            raise FieldsError({"allocation": problem})
        if self.calibration == "sequential" and self.scope == "global" and METHODS[self.method].needs_calibration:
            raise FieldsError({"calibration": "global scope ranks every layer's scores at once, and sequential "
                                              "calibration holds one block's statistics at a time: use one_pass"})
        return self


def allocation_problem(spec: "PruneSpec") -> Optional[str]:
    """Why a non-uniform `allocation` does not fit the spec's scope, pattern, method or schedule, or None."""
    if spec.allocation == "uniform":
        return None
    if spec.allocation == "greedy":
        if not METHODS[spec.method].activation:
            return (f"greedy allocates activation sparsity (methods wina, teal); {spec.method} prunes weights: "
                    f"use uniform, owl or erk")
        return None
    what = {"owl": "OWL", "erk": "ERK"}[spec.allocation]
    if METHODS[spec.method].activation:
        return f"{what} allocates weight sparsity per layer; {spec.method} keeps the weights dense: use uniform"
    if spec.scope == "global":
        return (f"{what} sets each layer's own target, and global scope sets one threshold over all layers: "
                f"use scope layer, or allocation uniform")
    if parse_pattern(spec.pattern).kind != "unstructured":
        return (f"{what} gives layers different sparsities, which {spec.pattern} cannot express "
                f"(its sparsity is fixed by the pattern): use the unstructured pattern, or allocation uniform")
    if spec.schedule != "oneshot" or spec.recovery != "none":
        return f"{what} applies to one-shot pruning without recovery: use schedule oneshot and recovery none"
    return None


def pattern_problem(value: str, data: dict[str, Any]) -> Optional[str]:
    """Why `pattern` does not fit the method, scope and targets validated before it, or None."""
    entry = METHODS.get(data.get("method", ""))
    if entry is None:
        return None
    try:
        pattern = parse_pattern(value)
    except ValueError as exc:
        return str(exc)
    if pattern.kind in STRUCTURED:
        if not entry.structured:
            structured = [m for m, e in METHODS.items() if e.structured]
            return f"{value} are removed by {' or '.join(structured)} scores, not by {entry.name}"
        return None
    if entry.activation:  # scope, schedule and recovery: PruneSpec._activation_fits
        return None if pattern.kind == "unstructured" else (
            f"{entry.name} skips single input elements of each layer, per token (activation sparsity): "
            f"its pattern is unstructured, not {value}")
    if not entry.supports(pattern):
        return f"{entry.name} cannot prune the {value} pattern; it supports {', '.join(entry.patterns)}"
    if data.get("scope") == "global" and (pattern.kind != "unstructured" or "global" not in entry.scopes):
        return (f"global scope needs the unstructured pattern and a method that allows it "
                f"({entry.name}: {', '.join(entry.scopes)})")
    low = [s for s in data.get("sparsities", []) if 0 < s < pattern.min_sparsity - 1e-9]
    if low:
        return (f"{value} prunes {pattern.min_sparsity:.0%} by itself; targets {low} are below it "
                f"(use 0 for the dense reference, or targets of at least {pattern.min_sparsity:g})")
    return None


class KernelSpec(BaseSpec):
    """Time sparse layouts against dense (kind `kernel`): a sweep over layer shapes x tokens x
    sparsity x layout, and with `parent_run` the pruned model's own layers and whole forward."""

    kind: Literal["kernel"] = "kernel"
    model: str = Field("minilm-l6", description="the model of the parent run (unused by the sweep)")
    shapes: list[list[int]] = Field([[3072, 768]], max_length=caps.KERNEL_SHAPES,
                                    description="layer shapes [out, in] to sweep ([] with a parent_run: the model only)")
    tokens: list[int] = Field([32], min_length=1, max_length=caps.KERNEL_TOKEN_COUNTS,
                              description="rows of the input (batch x sequence)")
    sparsities: list[float] = Field([0.5, 0.9], min_length=1, max_length=caps.KERNEL_SPARSITIES,
                                    description="fractions of zeros to sweep")
    layouts: list[str] = Field(["dense", "csr"], min_length=1, max_length=len(LAYOUT_HELP),
                               description="registered layouts to time")
    block: int = Field(32, description="BSR block size (block x block)")
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    modes: list[Literal["eager", "cuda_graph", "compile"]] = Field(
        ["eager"], min_length=1, max_length=len(MODES), description="how each call is launched (graphs/compile: the small-batch gap)")
    warmup: int = Field(5, ge=caps.KERNEL_WARMUP[0], le=caps.KERNEL_WARMUP[1])
    repeats: int = Field(30, ge=caps.KERNEL_REPEATS[0], le=caps.KERNEL_REPEATS[1],
                         description="timed rounds (median and IQR over them)")
    threads: Optional[int] = Field(None, ge=1, le=caps.KERNEL_THREADS, description="CPU threads (None: torch's default)")
    l2_flush: bool = Field(False, description="CUDA: flush the L2 cache before every timed call")
    batch: int = Field(32, ge=1, le=caps.KERNEL_BATCH, description="sentences (or images) per forward for parent_run")

    @field_validator("shapes")
    @classmethod
    def _shapes(cls, values: list[list[int]]) -> list[list[int]]:
        for shape in values:
            if len(shape) != 2 or min(shape) < 1:
                raise ValueError(f"each shape is [out, in] with two positive sizes, got {shape}")
            if shape[0] * shape[1] > caps.KERNEL_WEIGHTS:
                raise ValueError(f"shape {shape[0]}x{shape[1]} is too large (over {caps.KERNEL_WEIGHTS / 1e6:.0f}M "
                                 "weights)")
        return values

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, values: list[int]) -> list[int]:
        if any(not 1 <= t <= caps.KERNEL_TOKENS for t in values):
            raise ValueError(f"each token count must be between 1 and {caps.KERNEL_TOKENS}")
        return sorted(set(values))

    @field_validator("sparsities")
    @classmethod
    def _kernel_sparsities(cls, values: list[float]) -> list[float]:
        if any(not 0.0 <= v < 1.0 for v in values):
            raise ValueError("each sparsity must be in [0, 1), e.g. 0.9 for 90% zeros")
        return sorted(set(values))

    @field_validator("block")
    @classmethod
    def _block(cls, value: int) -> int:
        if value < 1 or value > 256 or value & (value - 1):
            raise ValueError(f"the BSR block must be a power of two from 1 to 256, got {value}")
        return value

    @field_validator("layouts")
    @classmethod
    def _layouts(cls, values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in LAYOUT_HELP]
        if unknown:
            raise ValueError(f"unknown layout {unknown[0]!r}; known: {', '.join(LAYOUT_HELP)}")
        # dense always runs: it is what every speedup divides by
        return ["dense", *dict.fromkeys(v for v in values if v != "dense")]

    @model_validator(mode="after")
    def _sweep_size(self) -> "KernelSpec":
        if self.points > caps.KERNEL_SWEEP_POINTS:
            axes = (f"{len(self.shapes)} shapes x {len(self.tokens)} token counts x {len(self.sparsities)} "
                    f"sparsities x {len(self.layouts)} layouts x {len(self.modes)} modes")
            raise FieldsError({"shapes": f"the sweep is {axes} = {self.points} points; at most "
                                         f"{caps.KERNEL_SWEEP_POINTS} (split it into several runs)"})
        return self

    @property
    def points(self) -> int:
        """Timed points of the sweep: the product of its axes (each runs `repeats` rounds)."""
        return len(self.shapes) * len(self.tokens) * len(self.sparsities) * len(self.layouts) * len(self.modes)


class ExplainSpec(BaseSpec):
    """Explain a classifier's prediction by representer points, with captum alongside (kind `explain`).

    The test point is `test_index` into the test split, or a typed `text` / a drawn 8x8 `image`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)

    kind: Literal["explain"] = "explain"
    method: Literal["representer"] = "representer"
    model: str = Field("digits-mlp", description="a classifier, or an encoder (a head is trained on it)")
    dataset: Literal["digits", "rotten_tomatoes", "bbc_news", "tweets"] = "digits"
    lam: float = Field(0.003, alias="lambda", le=caps.LAMBDA, description="L2 strength of the last-layer fit (paper: 0.003)")
    test_index: int = Field(0, ge=0, le=caps.MAX_ROWS, description="row of the test split to explain")
    text: Optional[str] = Field(None, max_length=caps.TEXT_CHARS, description="a typed sentence instead of a test row")
    image: Optional[list[list[float]]] = Field(None, description="a drawn 8x8 digit (0..16) instead of a test row")
    top_k: int = Field(10, ge=1, le=caps.TOP_K, description="excitatory / inhibitory examples to show")
    train_limit: Optional[int] = Field(None, ge=10, le=caps.MAX_ROWS, description="cap on training points (None: all)")
    parent_sparsity: Optional[float] = Field(None, ge=0, lt=1, description="which sparsity of the parent run (None: highest)")
    captum: bool = Field(True, description="also run captum attributions and influence")
    ig_steps: int = Field(50, ge=caps.IG_STEPS[0], le=caps.IG_STEPS[1], description="integration steps of (Layer)IntegratedGradients")
    flip_fraction: float = Field(0.1, ge=0, le=0.5, description="labels flipped for the debugging experiment (0: skip)")

    @field_validator("lam")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"lambda must be greater than 0 (the paper uses 0.003), got {value}")
        return value

    @field_validator("text")
    @classmethod
    def _some_text(cls, value: Optional[str]) -> Optional[str]:
        return value if value and value.strip() else None

    @field_validator("image")
    @classmethod
    def _eight_by_eight(cls, value: Optional[list[list[float]]]) -> Optional[list[list[float]]]:
        if value is None:
            return None
        if len(value) != 8 or any(len(row) != 8 for row in value):
            raise ValueError("a drawn digit is 8 rows of 8 pixels")
        if any(not 0 <= v <= 16 for row in value for v in row):
            raise ValueError("pixels go from 0 (white) to 16 (black)")
        return value


class SAESpec(BaseSpec):
    """Train a sparse autoencoder on one site of a model and browse its features (kind `sae`).

    `k` is the target L0 for every variant: allocation variants keep k per token (or k x batch);
    penalty variants (relu_l1, flops) steer their coefficient toward L0 = k unless `l1_coeff` is set."""

    kind: Literal["sae"] = "sae"
    model: str = Field("minilm-l6", description="a bundled model name, or hf:<hub-id-or-local-path>")
    variant: str = Field("topk", description="a registered SAE variant")
    layer: int = Field(3, ge=0, description="block index; activations are read after/inside this block")
    site: Literal["resid", "mlp", "attn", "hidden"] = Field(
        "resid", description="residual stream, MLP or attention output; hidden: an MLP classifier's hidden layer")
    data: Literal["all", "rotten_tomatoes", "bbc_news", "tweets", "digits"] = Field(
        "all", description="text corpus; digits: the 8x8 images, for digits-mlp")
    context: int = Field(128, ge=8, le=4096, description="tokens per window fed to the model")
    # 100k: the default run captures 100k + 32k held-out tokens of minilm-l6 at ~3,500 tokens/s on a
    # 2-core laptop (38 s) and trains in seconds to FVE 0.76 at L0 32 (topk, 8x): a default under 90 s cold
    tokens: int = Field(100_000, ge=4096, le=100_000_000, description="training tokens (the token budget)")
    expansion: int = Field(8, ge=1, le=256, description="latents = expansion x activation width")
    k: int = Field(32, ge=1, description="target active latents per token (L0)")
    l1_coeff: Optional[float] = Field(None, gt=0, description="penalty weight (relu_l1, flops); empty: steer to L0 = k")
    lr: float = Field(4e-3, gt=0, le=0.1, description="Adam learning rate (peak of the schedule)")
    batch_tokens: int = Field(512, ge=64, le=65536, description="tokens per training step")
    dead_window: Optional[int] = Field(None, ge=1, description="tokens without firing that make a latent dead (default tokens/5)")
    parent_sparsity: Optional[float] = Field(None, ge=0, lt=1, description="which sparsity of the parent run (None: highest)")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    downstream: bool = Field(True, description="splice the SAE back into the model and measure the cost")
    # SAEBench-style evaluation (Karvonen et al. 2025), sae/probing.py and the sweep in sae/run.py
    probing: bool = Field(False, description="sparse probing: k-sparse probes (k = 1, 2, 5, 20) on the latents, the "
                                             "raw activations and their principal components, on the labelled corpora")
    absorption: bool = Field(False, description="feature absorption (SAEBench's first-letter task): how often the "
                                                "latents for 'starts with L' stay silent on L-words because another "
                                                "latent took them; text models whose tokens spell words")
    k_sweep: list[int] = Field(default_factory=list,
                               description="an L0 sweep in one run: one SAE per k on the same activations (at "
                                           "most 6 values; the run's own k joins them and is the one browsed)")
    prefixes: list[float] = Field(
        default_factory=lambda: list(MATRYOSHKA_PREFIXES), min_length=1, max_length=MAX_PREFIXES,
        description="Matryoshka variants: nested dictionary sizes as fractions of the latents, increasing, "
                    "the last 1 (the whole dictionary); each prefix is trained to reconstruct on its own")

    @field_validator("variant")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in VARIANTS:
            raise ValueError(f"unknown SAE variant {value!r}; known: {', '.join(VARIANTS)}")
        return value

    @field_validator("k_sweep")
    @classmethod
    def _sweep(cls, value: list[int], info: ValidationInfo) -> list[int]:
        variant = VARIANTS.get(info.data.get("variant"))
        if value and variant is not None and variant.penalty and info.data.get("l1_coeff") is not None:
            raise ValueError("a fixed penalty coefficient gives every SAE of the sweep the same L0: leave the "
                             "coefficient empty so each is steered to its own k")
        if len(value) > 6:  # each is one more SAE to train on the same activations
            raise ValueError(f"at most 6 values of k in one sweep, got {len(value)}")
        if any(k < 1 for k in value):
            raise ValueError(f"each k of the sweep is at least 1 (active latents per token), got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"each k of the sweep once, got {value}")
        return sorted(value)

    @field_validator("prefixes")
    @classmethod
    def _nested(cls, value: list[float], info: ValidationInfo) -> list[float]:
        if any(not 0 < f <= 1 for f in value):
            raise ValueError(f"each prefix is a fraction of the latents in (0, 1], got {value}")
        if any(a >= b for a, b in zip(value, value[1:])):
            raise ValueError(f"prefixes must increase (each level holds the one before), got {value}")
        if value[-1] != 1:
            raise ValueError(f"the last prefix is the whole dictionary, 1, got {value[-1]}")
        variant = info.data.get("variant")
        if variant in VARIANTS and not VARIANTS[variant].prefixes and value != list(MATRYOSHKA_PREFIXES):
            raise ValueError(f"prefixes apply to Matryoshka variants "
                             f"({', '.join(n for n, e in VARIANTS.items() if e.prefixes)}), not {variant}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("auto", "cpu") and not value.startswith("cuda"):
            raise ValueError(f"device must be auto, cpu or cuda[:index], got {value!r}")
        return value


SPECS: dict[str, type[BaseSpec]] = {"prune": PruneSpec, "kernel": KernelSpec, "explain": ExplainSpec,
                                    "sae": SAESpec}


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 stored a pruning method's parameters as given ({} for the defaults); v2 stores them all."""
    if data.get("kind") == "prune" and isinstance(data.get("method"), str) and data["method"] in METHODS:
        given = data.get("params") or {}
        if not isinstance(given, dict):
            raise SpecError({"params": f"params must be an object of parameter names and values, got {type(given).__name__}"})
        data = {**data, "params": {**METHODS[data["method"]].defaults(), **given}}
    return data


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v2 pruning runs collected statistics in one pass of the dense model; v3 defaults to sequential."""
    if data.get("kind") == "prune" and "calibration" not in data:
        data = {**data, "calibration": "one_pass"}
    return data


# version -> the function that lifts a spec of that version to the next one
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3}


def upgrade_spec(data: dict[str, Any], version: int) -> dict[str, Any]:
    """A stored spec of `version` as a spec of SCHEMA_VERSION. Raises SpecError for a newer one."""
    if not isinstance(version, int) or version < 1 or version > SCHEMA_VERSION:
        raise SpecError({"spec_version": f"spec version {version!r} is not one this release reads "
                                         f"(1 to {SCHEMA_VERSION}): it was written by a newer Sparsity Lab"})
    while version < SCHEMA_VERSION:
        data, version = UPGRADES[version](data), version + 1
    return data


def parse_spec(data: dict[str, Any] | str | BaseSpec, version: int = SCHEMA_VERSION) -> BaseSpec:
    """Validate a dict or JSON text into the spec class its `kind` names; a stored spec of an
    older `version` is upgraded first."""
    if isinstance(data, BaseSpec):
        return data
    check_size(data)
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
            raise SpecError({"": f"not valid JSON: {str(exc)[:200]}"}) from None
    if not isinstance(data, dict):
        raise SpecError({"": "a spec is a JSON object"})
    data = upgrade_spec(data, version)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in SPECS:  # a list or dict is unhashable: no `in` on it
        raise SpecError({"kind": f"unknown kind {str(kind)[:40]!r}; known: {', '.join(SPECS)}"})
    try:
        return SPECS[kind].model_validate(data)
    except ValidationError as exc:
        raise SpecError(field_errors(exc)) from None


def check_size(data: Any) -> None:
    """Refuse a spec over caps.SPEC_BYTES of JSON before pydantic reads it: a 10 MB spec was
    stored once, and the Runs page then took 11 s to render. A dict is measured as the JSON the
    store would keep; one that is no JSON at all (a set, nested past the recursion limit) is refused."""
    if isinstance(data, (str, bytes)):
        size = len(data.encode() if isinstance(data, str) else data)
    else:
        try:
            size = len(json.dumps(data, allow_nan=True).encode())
        except (TypeError, ValueError, RecursionError) as exc:
            raise SpecError({"": f"a spec is plain JSON (objects, lists, strings, numbers): "
                                 f"{type(exc).__name__}: {str(exc)[:120]}"}) from None
    if size > caps.SPEC_BYTES:
        raise SpecError({"": f"the spec is {size / 1024:,.0f} KB of JSON; a spec is at most "
                             f"{caps.SPEC_BYTES // 1024} KB"})


class SpecError(ValueError):
    """A spec that does not validate; `.errors` maps field name -> message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" if k else v for k, v in errors.items()))


class FieldsError(ValueError):
    """Raised inside a validator to put its messages on named fields; `.errors`: field -> message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" if k else v for k, v in errors.items()))


class ParamsError(FieldsError):
    """A method's parameters that do not validate; `.errors` maps parameter -> message."""


def field_errors(exc: ValidationError) -> dict[str, str]:
    """{field: first message}; a method parameter's message under `params.<name>`, a whole-spec
    check's (a FieldsError of a model validator) under the field it names."""
    out: dict[str, str] = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, FieldsError):
            for name, msg in inner.errors.items():
                out.setdefault(".".join(p for p in (field, name) if p), msg)
            continue
        msg = err["msg"].removeprefix("Value error, ")
        out.setdefault(field, msg)
    return out
