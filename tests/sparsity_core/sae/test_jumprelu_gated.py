"""jumprelu and gated by hand (their own parameters: thresholds, the gate), both steering to the
target L0 on a small toy, their SAELens export, and the Matryoshka prefixes as a spec field."""

import pytest
import torch

from sparsity_core.sae import VARIANTS
from sparsity_core.sae.base import StepContext
from sparsity_core.sae.jumprelu import THETA_SPEED
from sparsity_core.sae.trainer import TrainConfig, train_sae


def test_jumprelu_threshold_gradient_by_hand(identity_sae):
    sae = identity_sae("jumprelu", d=2, k=1, l1_coeff=0.5)  # lambda fixed at 0.5 (no steering)
    with torch.no_grad():
        sae.log_theta_slow.zero_()  # theta = [1, 1]
        sae.bandwidth.fill_(0.5)  # band: |z - 1| < 0.25
        sae.theta_ready.fill_(True)
    x = torch.tensor([[1.1, 0.3], [0.9, 2.0]])
    assert torch.equal(sae.encode(x), torch.tensor([[1.1, 0.0], [0.0, 2.0]]))
    out = sae.train_step(x, StepContext(1.0))
    # f = [[1.1, 0], [0, 2]]: L0 1 per token; error x^ - x = [[0, -0.3], [-0.9, 0]] -> mse (0.09 + 0.81) / 2
    assert out.l0.item() == 1.0 and out.parts["l0"].item() == 1.0
    assert out.mse.item() == pytest.approx(0.45)
    assert out.loss.item() == pytest.approx(0.45 + 0.5 * 1.0)
    assert out.counts.tolist() == [1, 1]
    out.loss.backward()
    # latent 0 has two pairs in the band (z = 1.1 active, z = 0.9 just below):
    #   L0 term: lambda * -(1/eps) * 2 pairs / 2 tokens = 0.5 * -2 * 1 = -1 (pushes theta up)
    #   reconstruction: -(theta/eps) * sum of dmse/df over the band = -2 * (0 + 2 * -0.9 / 2) = +1.8
    # latent 1: z = 0.3 is below the band and z = 2.0 above it: no gradient. theta = exp(SPEED p)
    grad = sae.log_theta_slow.grad
    assert grad[0].item() == pytest.approx((1.8 - 1.0) * THETA_SPEED)
    assert grad[1].item() == 0.0


def test_jumprelu_starts_at_the_target_l0_with_a_least_squares_scale():
    torch.manual_seed(0)
    sae = VARIANTS["jumprelu"](8, 32, k=4)
    x = torch.randn(400, 8)
    out = sae.train_step(x, StepContext(1.0))
    # each latent's threshold lets exactly 400 x 4/32 = 50 of the batch's tokens through: L0 = 4
    assert out.l0.item() == pytest.approx(4.0) and out.counts.tolist() == [50] * 32
    with torch.no_grad():
        recon = sae.encode(x) @ sae.W_dec
        # the encoder was rescaled so that no common factor on f reduces the error: <x - recon, recon> = 0
        assert ((x - sae.b_dec - recon) * recon).sum().item() == pytest.approx(0.0, abs=1e-3 * recon.pow(2).sum().item())


def test_gated_paths_losses_and_gradients_by_hand(identity_sae):
    sae = identity_sae("gated", d=2, k=1, l1_coeff=2.0)
    with torch.no_grad():
        sae.r_mag.fill_(torch.log(torch.tensor(2.0)).item())  # W_mag = 2 W_gate: W_gate = I / 2
        sae.b_gate.copy_(torch.tensor([-0.2, 0.1]))
        sae.gate_ready.fill_(True)  # no first-batch start: the gate is set by hand
    x = torch.tensor([[1.0, -0.5]])
    # pi_mag = [1, -0.5]; pi_gate = [1, -0.5] / 2 + [-0.2, 0.1] = [0.3, -0.15]: latent 0 open, f = [1, 0]
    assert torch.allclose(sae.encode(x), torch.tensor([[1.0, 0.0]]))
    out = sae.train_step(x, StepContext(1.0))
    # mse: recon [1, 0] vs [1, -0.5] = 0.25; L1 of relu(pi_gate) = 0.3 (decoder norm 1);
    # aux: relu(pi_gate) @ I = [0.3, 0] vs x -> 0.7^2 + 0.5^2 = 0.74
    assert out.mse.item() == pytest.approx(0.25)
    assert out.parts["l1"].item() == pytest.approx(0.3)
    assert out.parts["aux"].item() == pytest.approx(0.74)
    assert out.loss.item() == pytest.approx(0.25 + 2.0 * 0.3 + 0.74)
    out.loss.backward()
    # W_dec: mse gives f^T 2(x^ - x) = row 0 [0, 1]; L1 gives 2 * 0.3 * W_dec_0 / |W_dec_0| = [0.6, 0];
    # the aux term reaches a frozen copy only (else row 0 would also get 0.3 * 2 * [-0.7, 0.5])
    assert torch.allclose(sae.W_dec.grad, torch.tensor([[0.6, 1.0], [0.0, 0.0]]))
    # b_gate: L1 2 * 1, aux 2 * (0.3 - 1) = -1.4 -> 0.6; closed latent 1: nothing
    assert torch.allclose(sae.b_gate.grad, torch.tensor([0.6, 0.0]))
    # r_mag: d pi_gate / d r = -exp(-r) pi_mag = -0.5 -> 0.6 * -0.5; the magnitude path does not use r
    assert torch.allclose(sae.r_mag.grad, torch.tensor([-0.3, 0.0]))


