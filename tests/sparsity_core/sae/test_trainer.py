"""The trainer on synthetic data made of known sparse directions: the loss falls and the decoder
recovers the directions."""

import pytest
import torch

from sparsity_core.sae import VARIANTS
from sparsity_core.sae.trainer import TrainConfig, lr_factor, norm_scale, train_sae


def _synthetic(n=60_000, d=24, n_dirs=48, active=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(n_dirs, d, generator=gen), dim=-1)
    idx = torch.stack([torch.randperm(n_dirs, generator=gen)[:active] for _ in range(n)])
    vals = 1.0 + torch.rand(n, active, generator=gen)
    acts = torch.nn.functional.embedding_bag(idx, dirs, per_sample_weights=vals, mode="sum")
    return acts, dirs


def test_topk_recovers_known_sparse_directions():
    acts, dirs = _synthetic()
    sae = VARIANTS["topk"](24, 96, k=2, seed=0)
    logged = []
    result = train_sae(sae, acts, TrainConfig(tokens=120_000, batch=1024, lr=4e-3, log_every=30),
                       log=lambda seen, stats: logged.append(stats))
    assert logged[-1]["mse"] < 0.2 * logged[0]["mse"]  # the loss fell
    assert logged[-1]["fve"] > 0.9
    cos = torch.nn.functional.normalize(sae.W_dec.detach(), dim=-1) @ dirs.t()
    recovered = (cos.max(dim=0).values > 0.9).float().mean()
    assert recovered >= 0.9, f"only {recovered:.0%} of the true directions found"
    assert result.tokens == 117 * 1024 and result.scale > 0


def test_norm_scale_makes_mean_squared_norm_d():
    acts = torch.randn(1000, 16) * 7
    x = acts * norm_scale(acts)
    assert abs(float(x.pow(2).sum(-1).mean()) - 16) < 0.5


def test_lr_schedule_warms_up_and_decays():
    steps = 100
    assert lr_factor(0, steps) == 0.2  # 5 warm-up steps: 1/5
    assert lr_factor(50, steps) == 1.0
    assert lr_factor(90, steps) == 0.5  # halfway through the last 20%
    assert lr_factor(99, steps) == 0.05


def test_penalty_is_steered_toward_k():
    acts, _ = _synthetic(n=20_000)
    sae = VARIANTS["relu_l1"](24, 96, k=4, seed=0)
    logged = []
    train_sae(sae, acts, TrainConfig(tokens=60_000, batch=512, lr=3e-3, log_every=10),
              log=lambda seen, stats: logged.append(stats))
    assert logged[0]["l0"] > 10 and 2 < logged[-1]["l0"] < 8


@pytest.mark.parametrize("name", ["batchtopk", "feature_choice", "mutual_choice"])
def test_learned_thresholds_give_about_k_at_inference(name):
    acts, _ = _synthetic(n=20_000)
    sae = VARIANTS[name](24, 96, k=4, seed=0)
    result = train_sae(sae, acts, TrainConfig(tokens=60_000, batch=512, lr=3e-3, log_every=50))
    l0 = (sae.encode(acts[:4000] * result.scale) > 0).sum(-1).float().mean()
    assert 2 <= l0 <= 8, f"inference L0 {l0:.1f} for k = 4"
