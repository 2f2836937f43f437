"""Feature statistics, computed once after training and stored as parquet for the browser.

`features.parquet`: one row per latent: density, log10 density, mean and max activation, a
histogram of its log10 activations, the tokens it fires on most, and for LMs the tokens its
decoder direction promotes and suppresses through the unembedding (the logit lens).
`contexts.parquet`: the top-activating tokens of each latent with their context (left, token,
right), over held-out text, and the context as tokens with the latent's activation on each
(`tokens`, `acts`, `focus` = the index of the top token), so the browser shades every token; for
image rows (an MLP classifier's hidden layer) the token is the digit's label and `pixels` holds
its 8x8 picture. The browser only reads these files, so browsing is instant.
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
    rows, spans, top_tokens = [], [], []
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
                         "left": _join(strings[lo:pos]), "token": strings[pos], "right": _join(strings[pos + 1:hi + 1]),
                         "tokens": _pieces(strings[lo:hi + 1]), "focus": pos - lo})
            if data.images is not None:
                rows[-1]["pixels"] = data.images[pos].flatten().round().to(torch.int64).tolist()
            spans.append((lo, hi + 1, j))
    for row, acts in zip(rows, context_activations(sae, data, scale, spans)):
        row["acts"] = acts
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
    columns = ["latent", "rank", "activation", "left", "token", "right", "tokens", "acts", "focus"]
    contexts = pd.DataFrame(rows, columns=columns + (["pixels"] if data.images is not None else []))
    return features, contexts


@torch.no_grad()
def context_activations(sae: SAE, data: Activations, scale: float,
                        spans: list[tuple[int, int, int]]) -> list[list[float]]:
    """For each (start, stop, latent): the latent's activation on rows start..stop-1, encoding each
    needed row once (a second pass over at most the held-out tokens)."""
    if not spans:
        return []
    rows = np.concatenate([np.arange(a, b) for a, b, _ in spans])
    latents = np.concatenate([np.full(b - a, j) for a, b, j in spans])
    need = np.unique(rows)
    where = np.searchsorted(need, rows)  # each pair's row among the encoded ones
    values = np.empty(len(rows), dtype=np.float32)
    device = sae.W_enc.device
    for i in range(0, len(need), CHUNK):
        f = sae.encode(data.acts[torch.from_numpy(need[i:i + CHUNK])].to(device, torch.float32) * scale)
        sel = (where >= i) & (where < i + CHUNK)
        values[sel] = f[torch.from_numpy(where[sel] - i), torch.from_numpy(latents[sel])].cpu().numpy()
    bounds = np.cumsum([0] + [b - a for a, b, _ in spans])
    return [values[bounds[k]:bounds[k + 1]].astype(np.float64).round(4).tolist() for k in range(len(spans))]


def logit_lens(W_dec: torch.Tensor, unembed: torch.Tensor, tokenizer, chunk: int = 512) -> tuple[list[str], list[str]]:
    """Tokens (classes, for a classifier's head: then `tokenizer` is None) each decoder direction
    raises / lowers most through the unembedding: the top 10, or a third of the classes."""
    top = min(LOGIT_TOP, max(1, len(unembed) // 3))
    shown = repr if tokenizer is not None else str  # quotes show a token's spaces; class names need none
    promoted, suppressed = [], []
    for i in range(0, len(W_dec), chunk):
        logits = W_dec[i:i + chunk].float() @ unembed.float().t()
        for ids, out in ((logits.topk(top, dim=-1).indices, promoted),
                         ((-logits).topk(top, dim=-1).indices, suppressed)):
            out.extend(" ".join(shown(s) for s in _token_strings(tokenizer, row)) for row in ids.cpu())
    return promoted, suppressed


def _token_strings(tokenizer, ids: torch.Tensor) -> list[str]:
    vocab = {}
    out = []
    for t in ids.tolist():
        if t not in vocab:
            vocab[t] = tokenizer.decode([t]) if tokenizer is not None else str(t)
        out.append(vocab[t])
    return out


def _pieces(tokens: list[str]) -> list[str]:
    """Each token as it reads in running text (what `_join` glues): WordPiece "##" pieces lose the
    marker and attach, other WordPiece tokens get a leading space; BPE strings keep their own."""
    if not tokens:
        return []
    if any(t.startswith("##") for t in tokens) or not any(t[:1].isspace() for t in tokens):
        out = [t[2:] if t.startswith("##") else " " + t for t in tokens]
        out[0] = out[0].lstrip()
        return out
    return list(tokens)


def _join(tokens: list[str]) -> str:
    """Readable text from single-token strings (`_pieces` joined): WordPiece pieces ("##ing") glue
    to the previous token and words get spaces; byte-level BPE strings already carry their own."""
    return "".join(_pieces(tokens))
