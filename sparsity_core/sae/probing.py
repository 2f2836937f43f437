"""Sparse probing (SAEBench, Karvonen et al. 2025; Gurnee et al. 2023): can k latents tell the classes apart?

    rows, described = sparse_probing(handle, sae, scale, layer=3, site="resid", context=128, seed=0,
                                     cache=folder)
    # rows: [{"task": "bbc_news", "source": "sae", "k": 5, "accuracy": 0.93}, ...]

For each labelled text corpus (BBC News topic, 5 classes; Rotten Tomatoes fresh / rotten; tweet
sentiment, 3 classes) and each document: the site's activations on its tokens (special tokens
and padding left out, as SAEBench masks BOS / EOS / PAD), mean-pooled over the document, raw and
through the SAE (encode every token, then pool). Then SAEBench's k-sparse probe:

1. a binary task: each class against the rest for a multiclass corpus, the one class against the
   other for a binary one, balanced (as many negatives, sampled across the other classes, as
   positives), on train and test documents alike, so chance is always 50%;
2. the k dimensions whose class means differ most, |mean(positive) - mean(negative)|, on the
   train documents (`top_k_mean_diff`);
3. a logistic regression (L2, C = 1, sklearn's defaults, max_iter 1000) on those k dimensions of
   the train documents, accuracy on the test documents; averaged over a corpus's binary tasks.

Sources: `sae` (the latents), `raw` (the same probe on the activation's own dimensions) and `pca`
(a probe on the first k principal components of the pooled train activations, no selection:
the k directions of largest variance, found without labels). k = 1, 2, 5, 20. The SAE beating
`raw` at small k is what sparse probing is meant to show: its latents name concepts alone.

Documents are bounded (PROBE_TRAIN_DOCS / PROBE_TEST_DOCS, the first of each seeded split, cut at
the run's context) and recorded. The site's per-token activations are cached next to the run's
held-out activations (same model, layer, site and parent), so a second SAE on the same site pays
only for its own encoding. An MLP classifier's hidden layer (`probe_images`): one row per image,
the ten digits each against the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from sparsity_core.data import load_dataset
from sparsity_core.sae.activations import (
    Activations,
    cached_tensors,
    leaves_out_first,
    massive_rows,
    site_module,
    site_outputs,
)
from sparsity_core.sae.base import SAE
from sparsity_core.sae.metrics import CHUNK

PROBE_TASKS = ("bbc_news", "rotten_tomatoes", "tweets")
PROBE_KS = (1, 2, 5, 20)  # SAEBench's 1, 2, 5, and 20 as the point where most probes saturate
SOURCES = ("sae", "raw", "pca")
# documents per split: 600 + 300 per corpus is ~170k tokens at context 128 (BBC articles fill the
# window, snippets and tweets ~30 tokens); a balanced test task of ~300 docs reads accuracy +-3 points
PROBE_TRAIN_DOCS = 600
PROBE_TEST_DOCS = 300
DOCS_PER_BATCH = 32
DOC_ROWS = 3  # bumped when which rows of a document are pooled changes (2: no causal-LM sink; 3: nor massive rows)
PROBE_MAX_ITER = 1000  # SAEBench's: sklearn's 100 does not converge on unscaled latents


# ------------------------------------------------------------------ the probe itself (numpy only)
def top_k_mean_diff(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k columns of `x` (n, d) whose means over y == 1 and y == 0 rows differ most,
    largest difference first (ties: the lower index first)."""
    diff = np.abs(x[y == 1].mean(0) - x[y == 0].mean(0))
    return np.argsort(-diff, kind="stable")[:k]


