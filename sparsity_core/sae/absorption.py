"""Feature absorption (Chanin et al. 2024, "A is for Absorption"; SAEBench's first-letter task).

    rows, summary, described = absorption(handle, sae, scale, layer=15, site="resid", seed=0, cache=folder)
    # summary: {"absorption_rate": 0.08, "absorption_fraction": 0.14, "absorption_split": 1.6}

A model whose tokens spell words knows each word's first letter: a linear probe on the residual
stream at the word's token reads it. An SAE usually has a latent for "starts with L"; absorption
is when that latent stays silent on some L-words (" lion", " lamp") because a more specific latent
("lion") fires instead and carries the L direction itself. A browser user who trusts the "starts
with L" latent then misses those words. The measurement, as SAEBench's:

1. **Words and prompts.** The single-token lowercase words of the vocabulary (" lion", at least two
   letters), at most WORDS_PER_LETTER per first letter, split train / test per letter (seeded).
   Each word is read in SAEBench's prompt, ICL_EXAMPLES solved examples from the train words then
   the word: "tartan has the first letter: T\n ... lion has the first letter:"; the activation is
   the site's output at the word's token. Cached beside the run's held-out activations.
2. **Ground-truth probe.** A 26-way logistic regression on the train words' activations (features
   standardised for the solver, directions mapped back to the activation's own space). A letter is
   scored when the probe's test F1 is at least MIN_PROBE_F1 and it has at least
   MIN_TRUE_POSITIVES test words it gets right (its "true positives").
3. **Main latents** (feature splitting): the latents ranked by how much more they fire on the
   letter's train words than on the others; a k-sparse probe (logistic regression on the first k)
   grows k while the test F1 rises by more than F1_JUMP, up to MAX_SPLIT. Several main latents
   means the letter is split across them; their F1 (`absorption_latent_f1`) says whether the SAE
   has letter latents at all (a small SAE trained on ordinary text may not: then the rates below
   are small because there is little to absorb, not because nothing is absorbed).
4. **Absorption on each true positive**, with the latents' contributions to the probe direction
   p (unit): c_j = a_j (d_j . p) for activation a_j and decoder row d_j, and the word's own
   projection x . p:
   - *full absorption*: every main latent is silent, and the latent of largest c_j has cosine
     with p of at least FULL_COS and carries at least PROJECTION_SHARE of x . p;
   - *absorption fraction*: how much of the projection other aligned latents (cosine >=
     FRACTION_COS, up to MAX_ABSORBERS of them) carry in place of the main latents, 0 when the main
     latents carry it all or the others less than PROJECTION_SHARE, 1 when the main ones are silent.
   A letter's rate is the count (or the sum of fractions) over its true positives; the summary is
   the mean over scored letters.

The contributions are exact for a linear probe at the SAE's own site, so no gradient attribution
is needed. The thresholds are SAEBench's. Differences from SAEBench, all for a CPU budget: a
bounded word sample, 4 examples instead of 10, and main latents chosen by mean difference (as in
`probing.top_k_mean_diff`) rather than by an L1 probe.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from sparsity_core.catalog.sae import LETTERS
from sparsity_core.sae.activations import cached_tensors, site_module, site_outputs
from sparsity_core.sae.base import SAE
from sparsity_core.sae.metrics import CHUNK, _once

TEMPLATE = " has the first letter:"  # SAEBench's "{word} has the first letter:"
ICL_EXAMPLES = 4
WORDS_PER_LETTER = 80  # 26 x 80 prompts of ~38 tokens: ~70k tokens through the model, once per site
TEST_SHARE = 0.3
PROMPTS_PER_BATCH = 64
WORD_ROWS = 1  # bumped when what the cached word activations hold changes
# SAEBench's thresholds (absorption/eval_config.py, feature_absorption_calculator.py)
MIN_PROBE_F1 = 0.6
MIN_TRUE_POSITIVES = 10
MAX_SPLIT = 10
F1_JUMP = 0.03
FULL_COS = 0.025
FRACTION_COS = 0.1
PROJECTION_SHARE = 0.4
MAX_ABSORBERS = 3
PROBE_C = 0.1  # SmolLM2 block 15, 26 letters: test F1 0.66 / 0.68 / 0.70 / 0.68 at C = 0.01 / 0.03 / 0.1 / 1
EXAMPLES_PER_LETTER = 5  # absorbed words kept per letter for the page, with the latent that took them
SILENT = 1e-8


# ------------------------------------------------------------------ words and prompts
def spelled_words(tokenizer) -> dict[str, list[tuple[str, int]]]:
    """{first letter: [(word, token id), ...]} for the vocabulary's lowercase words of two letters
    or more that " word" tokenises to one token (the word's own token, as it appears mid-sentence)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    candidates = sorted({t.strip() for t in texts if re.fullmatch(r"\s?[a-z]{2,}", t)})
    words: dict[str, list[tuple[str, int]]] = {}
    encoded = tokenizer([" " + w for w in candidates], add_special_tokens=False)["input_ids"]
    for word, ids in zip(candidates, encoded):
        if len(ids) == 1:
            words.setdefault(word[0], []).append((word, ids[0]))
    return words


def split_words(words: dict[str, list[tuple[str, int]]], seed: int,
                per_letter: Optional[int] = None) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, test) words: up to `per_letter` (default WORDS_PER_LETTER) of each letter (a seeded
    sample), TEST_SHARE of them to test, per letter so every letter is in both."""
    per_letter = per_letter or WORDS_PER_LETTER
    train, test = [], []
    for letter in sorted(words):
        chosen = random.Random(f"{seed}-{letter}").sample(words[letter], min(per_letter, len(words[letter])))
        cut = max(1, round(len(chosen) * TEST_SHARE))
        test += chosen[:cut]
        train += chosen[cut:]
    return train, test


def prompt_text(word: str, examples: list[str]) -> str:
    """SAEBench's prompt: the solved examples, one a line, then the word and the template."""
    return "".join(f" {w}{TEMPLATE} {w[0].upper()}\n" for w in examples) + f" {word}{TEMPLATE}"


