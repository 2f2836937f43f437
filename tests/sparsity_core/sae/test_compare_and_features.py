"""Matched features between two SAEs by decoder cosine, and the readable context strings."""

import numpy as np
import pytest
import torch

from sparsity_core.sae import VARIANTS
from sparsity_core.sae.compare import match_features
from sparsity_core.sae.features import _join


def test_a_permuted_copy_matches_latent_for_latent():
    torch.manual_seed(0)
    a = VARIANTS["topk"](8, 16, k=2)
    b = VARIANTS["relu_l1"](8, 16, k=2)
    perm = torch.randperm(16)
    with torch.no_grad():
        b.W_dec.copy_(a.W_dec[perm] * 3.0)  # same directions, other order and norm
    m = match_features(a.W_dec.detach().numpy(), b.W_dec.detach().numpy(), chunk=5)  # chunks of 5, 5, 5, 1
    assert (m["cosine"] > 0.999).all()
    assert torch.equal(perm[torch.tensor(m["latent_b"].to_numpy())], torch.arange(16))


def test_matches_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]])
    b = np.array([[0.0, 1.0], [3.0, 0.0]])
    m = match_features(a, b)  # norms do not count: (0, 2) is (0, 1); (1, -1) is 45 degrees from (1, 0)
    assert m["latent_b"].tolist() == [1, 0, 1]
    assert np.allclose(m["cosine"], [1.0, 1.0, 2 ** -0.5])


def test_different_widths_cannot_be_matched():
    with pytest.raises(ValueError, match="different widths"):
        match_features(np.zeros((4, 8)), np.zeros((4, 6)))


def test_context_strings_read_like_text():
    assert _join(["the", "bog", "##s", "down"]) == "the bogs down"
    assert _join([" the", " bog", "s", " down"]) == " the bogs down"
    assert _join([]) == ""
