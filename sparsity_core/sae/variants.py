"""Every SAE variant, imported so that the registry is complete, and the one constructor from a spec.

    sae = VARIANTS["topk"](d_in=384, d_sae=3072, k=32)
    sae = build_sae(spec, d_in=384)   # the spec's variant, width, k, penalty, seed and options
"""

from __future__ import annotations

from typing import Any

from sparsity_core.sae import (  # noqa: F401
    batchtopk,
    feature_choice,
    flops,
    gated,
    jumprelu,
    matryoshka,
    mutual_choice,
    relu_l1,
    topk,
)
from sparsity_core.sae.base import SAE, VARIANTS, register_variant

__all__ = ["SAE", "VARIANTS", "build_sae", "register_variant", "variant_options"]


def variant_options(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The entries of `fields` that variant `name`'s constructor takes (its `options`, e.g. a
    Matryoshka SAE's `prefixes`); other variants take none."""
    return {key: fields[key] for key in VARIANTS[name].options if fields.get(key) is not None}


def build_sae(spec, d_in: int) -> SAE:
    """A fresh SAE for an `SAESpec` on activations of width `d_in`."""
    options = variant_options(spec.variant, spec.model_dump())
    return VARIANTS[spec.variant](d_in, spec.expansion * d_in, spec.k, spec.l1_coeff, spec.seed, **options)
