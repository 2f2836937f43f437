"""The pruning lab's names: methods with their own parameters, patterns, scopes. No torch.

    entry = METHODS["sparsegpt"]                 # MethodEntry
    entry.params.model_validate({"damp": 0.05})  # SparseGPTParams(damp=0.05); bad values name the field
    parse_pattern("2:4")                         # Pattern("nm", n=2, m=4)

The implementations (`pruning/<method>.py`) register under these names; a test keeps the two in
step. A method's parameters are a pydantic model, so the spec validates them before anything is
queued and the page shows each message beside that parameter's own widget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SparseGPTParams(NoParams):
    damp: float = Field(0.01, gt=0, le=1, description="Hessian damping, a fraction of its mean diagonal (1% in the paper)")


class DSnoTParams(NoParams):
    # the methods whose mask DSnoT refines: any one-shot scorer (not DSnoT itself)
    initial: Literal["magnitude", "wanda", "sparsegpt", "random"] = Field(
        "wanda", description="the method whose mask is refined")
    iterations: int = Field(50, ge=0, le=10_000, description="prune-and-regrow swaps per row, at most")


@dataclass(frozen=True)
class MethodEntry:
    name: str
    description: str
    params: type[BaseModel] = NoParams
    patterns: tuple[str, ...] = ("unstructured", "2:4", "4:8", "block:4x4")  # one of each kind it supports
    scopes: tuple[str, ...] = ("layer", "global")
    needs_calibration: bool = False
    structured: bool = False  # can remove whole heads / neurons (pruning/structured.py)
    # sparsifies each layer's input per token at inference (pruning/activation.py), weights stay dense:
    # `sparsities` are activation-sparsity targets, and no schedule, recovery or global scope applies
    activation: bool = False

    def supports(self, pattern: "str | Pattern") -> bool:
        kind = parse_pattern(pattern).kind if isinstance(pattern, str) else pattern.kind
        if kind in STRUCTURED:
            return self.structured
        return kind in {parse_pattern(p).kind for p in self.patterns}

    def defaults(self) -> dict:
        return self.params().model_dump()


METHODS: dict[str, MethodEntry] = {e.name: e for e in (
    MethodEntry("magnitude", "keep the largest |w|; layer-wise or one global threshold", structured=True),
    MethodEntry("random", "drop weights uniformly at random (seeded): the floor every method should beat",
                structured=True),
    MethodEntry("wanda", "|W| x ||X|| per output row, from calibration activations; no weight update",
                needs_calibration=True),
    MethodEntry("sparsegpt", "second-order layer reconstruction with the inverse Hessian (lazy column blocks)",
                params=SparseGPTParams, scopes=("layer",), needs_calibration=True),
    MethodEntry("dsnot", "prune-and-regrow refinement of another method's mask, no training",
                params=DSnoTParams, patterns=("unstructured", "2:4", "4:8"), scopes=("layer",),
                needs_calibration=True),
    MethodEntry("wina", "activation sparsity: per token, keep the inputs with the largest |x_i| x ||W[:, i]|| on k_proj"
                        " and gate_proj, |x_i| elsewhere (Chen et al. 2025, as released); weights stay dense", patterns=("unstructured",), scopes=("layer",),
                activation=True),
    MethodEntry("teal", "activation sparsity: per token, keep each layer's inputs with the largest |x_i| (TEAL, "
                        "Liu et al. 2024), WINA's baseline", patterns=("unstructured",), scopes=("layer",),
                activation=True),
)}

SCOPES = ("layer", "global")
# how calibration statistics are gathered (pruning/calibrate.py): name -> one line for the page's help
CALIBRATIONS = {
    "sequential": ("block by block, as the Wanda and SparseGPT papers: each block's statistics come from the "
                   "outputs of the blocks already pruned before it; one block's statistics in memory at a time"),
    "one_pass": ("one forward pass of the dense model gives every layer's statistics at once (faster; holds all "
                 "of them together, e.g. every SparseGPT Hessian)"),
}
# how each target is shared out over the layers (pruning/allocation.py): name -> one line for the page's help
ALLOCATIONS = {
    "uniform": "every layer pruned to the target",
    "owl": ("OWL (Yin et al. 2024): blocks with a larger share of outlier scores |W| x ||X|| (above M x their mean) "
            "keep more weights; block sparsities within target +- lambda, averaging to the target. Reads calibration "
            "activations, whatever the method"),
    "erk": ("ERK (Evci et al. 2020): a layer's density ~ (in + out) / (in x out), so small layers stay denser; "
            "parameter-weighted to the target (the allocation that makes random pruning competitive, Liu et al. 2022)"),
    "greedy": ("activation sparsity (wina / teal) only: TEAL's block-wise greedy allocation (Liu et al. 2024), used by "
               "WINA's release: per block, the input whose extra sparsity costs the block's output least on "
               "calibration text is raised, step by step, until the block skips the target share of its weight reads"),
}
# the allocations an activation-sparsity method (wina / teal) takes -> one line for the page's help
ACTIVATION_ALLOCATIONS = {"uniform": "every layer skips the target share of its inputs",
                          "greedy": ALLOCATIONS["greedy"]}
SCHEDULES = ("oneshot", "gradual")
RECOVERIES = ("none", "finetune", "distill")
# how an N:M mask trains under recovery (pruning/recovery.py): name -> what it does, for the page's help
NM_TRAININGS = {
    "fixed_mask": "fine-tune under the one-shot N:M mask: pruned weights stay zero, the mask never changes",
    "sr_ste": ("SR-STE (Zhou et al. 2021): the dense weights train through an N:M mask recomputed from |W| every "
               "step (straight-through gradient), pruned weights also decay by lambda_W x W; masked exactly N:M at "
               "the end. Needs method magnitude"),
}
SOUP_HELP = ("Sparse model soup (Zimmer et al. 2023): each target's pruned model is fine-tuned this many times under "
             "its one mask, copy i with seed + i (its own data order and dropout), and the copies are averaged; the "
             "soup keeps the mask exactly. Each ingredient, their mean, the best and the soup are reported. 0 or 1: "
             "no soup. Needs the oneshot schedule and finetune or distill; costs k x the training time")
STRUCTURED = ("heads", "neurons")  # physically removed by pruning/structured.py


# ---------------------------------------------------------------- patterns
@dataclass(frozen=True)
class Pattern:
    """A parsed `pattern` string: unstructured, N:M (N kept of every M along a row), block:RxC,
    or a structured unit (heads, neurons)."""

    kind: str  # unstructured | nm | block | heads | neurons
    n: int = 0
    m: int = 0
    rows: int = 0
    cols: int = 0

    @property
    def min_sparsity(self) -> float:
        """The sparsity the pattern itself imposes (N:M: (M-N)/M); targets must reach it."""
        return (self.m - self.n) / self.m if self.kind == "nm" else 0.0


_NM = re.compile(r"^(\d+):(\d+)$")
_BLOCK = re.compile(r"^block:(\d+)x(\d+)$")
MAX_GROUP = 1024  # an N:M group or a block side beyond this is no pattern any kernel uses


def parse_pattern(text: str) -> Pattern:
    """'2:4' -> Pattern('nm', n=2, m=4); 'block:16x16' -> Pattern('block', rows=16, cols=16).
    Raises ValueError with a message for a person."""
    text = text.strip().lower()
    if text in ("unstructured", *STRUCTURED):
        return Pattern(text)
    if match := _NM.match(text):
        n, m = int(match[1]), int(match[2])
        if not 0 < n < m <= MAX_GROUP:
            raise ValueError(f"N:M needs 0 < N < M <= {MAX_GROUP} (N kept of every M weights), got {text}")
        return Pattern("nm", n=n, m=m)
    if match := _BLOCK.match(text):
        r, c = int(match[1]), int(match[2])
        if not (1 <= r <= MAX_GROUP and 1 <= c <= MAX_GROUP):
            raise ValueError(f"block sizes go from 1x1 to {MAX_GROUP}x{MAX_GROUP}, got {text}")
        return Pattern("block", rows=r, cols=c)
    raise ValueError(f"unknown pattern {text!r}: use unstructured, N:M (e.g. 2:4), block:RxC "
                     "(e.g. block:16x16), heads or neurons")


def shape_problem(pattern: Pattern, shape: tuple[int, ...]) -> str | None:
    """Why `pattern` cannot tile a weight of `shape` (out, in), or None when it can."""
    out_f, in_f = shape[0], shape[-1]
    if pattern.kind == "nm" and in_f % pattern.m:
        return f"{pattern.n}:{pattern.m} needs input width divisible by {pattern.m}; a layer has {in_f}"
    if pattern.kind == "block" and (out_f % pattern.rows or in_f % pattern.cols):
        return (f"block:{pattern.rows}x{pattern.cols} does not tile a {out_f}x{in_f} weight "
                f"({out_f} % {pattern.rows} = {out_f % pattern.rows}, {in_f} % {pattern.cols} = "
                f"{in_f % pattern.cols})")
    return None
