"""Feature statistics, computed once after training and stored as parquet for the browser.

`features.parquet`: one row per latent: density, log10 density, mean and max activation, a
histogram of its log10 activations, the tokens it fires on most, and for LMs the tokens its
decoder direction promotes and suppresses through the unembedding (the logit lens).
`contexts.parquet`: the top-activating tokens of each latent with their context (left, token,
right), over held-out text. The browser only reads these files, so browsing is instant.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import torch

from sparsity_core.sae.activations import Activations
from sparsity_core.sae.base import SAE
from sparsity_core.sae.metrics import CHUNK

TOP = 12  # contexts kept per latent: enough to read a pattern, small enough for 10^5 latents
LEFT, RIGHT = 10, 4  # context tokens shown around the highlighted one
ACT_BINS = np.linspace(-2.0, 1.5, 36)  # log10 activation bins (normalised units, roughly 0.01 .. 30)
LOGIT_TOP = 10


@torch.no_grad()
def feature_tables(sae: SAE, data: Activations, scale: float, tokenizer, unembed=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, contexts) frames; `unembed` is (vocab, d) for LMs, else None."""
    device = sae.W_enc.device
    m, n = sae.d_sae, len(data)
    # Step 1: one pass over the tokens: counts, sums, log-activation histograms, running top-k
    counts = torch.zeros(m, device=device)
    sums = torch.zeros(m, device=device)
    hist = torch.zeros(m * (len(ACT_BINS) - 1), device=device)
    top_v = torch.zeros(TOP, m, device=device)
    top_i = torch.zeros(TOP, m, dtype=torch.long, device=device)
    edges = torch.tensor(ACT_BINS, device=device, dtype=torch.float32)
    for i in range(0, n, CHUNK):
        f = sae.encode(data.acts[i:i + CHUNK].to(device, torch.float32) * scale)
        counts += (f > 0).sum(0)
        sums += f.sum(0)
        r, c = (f > 0).nonzero(as_tuple=True)
        b = (torch.bucketize(f[r, c].log10(), edges) - 1).clamp(0, len(ACT_BINS) - 2)
        hist += torch.bincount(c * (len(ACT_BINS) - 1) + b, minlength=hist.numel()).float()
        both_v = torch.cat([top_v, f])
        both_i = torch.cat([top_i, torch.arange(i, i + len(f), device=device)[:, None].expand_as(f)])
        best = both_v.topk(TOP, dim=0)
        top_v, top_i = best.values, both_i.gather(0, best.indices)
    # Step 2: contexts of the top activations (never crossing a window)
    strings = _token_strings(tokenizer, data.token_ids)
    windows = data.window.numpy()
    rows, top_tokens = [], []
    tv, ti = top_v.cpu().numpy(), top_i.cpu().numpy()
    for j in range(m):
        fired = [(float(tv[r, j]), int(ti[r, j])) for r in range(TOP) if tv[r, j] > 0]
        top_tokens.append(", ".join(t for t, _ in Counter(strings[p] for _, p in fired).most_common(5)))
        for rank, (value, pos) in enumerate(fired):
            lo, hi = pos, pos
            while lo > 0 and pos - lo < LEFT and windows[lo - 1] == windows[pos]:
                lo -= 1
            while hi + 1 < n and hi - pos < RIGHT and windows[hi + 1] == windows[pos]:
                hi += 1
            rows.append({"latent": j, "rank": rank, "activation": value,
                         "left": _join(strings[lo:pos]), "token": strings[pos], "right": _join(strings[pos + 1:hi + 1])})
    # Step 3: the per-latent table
    density = (counts / n).cpu().numpy()
    features = pd.DataFrame({
        "latent": np.arange(m), "density": density,
        "log10_density": np.where(density > 0, np.log10(np.maximum(density, 1e-30)), np.nan),
        "mean_activation": (sums / counts.clamp(min=1)).cpu().numpy(),
        "max_activation": tv[0], "top_tokens": top_tokens,
        "act_hist": list(hist.view(m, -1).cpu().numpy().astype(np.int64)),
    })
    if unembed is not None:
        promoted, suppressed = logit_lens(sae.W_dec.detach(), unembed.to(device), tokenizer)
        features["promoted"], features["suppressed"] = promoted, suppressed
    contexts = pd.DataFrame(rows, columns=["latent", "rank", "activation", "left", "token", "right"])
    return features, contexts


def logit_lens(W_dec: torch.Tensor, unembed: torch.Tensor, tokenizer, chunk: int = 512) -> tuple[list[str], list[str]]:
    """Tokens each decoder direction raises / lowers most through the unembedding."""
    promoted, suppressed = [], []
    for i in range(0, len(W_dec), chunk):
        logits = W_dec[i:i + chunk].float() @ unembed.float().t()
        for ids, out in ((logits.topk(LOGIT_TOP, dim=-1).indices, promoted),
                         ((-logits).topk(LOGIT_TOP, dim=-1).indices, suppressed)):
            out.extend(" ".join(repr(s) for s in _token_strings(tokenizer, row)) for row in ids.cpu())
    return promoted, suppressed


def _token_strings(tokenizer, ids: torch.Tensor) -> list[str]:
    vocab = {}
    out = []
    for t in ids.tolist():
        if t not in vocab:
            vocab[t] = tokenizer.decode([t]) if tokenizer is not None else str(t)
        out.append(vocab[t])
    return out


def _join(tokens: list[str]) -> str:
    """Readable text from single-token strings: WordPiece pieces ("##ing") glue to the previous
    token and words get spaces; byte-level BPE strings already carry their own spaces."""
    if not tokens:
        return ""
    if any(t.startswith("##") for t in tokens) or not any(t[:1].isspace() for t in tokens):
        return "".join(t[2:] if t.startswith("##") else " " + t for t in tokens).strip()
    return "".join(tokens)