def balanced_task(labels: np.ndarray, positive: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, 0/1 targets) of one balanced binary task: `positive` against the other
    classes, n of each where n = min(positives, negatives); the negatives are spread evenly over
    the other classes as far as their sizes allow (SAEBench's `prepare_probe_data`)."""
    pos = np.flatnonzero(labels == positive)
    others = [np.flatnonzero(labels == c) for c in np.unique(labels) if c != positive]
    n = min(len(pos), sum(len(o) for o in others))
    per = -(-n // max(1, len(others)))  # ceil: each other class gives up to this many
    neg = np.concatenate([rng.permutation(o)[:per] for o in others]) if others else np.array([], dtype=np.int64)
    if len(neg) < n:  # a small class gave all it had: top up from the rest of the negatives
        rest = np.setdiff1d(np.concatenate(others), neg)
        neg = np.concatenate([neg, rng.permutation(rest)[:n - len(neg)]])
    neg = rng.permutation(neg)[:n]
    pos = rng.permutation(pos)[:n]
    idx = np.concatenate([pos, neg])
    target = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    order = rng.permutation(len(idx))
    return idx[order], target[order]


def binary_tasks(labels: np.ndarray) -> list[int]:
    """The positive class of each binary task: every class (one against the rest) for three or more
    classes, class 1 alone for two (its task and class 0's are the same task)."""
    classes = [int(c) for c in np.unique(labels)]
    return classes[1:] if len(classes) == 2 else classes


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   columns: np.ndarray, seed: int = 0) -> float:
    """Test accuracy of a logistic regression (C = 1) fitted on `columns` of the train rows."""
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(C=1.0, max_iter=PROBE_MAX_ITER, random_state=seed)
    probe.fit(train_x[:, columns], train_y)
    return float(np.mean(probe.predict(test_x[:, columns]) == test_y))


def principal_components(train: np.ndarray, test: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Both sets projected on the first n principal components of `train` (centred on its mean)."""
    mean = train.mean(0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    basis = vt[:n].T
    return (train - mean) @ basis, (test - mean) @ basis


def k_sparse_scores(features: dict[str, tuple[np.ndarray, np.ndarray]], train_labels: np.ndarray,
                    test_labels: np.ndarray, ks=PROBE_KS, seed: int = 0) -> dict[tuple[str, int], float]:
    """{(source, k): mean test accuracy over the binary tasks}. `features`: source -> (train, test)
    pooled rows; `pca` rows are principal components in order (no selection), the others are
    selected by `top_k_mean_diff` on each task's train rows."""
    scores: dict[tuple[str, int], list[float]] = {}
    for positive in binary_tasks(train_labels):
        # Step 1: one balanced task, the same rows for every source and k
        rng = np.random.default_rng([seed, positive])
        tr, ytr = balanced_task(train_labels, positive, rng)
        te, yte = balanced_task(test_labels, positive, rng)
        for source, (train_x, test_x) in features.items():
            for k in ks:
                k_eff = min(k, train_x.shape[1])
                # Step 2: the k dimensions (the first k components for PCA), Step 3: the probe
                cols = np.arange(k_eff) if source == "pca" else top_k_mean_diff(train_x[tr], ytr, k_eff)
                scores.setdefault((source, k), []).append(
                    probe_accuracy(train_x[tr], ytr, test_x[te], yte, cols, seed))
    return {key: float(np.mean(v)) for key, v in scores.items()}


LATENTS_PER_CLASS = 3  # the latents the browser labels with a class: the first of its k-sparse probe


def class_latents(train_sae: np.ndarray, labels: np.ndarray, names) -> dict[str, list[int]]:
    """{class name: the LATENTS_PER_CLASS latents a k-sparse probe for it reads first}: largest
    mean difference between the class's train rows and the rest (`top_k_mean_diff`), the latents
    that fire more on the class only (a latent that fires less says "not this class")."""
    out = {}
    for c in np.unique(labels):
        pos = labels == c
        diff = train_sae[pos].mean(0) - train_sae[~pos].mean(0)
        out[str(names[int(c)])] = [int(j) for j in np.argsort(-diff, kind="stable")[:LATENTS_PER_CLASS] if diff[j] > 0]
    return out


def probe_labels(described: dict) -> dict[int, list[str]]:
    """{latent: ["sport (bbc_news)", ...]} from a probing run's `class_latents`, for the browser."""
    labels: dict[int, list[str]] = {}
    for task, facts in described["tasks"].items():
        for name, latents in facts.get("latents", {}).items():
            for j in latents:
                labels.setdefault(j, []).append(f"{name} ({task})")
    return labels


# ------------------------------------------------------------------ pooled activations
@torch.no_grad()
def doc_activations(handle, module, texts: list[str], context: int) -> tuple[Tensor, Tensor]:
    """(activations (tokens, d) float16, the document of each row (tokens,)) of the site on every
    text, cut at `context` tokens, special tokens, padding and a causal LM's first position left out (a text of special tokens
    only keeps them, so no document is empty)."""
    tok, sink = handle.tokenizer, leaves_out_first(handle)
    if tok.pad_token is None:  # Llama-style tokenizers ship without one
        tok.pad_token = tok.eos_token
    lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=context)["input_ids"]]
    order = np.argsort(lengths, kind="stable")  # similar lengths per batch: little padding
    acts, docs = [], []
    for i in range(0, len(order), DOCS_PER_BATCH):
        ids = order[i:i + DOCS_PER_BATCH]
        enc = tok([texts[j] for j in ids], truncation=True, max_length=context, padding=True,
                  return_tensors="pt", return_special_tokens_mask=True)
        special = enc.pop("special_tokens_mask").bool()
        real = enc["attention_mask"].bool()
        keep = real & ~special
        out = site_outputs(handle, module, enc.to(handle.device)).cpu()
        if sink:  # a causal LM's first position and massive rows: left out as in the capture (activations.py)
            keep[:, 0] = False
            keep &= ~massive_rows(out, keep)
        keep |= real & ~keep.any(1, keepdim=True)  # nothing else left: keep those
        acts.append(out[keep].to(torch.float16))
        docs.append(torch.from_numpy(ids)[:, None].expand_as(keep)[keep])
    doc = torch.cat(docs)
    back = torch.argsort(doc, stable=True)  # rows in document order
    return torch.cat(acts)[back].contiguous(), doc[back].contiguous()