def examples_for(word: str, pool: list[tuple[str, int]], seed: int) -> list[str]:
    """The ICL_EXAMPLES solved words of `word`'s prompt: a sample of `pool` seeded by the word, never itself."""
    drawn = random.Random(f"{seed}-{word}").sample(pool, ICL_EXAMPLES + 1)
    return [w for w, _ in drawn if w != word][:ICL_EXAMPLES]


def prompts(tokenizer, words: list[tuple[str, int]], pool: list[tuple[str, int]],
            seed: int) -> tuple[list[list[int]], list[int], list[int]]:
    """(token ids, the word's position, which of `words` kept) of every word's prompt, special
    tokens included; the examples come from `pool` (the train words), never the word itself,
    seeded per word. A word whose token does not stand at its place in the tokenised prompt (a
    merge across the space) is left out."""
    texts = [prompt_text(word, examples_for(word, pool, seed)) for word, _ in words]
    tail = len(tokenizer(TEMPLATE, add_special_tokens=False)["input_ids"])
    trail = _trailing_specials(tokenizer)
    ids, positions, kept = [], [], []
    for i, row in enumerate(tokenizer(texts)["input_ids"]):
        pos = len(row) - trail - tail - 1
        if row[pos] == words[i][1]:
            ids.append(row)
            positions.append(pos)
            kept.append(i)
    return ids, positions, kept


def _trailing_specials(tokenizer) -> int:
    """How many special tokens the tokenizer appends after a text (BERT's [SEP]: 1; SmolLM2: 0)."""
    plain = tokenizer(" a", add_special_tokens=False)["input_ids"]
    full = tokenizer(" a")["input_ids"]
    start = next(i for i in range(len(full)) if full[i:i + len(plain)] == plain)
    return len(full) - start - len(plain)


@torch.no_grad()
def word_activations(handle, module, ids: list[list[int]], positions: list[int]) -> Tensor:
    """The site's output at each prompt's word position, (prompts, d) float32; batches padded on the
    right with the attention mask (a causal LM's earlier positions do not see the padding)."""
    pad = handle.tokenizer.pad_token_id if handle.tokenizer.pad_token_id is not None else 0
    rows = []
    for i in range(0, len(ids), PROMPTS_PER_BATCH):
        batch, pos = ids[i:i + PROMPTS_PER_BATCH], positions[i:i + PROMPTS_PER_BATCH]
        width = max(len(b) for b in batch)
        input_ids = torch.tensor([b + [pad] * (width - len(b)) for b in batch])
        mask = torch.tensor([[1] * len(b) + [0] * (width - len(b)) for b in batch])
        enc = {"input_ids": input_ids.to(handle.device), "attention_mask": mask.to(handle.device)}
        out = site_outputs(handle, module, enc).float().cpu()
        rows.append(out[torch.arange(len(batch)), torch.tensor(pos)])
    return torch.cat(rows)


