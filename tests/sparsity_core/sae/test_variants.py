"""Each variant's selection checked by hand, the sparse kernels against dense autograd, and shared
tests over every registered variant (a new variant is covered for free)."""

import pytest
import torch

from sparsity_core.sae import VARIANTS
from sparsity_core.sae.base import StepContext, sparse_decode


def test_topk_keeps_exactly_k_largest(identity_sae):
    sae = identity_sae("topk", k=2)
    x = torch.tensor([[0.1, 3.0, -1.0, 2.0], [5.0, 4.0, 3.0, 0.5]])
    f = sae.encode(x)
    assert torch.equal(f, torch.tensor([[0.0, 3.0, 0.0, 2.0], [5.0, 4.0, 0.0, 0.0]]))
    rows, cols = sae.select(x, StepContext())
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (0, 3), (1, 0), (1, 1)]


def test_batchtopk_shares_the_budget_across_tokens(identity_sae):
    sae = identity_sae("batchtopk", k=2)
    x = torch.tensor([[9.0, 8.0, 7.0, 6.0], [0.1, 0.2, 0.0, 0.3]])  # token 0 is the "hard" one
    rows, cols = sae.select(x, StepContext())
    # k x batch = 4 pairs, all from token 0 (its 4 values beat every value of token 1)
    assert rows.tolist() == [0, 0, 0, 0] and sorted(cols.tolist()) == [0, 1, 2, 3]


def test_feature_choice_respects_its_budget(identity_sae):
    sae = identity_sae("feature_choice", k=1)
    x = torch.tensor([[1.0, 0.0, 0.0, 9.0], [2.0, 0.0, 5.0, 8.0], [3.0, 7.0, 0.0, 7.0], [4.0, 6.0, 0.0, 6.0]])
    # budget k x batch = 4 pairs over 4 latents -> each latent picks its top 1 token
    assert sae.capacity(4, StepContext()) == 1
    rows, cols = sae.select(x, StepContext())
    assert sorted(zip(cols.tolist(), rows.tolist())) == [(0, 3), (1, 2), (2, 1), (3, 0)]
    codes = sae.codes(x, StepContext())
    assert codes.vals.numel() <= 4 and int(codes.counts().max()) <= 1


def test_relu_l1_penalty_by_hand(identity_sae):
    sae = identity_sae("relu_l1")
    with torch.no_grad():
        sae.W_dec.mul_(2.0)  # decoder norms 2: the L1 term doubles
    sae.coeff.fill_(0.5)
    x = torch.tensor([[1.0, -1.0, 2.0, 0.0]])
    out = sae.train_step(x, StepContext(sparsity_scale=1.0))
    # f = relu(x) = [1, 0, 2, 0]; l1 = (1 + 2) * 2 = 6; recon = 2 f -> error [1, 1, 2, 0] -> mse 6
    assert out.parts["l1"].item() == pytest.approx(6.0)
    assert out.mse.item() == pytest.approx(6.0)
    assert out.loss.item() == pytest.approx(6.0 + 0.5 * 6.0)
    assert out.l0.item() == 2