def _toy(n=12288, d=16, atoms=64, active=4, seed=0):
    """Tokens that are sums of `active` of `atoms` random unit directions, with random sizes."""
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(atoms, d, generator=gen), dim=-1)
    idx = torch.rand(n, atoms, generator=gen).argsort(-1)[:, :active]
    codes = torch.zeros(n, atoms).scatter(1, idx, 0.5 + torch.rand(n, active, generator=gen))
    return codes @ dirs


@pytest.mark.parametrize("name", ["jumprelu", "gated"])
def test_penalty_is_steered_to_the_target_l0(name):
    acts = _toy()
    sae = VARIANTS[name](16, 64, k=4)
    result = train_sae(sae, acts, TrainConfig(tokens=len(acts) * 2, batch=256, lr=4e-3))
    with torch.no_grad():
        l0 = (sae.encode(acts * result.scale) > 0).float().sum(-1).mean().item()
    assert 4 * 0.8 <= l0 <= 4 * 1.2, l0


@pytest.mark.parametrize("name", ["jumprelu", "gated"])
def test_saelens_export_reproduces_a_trained_sae(name, tmp_path):
    from sparsity_core.sae.export import export_saelens, load_saelens_weights

    acts = _toy(n=2048)
    sae = VARIANTS[name](16, 64, k=4)
    result = train_sae(sae, acts, TrainConfig(tokens=2048, batch=256))
    cfg, w = load_saelens_weights(export_saelens(sae, tmp_path / "out", result.scale, model="m", layer=0,
                                                 hook_name="blocks.0.hook_resid_post", context=128, dataset="all"))
    x = acts[:64]
    # SAELens' encode for the architecture, on raw activations (JumpReLUSAE / GatedSAE.encode)
    if name == "jumprelu":
        assert cfg["architecture"] == "jumprelu" and set(w) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}
        pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
        f = torch.relu(pre) * (pre > w["threshold"])
    else:
        assert cfg["architecture"] == "gated" and set(w) == {"W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"}
        gate = (x - w["b_dec"]) @ w["W_enc"] + w["b_gate"] > 0
        f = gate * torch.relu((x - w["b_dec"]) @ (w["W_enc"] * w["r_mag"].exp()) + w["b_mag"])
    with torch.no_grad():
        ours = sae(x * result.scale) / result.scale
        assert (f > 0).sum() > 0  # the check is not vacuous: latents fire
        assert torch.allclose(f @ w["W_dec"] + w["b_dec"], ours, atol=1e-5)


# ---- Matryoshka prefixes: a spec field, validated, reaching the SAE and its saved file
def test_prefixes_are_validated_field_by_field():
    from sparsity_core.specs import SAESpec, SpecError, parse_spec

    base = {"kind": "sae", "model": "minilm-l6", "variant": "matryoshka_batchtopk"}
    assert SAESpec(model="minilm-l6").prefixes == [1 / 16, 1 / 4, 1.0]
    assert parse_spec({**base, "prefixes": [0.125, 0.5, 1]}).prefixes == [0.125, 0.5, 1.0]
    for bad, says in (([0.5, 0.25, 1], "must increase"), ([0.25, 0.5], "last prefix is the whole dictionary"),
                      ([0, 1], "in (0, 1]"), ([0.5, 2], "in (0, 1]"), ([], "at least 1"),
                      ([i / 10 for i in range(1, 11)], "at most 8")):
        with pytest.raises(SpecError) as err:
            parse_spec({**base, "prefixes": bad})
        assert set(err.value.errors) == {"prefixes"} and says in err.value.errors["prefixes"], (bad, err.value.errors)
    with pytest.raises(SpecError) as err:
        parse_spec({**base, "variant": "topk", "prefixes": [0.5, 1]})
    assert "Matryoshka variants" in err.value.errors["prefixes"]


def test_prefixes_reach_the_sae_and_survive_save_and_load(tmp_path):
    from sparsity_core.sae.export import load_sae, save_sae
    from sparsity_core.sae.variants import build_sae
    from sparsity_core.specs import SAESpec

    spec = SAESpec(model="minilm-l6", variant="matryoshka_batchtopk", expansion=8, k=4, prefixes=[0.25, 0.5, 1])
    sae = build_sae(spec, d_in=8)  # 64 latents: prefixes of 16 and 32, then all 64
    assert sae.prefixes() == [16, 32]
    assert build_sae(SAESpec(model="minilm-l6", variant="topk"), d_in=8).d_sae == 64  # others take none
    x = torch.randn(32, 8)
    out = sae.train_step(x, StepContext(1.0))
    assert {"mse_prefix_16", "mse_prefix_32"} <= set(out.parts)
    save_sae(sae, tmp_path / "sae.safetensors", 1.0)
    back, _ = load_sae(tmp_path / "sae.safetensors")
    assert back.prefixes() == [16, 32] and back.prefix_fractions == (0.25, 0.5, 1.0)
