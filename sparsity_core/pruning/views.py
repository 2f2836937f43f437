"""Small summaries a run stores for its page: weight histograms, a mask crop, generations.

Computed in the job (pages never run models) and written as JSON artifacts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

BINS = 81  # odd, so one bin is centred on zero and the spike of pruned weights is visible
SAMPLE = 200_000  # weights sampled for the histogram: smooth enough, a few ms on a CPU
CROP = (32, 64)  # rows x columns of the mask view: 16 groups of 4 (or 4 of 16) per row
PROMPT = "The government said on Tuesday that"  # news-like, as the evaluation text
NEW_TOKENS = 32


def _sample(weights: dict[str, Tensor], seed: int) -> Tensor:
    flat = torch.cat([w.detach().flatten().float().cpu() for w in weights.values()])
    if flat.numel() <= SAMPLE:
        return flat
    idx = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))[:SAMPLE]
    return flat[idx]


def histogram_edges(dense: dict[str, Tensor], seed: int = 0) -> Tensor:
    """Shared bin edges over [-q, q], q = the 99.9th percentile of |w| in the dense layers."""
    q = float(torch.quantile(_sample(dense, seed).abs(), 0.999)) or 1.0
    return torch.linspace(-q, q, BINS + 1)


def histogram(weights: dict[str, Tensor], edges: Tensor, seed: int = 0) -> dict[str, Any]:
    """Counts of a (seeded) sample of the weights in `edges`, plus the fraction exactly zero."""
    sample = _sample(weights, seed)
    counts = torch.histogram(sample.clamp(edges[0], edges[-1]), edges)[0]
    return {"counts": counts.tolist(), "zero_fraction": float((sample == 0).float().mean())}


def mask_crop(mask: Tensor) -> list[list[int]]:
    """The top-left CROP of an (out, in) mask as 0/1 rows: enough to see N:M groups and blocks."""
    return mask[:CROP[0], :CROP[1]].int().tolist()


@torch.no_grad()
def generate(handle, prompt: str = PROMPT, new_tokens: int = NEW_TOKENS) -> str:
    """Greedy continuation of `prompt` (deterministic, so dense and pruned compare fairly)."""
    enc = handle.tokenizer(prompt, return_tensors="pt").to(handle.device)
    pad = handle.tokenizer.pad_token_id or handle.tokenizer.eos_token_id
    out = handle.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
    return handle.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
