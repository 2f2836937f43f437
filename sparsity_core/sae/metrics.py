"""How good an SAE is, measured the way the SAE literature does, on held-out tokens.

- l0: mean active latents per token; fve: 1 - sum||x - x^||^2 / sum||x - mean x||^2;
  nmse: sum||x - x^||^2 / sum||x||^2 (both on the inference path, thresholds included)
- log-density histogram: log10 of each latent's firing frequency (dead latents at the floor)
- downstream: the reconstruction spliced back into the model. LMs: `ce_recovered` =
  (CE zero-ablated - CE with SAE) / (CE zero-ablated - CE clean). Encoders: accuracy of a probe
  refitted on the spliced embeddings and their cosine to the clean ones (zero ablation alongside).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sparsity_core.sae.activations import site_module, splice
from sparsity_core.sae.base import SAE
from sparsity_core.sae.corpus import tokenize_windows

CHUNK = 4096  # tokens encoded at once: (4096, d_sae) floats stay well under 100 MB at 8x expansion
DENSITY_FLOOR = -7.0  # log10 density drawn for latents that never fired (below 1 in 10M tokens)
HIST_BINS = np.linspace(DENSITY_FLOOR, 0.0, 29)  # quarter-decade bins, the usual density plot
PROBE_TRAIN, PROBE_TEST = 600, 300  # snippets: the probe's accuracy moves by ~1-2 points, fast on CPU
CE_WINDOWS = 32  # LM windows for the CE numbers (~4k tokens at 128)


@torch.no_grad()
def reconstruction_metrics(sae: SAE, acts: Tensor, scale: float) -> tuple[dict[str, float], Tensor]:
    """({l0, fve, nmse}, per-latent firing counts) over `acts` (n, d) in model units."""
    device = sae.W_enc.device
    sq_err = total = sq = active = 0.0
    counts = torch.zeros(sae.d_sae, device=device)
    mean = acts[:CHUNK * 8].float().mean(0).to(device) * scale
    for i in range(0, len(acts), CHUNK):
        x = acts[i:i + CHUNK].to(device, torch.float32) * scale
        f = sae.encode(x)
        recon = sae.decode(f)
        sq_err += float((recon - x).pow(2).sum())
        total += float((x - mean).pow(2).sum())
        sq += float(x.pow(2).sum())
        fired = f > 0
        active += float(fired.sum())
        counts += fired.sum(0)
    n = len(acts)
    return {"l0": active / n, "fve": 1.0 - sq_err / total, "nmse": sq_err / sq}, counts.cpu()


def log_density_histogram(counts: Tensor, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, fraction of latents per bin) of log10 firing density."""
    dens = counts.double().numpy() / max(1, n_tokens)
    logd = np.where(dens > 0, np.log10(np.maximum(dens, 1e-30)), DENSITY_FLOOR)
    hist, edges = np.histogram(np.clip(logd, DENSITY_FLOOR, 0.0), bins=HIST_BINS)
    return (edges[:-1] + edges[1:]) / 2, hist / max(1, len(dens))


def sae_replacer(sae: SAE, scale: float):
    def replace(out: Tensor) -> Tensor:
        flat = out.reshape(-1, out.shape[-1]).float() * scale
        return (sae(flat) / scale).reshape(out.shape).to(out.dtype)
    return replace


def zero_replacer(out: Tensor) -> Tensor:
    return torch.zeros_like(out)


@torch.no_grad()
def causal_lm_ce(handle, texts: list[str], context: int) -> float:
    """Mean next-token cross-entropy over the first CE_WINDOWS windows of `texts`."""
    windows = tokenize_windows(handle.tokenizer, texts, context)[:CE_WINDOWS]
    total = count = 0.0
    for i in range(0, len(windows), 8):
        enc = handle.tokenizer.pad({"input_ids": windows[i:i + 8]}, return_tensors="pt").to(handle.device)
        logits = handle.model(**enc).logits[:, :-1].float()
        target = enc["input_ids"][:, 1:]
        keep = enc["attention_mask"][:, 1:].bool()
        ce = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
        total += float(ce)
        count += int(keep.sum())
    return total / max(1, count)


def downstream(handle, sae: SAE, scale: float, layer: int, site: str, texts: list[str], context: int,
               seed: int) -> dict[str, float]:
    """The cost of splicing the SAE into the model (see the module docstring)."""
    module = site_module(handle, layer, site)
    sae.eval()
    if handle.task == "causal_lm":
        clean = causal_lm_ce(handle, texts, context)
        with splice(module, sae_replacer(sae, scale)):
            spliced = causal_lm_ce(handle, texts, context)
        with splice(module, zero_replacer):
            zero = causal_lm_ce(handle, texts, context)
        return {"ce_clean": clean, "ce_sae": spliced, "ce_zero": zero,
                "ce_recovered": (zero - spliced) / (zero - clean) if zero != clean else float("nan")}
    if handle.task == "encoder" and handle.embed is not None:
        from sparsity_core.pruning.evaluate import ProbeAndCosine

        probe = ProbeAndCosine(handle, seed, PROBE_TEST)
        probe.train_texts, probe.y_train = probe.train_texts[:PROBE_TRAIN], probe.y_train[:PROBE_TRAIN]
        clean = probe(handle)
        with splice(module, sae_replacer(sae, scale)):
            spliced = probe(handle)
        with splice(module, zero_replacer):
            zero = probe(handle)
        cos0 = zero["embedding_cosine"]
        return {"probe_accuracy_clean": clean["accuracy"], "probe_accuracy": spliced["accuracy"],
                "probe_accuracy_zero": zero["accuracy"], "embedding_cosine": spliced["embedding_cosine"],
                "embedding_cosine_zero": cos0,
                "cosine_recovered": (spliced["embedding_cosine"] - cos0) / (1.0 - cos0) if cos0 < 1 else float("nan")}
    return {}
