"""How good an SAE is, measured the way the SAE literature does, on held-out tokens.

- l0: mean active latents per token; fve: 1 - sum||x - x^||^2 / sum||x - mean x||^2;
  nmse: sum||x - x^||^2 / sum||x||^2 (both on the inference path, thresholds included)
- log-density histogram: log10 of each latent's firing frequency (dead latents at the floor)
- dense / dead on held-out tokens (SAEBench, Karvonen et al. 2025): `dense_fraction`, the share of
  latents firing on more than DENSE_ABOVE (10%) of the tokens, and `eval_dead_fraction`, the share
  that never fired (`dense_and_dead`)
- downstream: the reconstruction spliced back into the model, on a fixed evaluation set of the
  test split (sized by catalog/caps.py, so its cost does not grow with the token budget). LMs:
  `ce_recovered` = (CE zero-ablated - CE with SAE) / (CE zero-ablated - CE clean) over the first
  SAE_CE_WINDOWS windows. Encoders: a probe fitted once on the clean model's embeddings and kept
  fixed (as the LM keeps its unembedding), scored on the spliced embeddings, and their cosine to
  the clean ones; zero ablation alongside. Texts are batched by length, so little is padding.
  MLP classifiers (site `hidden`): accuracy on the whole digits test split, clean / SAE-spliced /
  zeroed, and `accuracy_recovered` = (acc SAE - acc zero) / (acc clean - acc zero).
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from sparsity_core.catalog.caps import SAE_CE_WINDOWS, SAE_PROBE_TEST, SAE_PROBE_TRAIN
from sparsity_core.data import digits, rotten_tomatoes
from sparsity_core.sae.activations import cached_tensors, massive_rows, site_module, splice
from sparsity_core.sae.base import SAE
from sparsity_core.sae.corpus import corpus_texts, iter_windows

CHUNK = 4096  # tokens encoded at once: (4096, d_sae) floats stay well under 100 MB at 8x expansion
DENSITY_FLOOR = -7.0  # log10 density drawn for latents that never fired (below 1 in 10M tokens)
HIST_BINS = np.linspace(DENSITY_FLOOR, 0.0, 29)  # quarter-decade bins, the usual density plot
CE_BATCH = 8  # LM windows per forward: (8, 128, 49k vocab) fp32 logits are 200 MB
DENSE_ABOVE = 0.1  # a latent firing on more than 10% of tokens is dense (SAEBench's cut): rarely one concept


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


def dense_and_dead(counts: Tensor, n_tokens: int) -> dict[str, float]:
    """{dense_fraction, eval_dead_fraction} from per-latent firing counts over `n_tokens` tokens:
    the shares of latents firing on more than DENSE_ABOVE of them, and on none."""
    density = counts.double() / max(1, n_tokens)
    return {"dense_fraction": float((density > DENSE_ABOVE).double().mean()),
            "eval_dead_fraction": float((counts == 0).double().mean())}


def log_density_histogram(counts: Tensor, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, fraction of latents per bin) of log10 firing density."""
    dens = counts.double().numpy() / max(1, n_tokens)
    logd = np.where(dens > 0, np.log10(np.maximum(dens, 1e-30)), DENSITY_FLOOR)
    hist, edges = np.histogram(np.clip(logd, DENSITY_FLOOR, 0.0), bins=HIST_BINS)
    return (edges[:-1] + edges[1:]) / 2, hist / max(1, len(dens))


def sae_replacer(sae: SAE, scale: float, keep_first: bool = False):
    """The site's output -> the SAE's reconstruction of it; with `keep_first` (causal LMs), the
    first position of each (right-padded) window, the attention sink, and the massive activations
    further in stay as they were: the SAE never saw them in training (activations.py leaves them
    out of the capture)."""
    def replace(out: Tensor) -> Tensor:
        flat = out.reshape(-1, out.shape[-1]).float() * scale
        new = (sae(flat) / scale).reshape(out.shape).to(out.dtype)
        return _sink_kept(out, new) if keep_first else new
    return replace


def zero_replacer(out: Tensor, keep_first: bool = False) -> Tensor:
    new = torch.zeros_like(out)
    return _sink_kept(out, new) if keep_first else new


def _sink_kept(old: Tensor, new: Tensor) -> Tensor:
    """`new` with the sink (position 0) and the massive rows of `old` put back (batch, seq, d)."""
    if new.dim() == 3:
        kept = massive_rows(old)
        kept[:, 0] = True
        new[kept] = old[kept]
    return new