def test_flops_penalty_by_hand(identity_sae):
    sae = identity_sae("flops")
    x = torch.tensor([[1.0, 0.0, 2.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    out = sae.train_step(x, StepContext())
    # mean activations per latent [2, 0, 1, 0] -> sum of squares 5
    assert out.parts["flops"].item() == pytest.approx(5.0)


def test_matryoshka_adds_each_prefix_reconstruction_by_hand(identity_sae):
    sae = identity_sae("matryoshka_batchtopk", d=16, k=2)  # prefixes: the first 1 and the first 4 latents
    assert sae.prefixes() == [1, 4]
    x = torch.zeros(1, 16)
    x[0, 0], x[0, 5] = 1.0, 2.0  # batch top 2: latents 0 and 5, recon = x, full mse 0
    out = sae.train_step(x, StepContext(1.0))
    assert out.mse.item() == pytest.approx(0.0)
    # prefixes 1 and 4 both hold latent 0 only: they miss latent 5's 2.0 -> error 2^2 = 4 each
    assert out.parts["mse_prefix_1"].item() == pytest.approx(4.0)
    assert out.parts["mse_prefix_4"].item() == pytest.approx(4.0)
    assert out.loss.item() == pytest.approx(8.0)


@pytest.mark.parametrize("kernels", ["sparse", "sparse, gathered backward", "dense"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_sparse_gradients_match_dense_autograd(name, kernels, monkeypatch):
    monkeypatch.setattr("sparsity_core.sae.base.DENSE_FALLBACK", 0.0 if kernels == "dense" else 1.0)
    if "gathered" in kernels:  # the decoder's backward by pair dot products, in chunks of 5 pairs
        monkeypatch.setattr("sparsity_core.sae.base.GATHER_BELOW", 1.0)
        monkeypatch.setattr("sparsity_core.sae.base.PAIR_CHUNK_FLOATS", 5 * 8)
    torch.manual_seed(0)
    sae = VARIANTS[name](8, 24, k=3)
    x = torch.randn(16, 8)
    ctx = StepContext(1.0)
    codes = sae.codes(x, ctx)
    (sparse_decode(codes, sae.W_dec) + sae.b_dec - x).pow(2).sum(-1).mean().backward()
    # the shared parameters; a variant's own (jumprelu's thresholds, gated's gate) have hand tests
    shared = ("W_enc", "b_enc", "W_dec", "b_dec")
    sparse_grads = {n: p.grad.clone() for n, p in sae.named_parameters() if n in shared}
    # dense reference: the same selection as a mask over dense pre-activations
    sae.zero_grad()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    rows, cols = sae.select(pre.detach(), ctx)
    mask = torch.zeros_like(pre, dtype=torch.bool)
    mask[rows, cols] = True
    f = torch.relu(pre) * mask
    ((f @ sae.W_dec + sae.b_dec - x).pow(2).sum(-1).mean()).backward()
    for n, p in sae.named_parameters():
        if n in shared:
            assert torch.allclose(sparse_grads[n], p.grad, atol=1e-5), n


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_trains_a_step(name):
    torch.manual_seed(0)
    sae = VARIANTS[name](8, 32, k=4)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    x = torch.randn(64, 8)
    out = sae.train_step(x, StepContext(1.0, dead=torch.ones(32, dtype=torch.bool)))
    assert torch.isfinite(out.loss) and out.counts.shape == (32,)
    out.loss.backward()
    sae.before_optimizer_step()
    opt.step()
    sae.after_optimizer_step()
    if sae.unit_norm_decoder:
        assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(32), atol=1e-5)
    sae.eval()
    assert sae(x).shape == x.shape and sae.encode(x).min() >= 0


def test_registry_refuses_duplicates_and_names_the_catalog_does_not_offer():
    from sparsity_core.catalog.sae import VARIANTS as CATALOG
    from sparsity_core.sae.base import SAE, register_variant

    with pytest.raises(ValueError, match="registered already"):
        register_variant(VARIANTS["topk"])

    class Nope(SAE):
        name = "nope"

    with pytest.raises(ValueError, match="not in the catalog"):
        register_variant(Nope)
    assert "nope" not in VARIANTS
    assert VARIANTS["flops"].description == CATALOG["flops"].description and VARIANTS["flops"].penalty


def test_k_larger_than_latents_is_refused():
    with pytest.raises(ValueError, match="between 1 and the number of latents"):
        VARIANTS["topk"](4, 8, k=9)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", list(VARIANTS))
def test_cuda_step_matches_cpu(name):
    torch.manual_seed(0)
    cpu = VARIANTS[name](8, 32, k=4)
    gpu = VARIANTS[name](8, 32, k=4).to("cuda")
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(64, 8)
    a = cpu.train_step(x, StepContext(1.0))
    b = gpu.train_step(x.to("cuda"), StepContext(1.0))
    a.loss.backward()
    b.loss.backward()
    assert torch.allclose(a.loss, b.loss.cpu(), rtol=1e-4)
    assert torch.allclose(cpu.W_enc.grad, gpu.W_enc.grad.cpu(), atol=1e-4)