def cached_doc_activations(handle, module, texts: list[str], context: int,
                           cache: Optional[Path]) -> tuple[Tensor, Tensor, bool]:
    """`doc_activations`, kept in `cache` (a folder keyed by model, layer, site and parent; the file
    name fixes the texts and the context), and whether they came from there."""
    def compute():
        acts, doc = doc_activations(handle, module, texts, context)
        return {"acts": acts, "doc": doc}

    got, cached = cached_tensors(cache, "probe-docs", "\0".join([str(DOC_ROWS), str(context), *texts]), compute)
    return got["acts"], got["doc"], cached


@torch.no_grad()
def pool(sae: Optional[SAE], acts: Tensor, doc: Tensor, n_docs: int, scale: float = 1.0) -> np.ndarray:
    """Mean over each document's rows of the activations (`sae` None) or of the SAE's latents."""
    device = sae.W_enc.device if sae is not None else torch.device("cpu")
    width = sae.d_sae if sae is not None else acts.shape[1]
    sums = torch.zeros(n_docs, width, device=device)
    for i in range(0, len(acts), CHUNK):
        x = acts[i:i + CHUNK].to(device, torch.float32)
        rows = sae.encode(x * scale) if sae is not None else x
        sums.index_add_(0, doc[i:i + CHUNK].to(device), rows)
    counts = torch.bincount(doc, minlength=n_docs).clamp(min=1).to(device)
    return (sums / counts[:, None]).cpu().numpy()


def _sources(sae: SAE, scale: float, train: tuple[Tensor, Tensor, int], test: tuple[Tensor, Tensor, int],
             ks) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raw = pool(None, *train), pool(None, *test)
    return {"sae": (pool(sae, *train, scale), pool(sae, *test, scale)), "raw": raw,
            "pca": principal_components(*raw, min(max(ks), raw[0].shape[1], len(raw[0])))}


def sparse_probing(handle, sae: SAE, scale: float, layer: int, site: str, context: int, seed: int,
                   cache: Optional[Path] = None, ks=PROBE_KS, tasks=PROBE_TASKS,
                   n_train: int = PROBE_TRAIN_DOCS, n_test: int = PROBE_TEST_DOCS) -> tuple[list[dict], dict]:
    """(rows {task, source, k, accuracy}, what was evaluated) for the text corpora (module docstring)."""
    module = site_module(handle, layer, site)
    sae.eval()
    rows, described = [], {}
    for task in tasks:
        # Step 1: the first documents of each seeded split, their site activations (cached)
        got, labels, facts = {}, {}, {}
        for split, n in (("train", n_train), ("test", n_test)):
            data = load_dataset(task, split, seed).subset(n)
            acts, doc, cached = cached_doc_activations(handle, module, list(data.texts), context, cache)
            got[split], labels[split] = (acts, doc, len(data)), data.labels
            facts.update({f"{split}_docs": len(data), f"{split}_tokens": len(acts),
                          f"{split}_activations": "cached" if cached else "computed"})
        # Step 2: pooled per document (SAE latents, raw, principal components), Step 3: the probes
        sources = _sources(sae, scale, got["train"], got["test"], ks)
        scores = k_sparse_scores(sources, labels["train"], labels["test"], ks, seed)
        rows += [{"task": task, "source": s, "k": k, "accuracy": v} for (s, k), v in scores.items()]
        described[task] = {**facts, "classes": len(data.classes), "binary_tasks": len(binary_tasks(labels["train"])),
                           "latents": class_latents(sources["sae"][0], labels["train"], data.classes)}
    return rows, {"tasks": described, "ks": list(ks), "context": context, "seed": seed, "pooling": POOLING,
                  "probe": PROBE_WORDS}


def probe_images(sae: SAE, scale: float, train: Activations, test: Activations, ks=PROBE_KS, seed: int = 0,
                 n_train: int = 1000, n_test: int = 500) -> tuple[list[dict], dict]:
    """The same probes on an MLP classifier's hidden layer: one row per image (no pooling), its
    digit the label (`token_ids` of image activations), each digit against the rest."""
    sae.eval()
    tr = (train.acts[:n_train], torch.arange(min(n_train, len(train))), min(n_train, len(train)))
    te = (test.acts[:n_test], torch.arange(min(n_test, len(test))), min(n_test, len(test)))
    sources = _sources(sae, scale, tr, te, ks)
    digit = train.token_ids[:n_train].numpy()
    scores = k_sparse_scores(sources, digit, test.token_ids[:n_test].numpy(), ks, seed)
    rows = [{"task": "digits", "source": s, "k": k, "accuracy": v} for (s, k), v in scores.items()]
    latents = class_latents(sources["sae"][0], digit, [f"digit {c}" for c in range(10)])
    return rows, {"tasks": {"digits": {"train_docs": tr[2], "test_docs": te[2], "classes": 10, "binary_tasks": 10,
                                       "latents": latents}},
                  "ks": list(ks), "seed": seed, "pooling": "none: one row per image", "probe": PROBE_WORDS}


POOLING = ("mean over each document's tokens, special tokens, padding and a causal LM's first position and massive "
           "activations left out")
PROBE_WORDS = ("SAEBench k-sparse probe: balanced binary tasks (one class vs the rest), the k dimensions with the "
               "largest class-mean difference on train, logistic regression C=1; pca: the first k components")
