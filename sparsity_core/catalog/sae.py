"""The SAE lab's names: variants, sites and corpora. No torch.

The variant modules (`sae/<variant>.py`) register under these names; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VariantEntry:
    name: str
    description: str
    penalty: bool = False  # a coefficient steered to the target L0 (else k latents are allocated)
    prefixes: bool = False  # nested (Matryoshka) dictionary: takes `SAESpec.prefixes`


VARIANTS: dict[str, VariantEntry] = {e.name: e for e in (
    VariantEntry("relu_l1", "ReLU + L1 weighted by decoder norms (Anthropic)", penalty=True),
    VariantEntry("topk", "k largest latents per token, AuxK revives dead latents (OpenAI)"),
    VariantEntry("batchtopk", "top k x batch over the batch; learned threshold for inference (Bussmann et al.)"),
    VariantEntry("feature_choice", "each latent picks its top m = k x batch / latents tokens; no dead latents (Ayonrinde)"),
    VariantEntry("mutual_choice", "global top k x batch (token, latent) pairs, per-latent thresholds, AuxK (Ayonrinde)"),
    VariantEntry("matryoshka_batchtopk", "BatchTopK with nested prefixes (default 1/16, 1/4, all latents) each "
                                         "trained to reconstruct on its own: general features first (Bussmann et al.)",
                 prefixes=True),
    VariantEntry("flops", "ReLU + FLOPs regulariser: sum_j (mean_t f_tj)^2 (Paria et al.)", penalty=True),
    VariantEntry("jumprelu", "per-latent thresholds z > theta trained by a straight-through estimator, L0 penalty "
                             "steered to k (Rajamanoharan et al.)", penalty=True),
    VariantEntry("gated", "a gate path picks the latents (L1 on it), a magnitude path sizes them "
                          "(Rajamanoharan et al.)", penalty=True),
)}
# Matryoshka prefix sizes as fractions of the dictionary: the choices a page offers and the default
MATRYOSHKA_PREFIX_CHOICES = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
MATRYOSHKA_PREFIXES = (1 / 16, 1 / 4, 1.0)
MAX_PREFIXES = 8  # nested levels: each adds one reconstruction per step

SITES: dict[str, str] = {
    "resid": "residual stream after the block",
    "mlp": "output of the block's MLP",
    "attn": "output of the block's attention",
    "hidden": "a hidden layer's ReLU output (MLP classifiers: digits-mlp)",
}
TEXT_SITES = ("resid", "mlp", "attn")
# MLP classifiers read images, not text: their sites are the hidden layers (widths by layer index,
# checked against the model by a test); their data is the labelled image set they were trained on
HIDDEN_LAYERS: dict[str, tuple[int, ...]] = {"digits-mlp": (256, 128)}
IMAGE_DATA: dict[str, str] = {"digits-mlp": "digits"}

CORPORA = ("rotten_tomatoes", "bbc_news", "tweets")  # `data: all` interleaves the three
DATA = ("all", *CORPORA, "digits")  # digits: images, for the MLP classifiers only
# feature absorption's classes: a word's first letter (sae/absorption.py; the page's bars, no torch)
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# what an L0 sweep (`k_sweep`) stores again for each of its SAEs, as sweep_<key> with x = its L0
SWEEP_KEYS = ("fve", "nmse", "dead_fraction", "eval_dead_fraction", "dense_fraction", "tokens_per_s",
              "ce_recovered", "cosine_recovered", "probe_accuracy", "accuracy_recovered", "absorption_rate",
              "absorption_fraction")