def word_set(handle, layer: int, site: str, seed: int, cache: Optional[Path]) -> dict:
    """The train and test words, their letters (0..25) and activations (cached), and what was read."""
    words = spelled_words(handle.tokenizer)
    train, test = split_words(words, seed)
    module = site_module(handle, layer, site)
    got, facts = {}, {}
    for split, chosen in (("train", train), ("test", test)):
        ids, pos, kept = prompts(handle.tokenizer, chosen, train, seed)
        chosen = [chosen[i] for i in kept]
        key = "\0".join([str(WORD_ROWS), *(" ".join(map(str, p)) + f"@{q}" for p, q in zip(ids, pos))])
        acts, cached = cached_tensors(cache, "absorption-words", key,
                                      lambda ids=ids, pos=pos: {"acts": word_activations(handle, module, ids, pos)})
        got[split] = (acts["acts"], np.array([LETTERS.index(w[0]) for w, _ in chosen]), [w for w, _ in chosen])
        facts.update({f"{split}_words": len(chosen), f"{split}_activations": "cached" if cached else "computed"})
    example = prompt_text(test[0][0], examples_for(test[0][0], train, seed))
    return {**got, "facts": {**facts, "vocabulary_words": sum(len(v) for v in words.values()), "example": example}}


# ------------------------------------------------------------------ probes (numpy / sklearn)
def ground_truth_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
    """(directions (classes, d) in the activation's space indexed by letter, test predictions,
    {letter: test F1}). Standardised for the solver: w . (x - mu) / sd is (w / sd) . x + const."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    probe = LogisticRegression(C=PROBE_C, max_iter=1000, random_state=seed)
    probe.fit((train_x - mu) / sd, train_y)
    directions = np.zeros((len(LETTERS), train_x.shape[1]))
    directions[probe.classes_] = probe.coef_ / sd
    pred = probe.predict((test_x - mu) / sd)
    return directions, pred, {int(c): f1(test_y == c, pred == c) for c in probe.classes_}


def f1(truth: np.ndarray, pred: np.ndarray) -> float:
    tp = float(np.sum(truth & pred))
    return 0.0 if tp == 0 else 2 * tp / (float(np.sum(truth)) + float(np.sum(pred)))


def main_latents(train_z: np.ndarray, train_pos: np.ndarray, test_z: np.ndarray, test_pos: np.ndarray,
                 seed: int = 0) -> tuple[list[int], list[float]]:
    """(the main latents of one letter, the k-sparse probe's test F1 for k = 1, 2, ...): the latents
    ranked by mean activation on the letter's words minus on the others; k grows while the F1
    rises by more than F1_JUMP (SAEBench's feature-split rule), at most MAX_SPLIT."""
    from sklearn.linear_model import LogisticRegression

    order = np.argsort(-(train_z[train_pos].mean(0) - train_z[~train_pos].mean(0)), kind="stable")

    def score(k: int) -> float:
        cols = order[:k]
        probe = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced", random_state=seed)
        probe.fit(train_z[:, cols], train_pos)
        return f1(test_pos, probe.predict(test_z[:, cols]).astype(bool))

    scores = [score(1)]
    while len(scores) < MAX_SPLIT:
        scores.append(score(len(scores) + 1))
        if scores[-1] - scores[-2] <= F1_JUMP:
            scores.pop()
            break
    return [int(j) for j in order[:len(scores)]], scores


def word_absorption(x_proj: Tensor, contrib: Tensor, cos: Tensor, main: list[int],
                    z_main: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(full absorption (words,) bool, absorption fraction (words,), the top contributing latent)
    for one letter's true-positive words. `x_proj`: x . p; `contrib` (words, latents): a_j (d_j . p);
    `cos` (latents,): cosine of d_j with p; `z_main` (words, main): the main latents' activations."""
    top = contrib.argmax(1)
    rows = torch.arange(len(top))
    full = ((z_main <= SILENT).all(1) & (cos[top] >= FULL_COS) & (x_proj > 0)
            & (contrib[rows, top] >= PROJECTION_SHARE * x_proj))
    main_proj = contrib[:, main].sum(1)
    others = contrib.clone()
    others[:, main] = 0
    others[:, cos < FRACTION_COS] = 0
    absorbers = others.clamp(min=0).topk(min(MAX_ABSORBERS, others.shape[1]), dim=1).values.sum(1)
    # main latents carrying it all (>=, with float slack: x . p and the main latents' sum are two roundings)
    counted = (main_proj < x_proj * (1 - 1e-5)) & (absorbers >= PROJECTION_SHARE * x_proj) & (x_proj > 0)
    taken = torch.minimum(absorbers, x_proj - main_proj)
    partial = (taken / (taken + main_proj).clamp(min=SILENT)).clamp(0, 1)
    fraction = torch.where(counted, torch.where(main_proj <= 0, torch.ones_like(partial), partial),
                           torch.zeros_like(partial))
    return full, fraction, top


@torch.no_grad()
def encode(sae: SAE, x: Tensor, scale: float) -> Tensor:
    device = sae.W_enc.device
    return torch.cat([sae.encode(x[i:i + CHUNK].to(device) * scale).cpu() for i in range(0, len(x), CHUNK)])


# ------------------------------------------------------------------ the metric
@torch.no_grad()
def absorption(handle, sae: SAE, scale: float, layer: int, site: str, seed: int, cache: Optional[Path] = None,
               baselines: Optional[dict] = None) -> tuple[list[dict], dict[str, float], dict]:
    """(rows per scored letter, summary, what was evaluated) of `score_letters` on the model's words.
    The words, their activations and the ground-truth probe do not depend on the SAE: with
    `baselines` (one dict per run) the SAEs of an L0 sweep share them."""
    def words_and_probe():
        got = word_set(handle, layer, site, seed, cache)
        (train_x, train_y, _), (test_x, test_y, _) = got["train"], got["test"]
        return got, ground_truth_probe(train_x.numpy(), train_y, test_x.numpy(), test_y, seed)

    got, probe = _once(baselines, ("absorption", layer, site, seed), words_and_probe)
    rows, summary = score_letters(got["train"], got["test"], probe, sae, scale, seed)
    described = {**got["facts"], "letters_scored": len(rows), "probe_f1_mean": round(float(np.mean(list(probe[2].values()))), 4),
                 "template": "{word}" + TEMPLATE, "icl_examples": ICL_EXAMPLES, "words_per_letter": WORDS_PER_LETTER,
                 "thresholds": {"min_probe_f1": MIN_PROBE_F1, "min_true_positives": MIN_TRUE_POSITIVES,
                                "f1_jump": F1_JUMP, "max_split": MAX_SPLIT, "full_cos": FULL_COS,
                                "fraction_cos": FRACTION_COS, "projection_share": PROJECTION_SHARE,
                                "max_absorbers": MAX_ABSORBERS}}
    return rows, summary, described


@torch.no_grad()
def score_letters(train: tuple, test: tuple, probe: tuple, sae: SAE, scale: float,
                  seed: int = 0) -> tuple[list[dict], dict[str, float]]:
    """(rows per scored letter {letter, main, split_f1, probe_f1, true_positives, full, fraction,
    examples}, summary {absorption_rate, absorption_fraction, absorption_split, absorption_latent_f1}).
    `train`, `test`: (activations (words, d), letters 0..25, words); `probe`: `ground_truth_probe`'s
    (directions, test predictions, F1 per letter). `absorption_latent_f1` is the main latents' F1:
    near the probe's, the SAE has letter latents; far below it, there is little to absorb and the
    rates say little."""
    (train_x, train_y, _), (test_x, test_y, test_words) = train, test
    directions, pred, f1s = probe
    sae.eval()
    train_z, test_z = encode(sae, train_x, scale), encode(sae, test_x, scale)
    decoder = sae.W_dec.detach().float().cpu()
    rows = []
    for c, letter in enumerate(LETTERS):
        # Step 1: a letter the probe reads, with enough words it gets right
        right = np.flatnonzero((test_y == c) & (pred == c))
        if f1s.get(c, 0.0) < MIN_PROBE_F1 or len(right) < MIN_TRUE_POSITIVES:
            continue
        # Step 2: its main latents (k-sparse probes on the latents)
        main, scores = main_latents(train_z.numpy(), train_y == c, test_z.numpy(), test_y == c, seed)
        # Step 3: each true positive's projection on the probe, and each latent's share of it
        p = torch.from_numpy(directions[c]).float()
        p = p / p.norm()
        along = decoder @ p
        cos = along / decoder.norm(dim=1).clamp(min=SILENT)
        z = test_z[right]
        full, fraction, top = word_absorption(test_x[right] * scale @ p, z * along, cos, main, z[:, main])
        examples = [[test_words[right[i]], int(top[i])] for i in np.flatnonzero(full.numpy())[:EXAMPLES_PER_LETTER]]
        rows.append({"letter": letter, "main": main, "split_f1": [round(s, 4) for s in scores],
                     "probe_f1": round(f1s[c], 4), "true_positives": len(right), "full": float(full.float().mean()),
                     "fraction": float(fraction.mean()), "examples": examples})
    summary = {} if not rows else {
        "absorption_rate": float(np.mean([r["full"] for r in rows])),
        "absorption_fraction": float(np.mean([r["fraction"] for r in rows])),
        "absorption_split": float(np.mean([len(r["main"]) for r in rows])),
        "absorption_latent_f1": float(np.mean([r["split_f1"][-1] for r in rows]))}
    return rows, summary


def absorption_labels(rows: list[dict]) -> dict[int, list[str]]:
    """{latent: ["first letter L", ...]} for each scored letter's main latents (the browser's labels)."""
    labels: dict[int, list[str]] = {}
    for row in rows:
        for j in row["main"]:
            labels.setdefault(j, []).append(f"first letter {row['letter'].upper()}")
    return labels