@torch.no_grad()
def causal_lm_ce(handle, windows: list[list[int]]) -> float:
    """Mean next-token cross-entropy over `windows` (token ids), CE_BATCH windows per forward."""
    total = count = 0.0
    for i in range(0, len(windows), CE_BATCH):
        enc = handle.tokenizer.pad({"input_ids": windows[i:i + CE_BATCH]}, return_tensors="pt").to(handle.device)
        logits = handle.model(**enc).logits[:, :-1].float()
        target = enc["input_ids"][:, 1:]
        keep = enc["attention_mask"][:, 1:].bool()
        ce = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
        total += float(ce)
        count += int(keep.sum())
    return total / max(1, count)


def by_length(tokenizer, texts: list[str], labels: np.ndarray) -> tuple[list[str], np.ndarray, int]:
    """(texts, labels, real tokens) ordered by token count: a batch of similar lengths pads little
    (Rotten Tomatoes snippets run from 3 to 100+ tokens; in a random order most of a batch is padding)."""
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    return [texts[i] for i in order], labels[order], int(lengths.sum())


def clean_embeddings(handle, train_texts: list[str], test_texts: list[str],
                     cache: Optional[Path]) -> tuple[Tensor, Tensor, bool]:
    """(train, test) embeddings of the unspliced model, and whether they came from `cache` (a folder
    whose key fixes the model and its parent pruning run; the file name fixes the texts)."""
    got, cached = cached_tensors(cache, "downstream-clean", "\0".join([*train_texts, "\1", *test_texts]),
                                 lambda: {"train": handle.embed(train_texts), "test": handle.embed(test_texts)})
    return got["train"], got["test"], cached


def _once(baselines: Optional[dict], key: tuple, compute: Callable[[], Any]) -> Any:
    """`compute()` the first time a run asks for `key`, its stored result after: what does not
    depend on the SAE (clean and zeroed passes, the probe) is computed once for every SAE of an L0
    sweep. `baselines` None: no memo, computed every time."""
    if baselines is None:
        return compute()
    if key not in baselines:
        baselines[key] = compute()
    return baselines[key]


@torch.no_grad()
def probe_and_cosine(handle, module, sae: SAE, scale: float, seed: int, cache: Optional[Path],
                     baselines: Optional[dict] = None) -> tuple[dict[str, float], dict]:
    """Encoders: probe accuracy and embedding cosine, clean / SAE-spliced / zero-ablated (module docstring)."""
    from sklearn.linear_model import LogisticRegression

    def baseline():
        # Step 1: the fixed evaluation set, seeded (train and test snippets are of different movies)
        train, test = rotten_tomatoes("train", seed=seed), rotten_tomatoes("test", seed=seed)
        train_texts, y_train, train_tokens = by_length(handle.tokenizer, train.texts[:SAE_PROBE_TRAIN],
                                                       train.labels[:SAE_PROBE_TRAIN])
        test_texts, y_test, test_tokens = by_length(handle.tokenizer, test.texts[:SAE_PROBE_TEST],
                                                    test.labels[:SAE_PROBE_TEST])
        # Step 2: the clean model's embeddings (the same for every SAE on this model: cached), the
        # probe fitted once on them, and the test embeddings with the site zeroed
        clean_train, clean, cached = clean_embeddings(handle, train_texts, test_texts, cache)
        probe = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(clean_train.numpy(), y_train)
        with splice(module, zero_replacer):
            zero = handle.embed(test_texts)
        return (train_texts, train_tokens, test_texts, y_test, test_tokens, clean, cached, probe, zero)

    (train_texts, train_tokens, test_texts, y_test, test_tokens, clean, cached, probe,
     zero) = _once(baselines, ("encoder", id(module), seed), baseline)
    # Step 3: the test embeddings with the site's output replaced by the SAE's reconstruction
    with splice(module, sae_replacer(sae, scale)):
        spliced = handle.embed(test_texts)
    acc = {name: float(np.mean(probe.predict(emb.numpy()) == y_test))
           for name, emb in (("clean", clean), ("sae", spliced), ("zero", zero))}
    cos = {name: float(torch.nn.functional.cosine_similarity(emb, clean, dim=-1).mean())
           for name, emb in (("sae", spliced), ("zero", zero))}
    values = {"probe_accuracy_clean": acc["clean"], "probe_accuracy": acc["sae"], "probe_accuracy_zero": acc["zero"],
              "embedding_cosine": cos["sae"], "embedding_cosine_zero": cos["zero"],
              "cosine_recovered": (cos["sae"] - cos["zero"]) / (1.0 - cos["zero"]) if cos["zero"] < 1 else float("nan")}
    described = {"dataset": "rotten_tomatoes", "seed": seed, "probe_train_snippets": len(train_texts),
                 "probe_train_split": "train", "probe_train_tokens": train_tokens,
                 "test_snippets": len(test_texts), "test_split": "test", "test_tokens": test_tokens,
                 "probe": "logistic regression (C=1) fitted once on the clean model's embeddings, kept fixed",
                 "forwards": "train once (clean); test three times (clean, SAE, zero)",
                 "clean_embeddings": "cached" if cached else "computed"}
    return values, described


