"""The feature browser's builders: every context token shaded by its own activation, image runs as
8x8 pictures, hostile tokens escaped, and the per-token activations computed from the SAE itself."""

import pandas as pd
import torch

from sparsity_core.reports import browser
from sparsity_core.sae.activations import Activations
from sparsity_core.sae.features import _pieces, context_activations
from sparsity_core.sae.relu_l1 import ReluL1SAE


def test_every_context_token_gets_its_own_shade_and_value():
    contexts = pd.DataFrame([{"latent": 3, "rank": 0, "activation": 2.0, "left": "a", "token": "b", "right": "c",
                              "tokens": ["a", " b", " c"], "acts": [0.0, 2.0, 1.0], "focus": 1}])
    page = browser.contexts_html(contexts)
    assert "background:transparent" in page  # 'a' does not fire: unshaded
    assert "rgba(255,140,0,1.00)" in page  # 'b' is the top: full shade
    assert "rgba(255,140,0,0.57)" in page  # 'c' at half: 0.15 + 0.85 * 0.5 = 0.575, printed 0.57
    assert 'title="activation 1 (50% of' in page and "font-weight:bold'> b</span>" in page


def test_old_runs_without_per_token_activations_shade_the_firing_token():
    contexts = pd.DataFrame([{"latent": 3, "rank": 0, "activation": 2.0, "left": "a", "token": "b", "right": "c"}])
    assert browser.contexts_html(contexts).count("rgba(255,140,0,1.00)") == 1


def test_hostile_tokens_are_text():
    evil = "<img src=x onerror=alert(1)>"
    contexts = pd.DataFrame([{"latent": 0, "rank": 0, "activation": 1.0, "left": evil, "token": evil, "right": evil,
                              "tokens": [evil, evil], "acts": [1.0, 0.5], "focus": 0}])
    page = browser.contexts_html(contexts)
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_image_contexts_are_pictures_with_label_and_activation():
    pixels = [0] * 63 + [16]  # a white picture with one black pixel, bottom right
    contexts = pd.DataFrame([{"latent": 1, "rank": 0, "activation": 3.5, "left": "", "token": "7", "right": "",
                              "tokens": ["7"], "acts": [3.5], "focus": 0, "pixels": pixels}])
    page = browser.contexts_html(contexts)
    assert page.count("rgb(255,255,255)") == 63 and page.count("rgb(0,0,0)") == 1
    assert "7 · 3.50" in page
    assert browser.default_max_density(contexts) == browser.IMAGE_MAX_DENSITY
    assert browser.default_max_density(contexts.drop(columns="pixels")) == browser.MAX_DENSITY


def test_context_activations_are_the_sae_encoding_of_each_row():
    sae = ReluL1SAE(4, 6, 2, 1.0, 0)
    acts = torch.randn(10, 4, generator=torch.Generator().manual_seed(0)).half()
    data = Activations(acts, torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long))
    spans = [(2, 5, 1), (0, 2, 4), (8, 10, 1)]
    got = context_activations(sae, data, 2.0, spans)
    with torch.no_grad():
        f = sae.encode(acts.float() * 2.0)
    for (a, b, j), values in zip(spans, got):
        assert values == [round(float(v), 4) for v in f[a:b, j]]


def test_pieces_read_like_the_joined_text():
    assert _pieces(["the", "bog", "##s", "down"]) == ["the", " bog", "s", " down"]
    assert _pieces([" the", " bog", "s"]) == [" the", " bog", "s"]
