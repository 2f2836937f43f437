"""Matched features between two stored SAE runs, and the readable context strings."""

import torch

from db import repo
from sparsity_core.paths import artifacts_dir
from sparsity_core.sae import VARIANTS
from sparsity_core.sae.compare import matched_features
from sparsity_core.sae.export import save_sae
from sparsity_core.sae.features import _join


def _stored(sae) -> int:
    # a bare row (no preflight: nothing here needs the model or the corpus)
    run_id = repo.create_run(kind="sae", model="minilm-l6", spec={}, spec_version=1, status="running")
    path = artifacts_dir(run_id) / "sae.safetensors"
    save_sae(sae, path, 1.0)
    repo.add_artifact(run_id, "sae", path, "safetensors")
    return run_id


def test_a_permuted_copy_matches_latent_for_latent():
    torch.manual_seed(0)
    a = VARIANTS["topk"](8, 16, k=2)
    b = VARIANTS["relu_l1"](8, 16, k=2)
    perm = torch.randperm(16)
    with torch.no_grad():
        b.W_dec.copy_(a.W_dec[perm] * 3.0)  # same directions, other order and norm
    m = matched_features(_stored(a), _stored(b))
    assert (m["cosine"] > 0.999).all()
    assert torch.equal(perm[torch.tensor(m["latent_b"].to_numpy())], torch.arange(16))


def test_context_strings_read_like_text():
    assert _join(["the", "bog", "##s", "down"]) == "the bogs down"
    assert _join([" the", " bog", "s", " down"]) == " the bogs down"
    assert _join([]) == ""
