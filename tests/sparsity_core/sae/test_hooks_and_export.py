"""Hooks never outlive their block (errors included) and the SAELens export reproduces the SAE."""

import json

import pytest
import torch
from torch import nn

from sparsity_core.sae import VARIANTS
from sparsity_core.sae.activations import hooked, splice
from sparsity_core.sae.export import export_saelens, load_sae, load_saelens_weights, save_sae


def test_hooks_are_removed_after_an_error():
    layer = nn.Linear(3, 3)

    def broken(_m, _i, _o):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with hooked(layer, broken):
            layer(torch.zeros(1, 3))
    assert len(layer._forward_hooks) == 0
    with pytest.raises(ZeroDivisionError):
        with splice(layer, lambda out: out / 0 if False else 1 / 0):
            layer(torch.zeros(1, 3))
    assert len(layer._forward_hooks) == 0


def test_splice_replaces_the_output_only_inside_the_block():
    layer = nn.Linear(2, 2)
    x = torch.ones(1, 2)
    with splice(layer, torch.zeros_like):
        assert torch.equal(layer(x), torch.zeros(1, 2))
    assert not torch.equal(layer(x), torch.zeros(1, 2))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_saelens_export_reads_raw_activations(name, tmp_path):
    torch.manual_seed(0)
    sae = VARIANTS[name](8, 16, k=3)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    sae.threshold.fill_(0.05)
    if hasattr(sae, "thresholds"):
        sae.thresholds.fill_(0.05)
    sae.eval()
    scale = 2.5
    folder = export_saelens(sae, tmp_path / "out", scale, model="m", hook_name="blocks.1.hook_resid_post",
                            layer=1, context=128, dataset="all")
    cfg, w = load_saelens_weights(folder)
    assert {"d_in", "d_sae", "architecture", "dtype", "device", "hook_name"} <= set(cfg)
    assert w["W_enc"].shape == (8, 16) and w["W_dec"].shape == (16, 8)
    # SAELens' forward on raw x equals the lab SAE on scaled x, unscaled
    x = torch.randn(5, 8)
    if cfg["architecture"] == "gated":  # SAELens' GatedSAE.encode: no b_enc, W_mag = exp(r_mag) W_gate
        gate = (x - w["b_dec"]) @ w["W_enc"] + w["b_gate"] > 0
        pre = (x - w["b_dec"]) @ (w["W_enc"] * w["r_mag"].exp()) + w["b_mag"]
    else:
        pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "topk":
        top = pre.topk(cfg["k"], dim=-1)
        f = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    elif cfg["architecture"] == "jumprelu":
        f = pre * (pre > w["threshold"])
    elif cfg["architecture"] == "gated":
        f = torch.relu(pre) * gate
    else:
        f = torch.relu(pre)
    ours = sae(x * scale) / scale
    assert torch.allclose(f @ w["W_dec"] + w["b_dec"], ours, atol=1e-5)
    save_sae(sae, tmp_path / "sae.safetensors", scale)
    back, back_scale = load_sae(tmp_path / "sae.safetensors")
    assert back_scale == scale and torch.allclose(back(x), sae(x))
    json.dumps(cfg)