def lm_cross_entropy(handle, module, sae: SAE, scale: float, data: str, context: int,
                     seed: int, baselines: Optional[dict] = None) -> tuple[dict[str, float], dict]:
    """Causal LMs: CE clean / SAE-spliced / zero-ablated on the first SAE_CE_WINDOWS windows of
    the corpus's test split (in capture order, as the held-out activations)."""
    # the first position of each window (the attention sink) is left clean in both: the SAE is
    # neither trained nor judged on it, and zeroing it alone wrecks every later position
    def baseline():
        texts = corpus_texts(data, "test", seed)
        windows = list(islice(iter_windows(handle.tokenizer, texts, context), SAE_CE_WINDOWS))  # tokenises only these
        with splice(module, lambda out: zero_replacer(out, keep_first=True)):
            zero = causal_lm_ce(handle, windows)
        return windows, causal_lm_ce(handle, windows), zero

    windows, clean, zero = _once(baselines, ("lm", id(module), data, context, seed), baseline)
    with splice(module, sae_replacer(sae, scale, keep_first=True)):
        spliced = causal_lm_ce(handle, windows)
    values = {"ce_clean": clean, "ce_sae": spliced, "ce_zero": zero,
              "ce_recovered": (zero - spliced) / (zero - clean) if zero != clean else float("nan")}
    described = {"dataset": data, "split": "test", "seed": seed, "windows": len(windows), "context": context,
                 "tokens": sum(len(w) for w in windows), "scored_tokens": sum(len(w) - 1 for w in windows)}
    return values, described


@torch.no_grad()
def classifier_accuracy(handle, module, sae: SAE, scale: float) -> tuple[dict[str, float], dict]:
    """MLP classifiers: test-split accuracy clean, with the hidden layer replaced by the SAE's
    reconstruction, and zeroed (the images of `image_activations`' test split)."""
    from sparsity_core.sae.activations import IMAGE_SEED

    test = digits("test", seed=IMAGE_SEED)
    x, y = torch.from_numpy(test.images).to(handle.device), torch.from_numpy(test.labels)

    def accuracy() -> float:
        return float((handle.model(x).argmax(-1).cpu() == y).float().mean())

    clean = accuracy()
    with splice(module, sae_replacer(sae, scale)):
        spliced = accuracy()
    with splice(module, zero_replacer):
        zero = accuracy()
    values = {"accuracy_clean": clean, "accuracy_sae": spliced, "accuracy_zero": zero,
              "accuracy_recovered": (spliced - zero) / (clean - zero) if clean != zero else float("nan")}
    return values, {"dataset": "digits", "split": "test", "seed": IMAGE_SEED, "images": len(y)}


def downstream(handle, sae: SAE, scale: float, layer: int, site: str, data: str, context: int,
               seed: int, cache: Optional[Path] = None,
               baselines: Optional[dict] = None) -> tuple[dict[str, float], dict]:
    """(the cost of splicing the SAE into the model, the evaluation set it was measured on), see the
    module docstring; ({}, {}) for a model with no downstream measure here. `cache`: a folder keyed
    by the model (and parent run) where the clean model's encoder embeddings are kept. `baselines`:
    one dict per run, so that the SAEs of an L0 sweep share the clean and zeroed passes (`_once`)."""
    module = site_module(handle, layer, site)
    sae.eval()
    if site == "hidden":
        return classifier_accuracy(handle, module, sae, scale)
    if handle.task == "causal_lm":
        return lm_cross_entropy(handle, module, sae, scale, data, context, seed, baselines)
    if handle.task == "encoder" and handle.embed is not None:
        return probe_and_cosine(handle, module, sae, scale, seed, cache, baselines)
    return {}, {}
