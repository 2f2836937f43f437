"""Representer math on tiny linear-softmax models whose every number can be checked by hand."""

import numpy as np
import pytest
import torch

from sparsity_core.explain.representer import (
    fit_representer,
    pearson,
    representer_values,
    stack_head,
    with_bias,
)


def tiny_problem(seed: int = 0, n: int = 12, d: int = 3, c: int = 3):
    """Features, a centered head (columns sum to 0, so it is the minimum-norm one) and its softmax."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w0 = torch.randn(d + 1, c, generator=gen, dtype=torch.float64)
    w0 = w0 - w0.mean(1, keepdim=True)
    targets = torch.softmax(with_bias(feats) @ w0, -1)
    return feats, w0, targets


def test_alpha_and_values_match_a_direct_computation():
    feats, w0, targets = tiny_problem()
    lam = 0.01
    fit = fit_representer(feats, targets, w0, lam)
    # direct: alpha_i = -1/(2 lam n) (softmax(f_i W) - t_i), with numpy on the returned W
    fb = np.hstack([feats.numpy(), np.ones((len(feats), 1))])
    phi = fb @ fit.weight.numpy()
    p = np.exp(phi - phi.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    alpha = -(p - targets.numpy()) / (2 * lam * len(feats))
    np.testing.assert_allclose(fit.alpha.numpy(), alpha, rtol=1e-10, atol=1e-12)
    test = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    direct = alpha * (fb @ np.append(test.numpy(), 1.0))[:, None]
    np.testing.assert_allclose(representer_values(fit.alpha, fit.features, test).numpy(), direct, rtol=1e-10)


def test_stationary_point_so_w_is_a_sum_over_training_points():
    feats, w0, targets = tiny_problem(seed=1)
    fit = fit_representer(feats, targets, w0, lam=0.003)
    assert fit.grad_norm_final < 1e-5 * fit.grad_norm_start
    # the representer theorem: W = F^T alpha exactly at a stationary point
    w_from_alpha = fit.features.T @ fit.alpha
    assert torch.allclose(w_from_alpha, fit.weight, atol=1e-4 * float(fit.weight.abs().max()))
    # and the test logits are the sum of the representer values
    test = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    assert torch.allclose(representer_values(fit.alpha, fit.features, test).sum(0),
                          fit.logits(test[None])[0], atol=1e-4)


def test_reconstruction_equals_the_model_logits_when_lambda_is_small():
    feats, w0, targets = tiny_problem(seed=2, n=20)
    fit = fit_representer(feats, targets, w0, lam=1e-5, rel_tol=1e-9)
    logits = with_bias(feats) @ w0
    recon = fit.logits(feats)
    assert torch.allclose(recon, logits, atol=5e-3), (recon - logits).abs().max()  # error ~ 200 lambda here
    assert pearson(torch.softmax(recon, -1), targets) > 0.99999


def test_excitatory_and_inhibitory_signs_on_a_hand_made_case():
    # class 1 sits at x ~ (1, 0), class 0 at x ~ (0, 1); the head says so with margin 4
    feats = torch.tensor([[1.0, 0.2], [1.0, -0.2], [0.0, 1.0], [0.2, 1.0]], dtype=torch.float64)
    w0 = stack_head(torch.tensor([[-2.0, 2.0], [2.0, -2.0]], dtype=torch.float64), torch.zeros(2))
    targets = torch.softmax(with_bias(feats) @ w0, -1)
    fit = fit_representer(feats, targets, w0, lam=0.003)
    test = torch.tensor([1.0, 0.1], dtype=torch.float64)  # looks like class 1
    values = representer_values(fit.alpha, fit.features, test)[:, 1]
    # the class-1 points push class 1 up; the class-0 points (features overlap via the bias) push it down
    assert values[0] > 0 and values[1] > 0
    assert values[2] < 0 and values[3] < 0


@pytest.mark.parametrize("lam", [0.0, -0.1])
def test_lambda_must_be_positive(lam):
    feats, w0, targets = tiny_problem()
    with pytest.raises(ValueError, match="lambda"):
        fit_representer(feats, targets, w0, lam)


def test_no_training_points_is_refused():
    with pytest.raises(ValueError, match="no training points"):
        fit_representer(torch.empty(0, 3), torch.empty(0, 2), torch.zeros(4, 2))


def test_pearson_by_hand():
    assert pearson(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert pearson(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
