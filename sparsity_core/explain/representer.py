"""Representer point selection (Yeh, Kim, Yen, Ravikumar, NeurIPS 2018), all the math in one file.

A classifier's last layer is Phi = F W, with F the last hidden features plus a constant 1 (so the
bias lives inside W). Fine-tune W to a stationary point of

    mean_i CE(softmax(F_i W), T_i) + lambda ||W||^2          (T: the model's own softmax outputs)

and the stationarity condition says W = F^T alpha with alpha_i = -1/(2 lambda n) dCE_i/dPhi_i, so
every test logit splits exactly into one term per training point:

    Phi_t = sum_i alpha_i (f_i . f_t)        representer value of point i for class k: alpha_ik f_i.f_t

    fit = fit_representer(features, targets, w0, lam=0.003)
    values = representer_values(fit.alpha, fit.features, test_features)   # (n_train, classes)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

LAMBDA = 0.003  # the paper's default for CIFAR-10 / AwA
REL_TOL = 1e-5  # stop when ||grad|| < REL_TOL * ||grad at start||: "far below its start"
MAX_ITER = 3000  # each step is two (n x d) x (d x c) products: milliseconds even at 10k points
ARMIJO = 0.5  # sufficient-decrease constant of the backtracking line search
SHRINK = 0.5  # step halves until the decrease is sufficient


@dataclass
class RepresenterFit:
    """A stationary last layer and its representer weights (float64 for exact reconstructions)."""

    features: Tensor  # (n, d+1) training features with the constant 1 appended
    weight: Tensor  # (d+1, c) the best W found (bias is the last row)
    alpha: Tensor  # (n, c)
    lam: float
    grad_norm_start: float
    grad_norm_final: float
    iterations: int
    seconds: float

    def logits(self, test_features: Tensor) -> Tensor:
        """The decomposition's logits for (m, d+1) features: F_t F^T alpha."""
        return with_bias(test_features) @ (self.features.T @ self.alpha)


def with_bias(features: Tensor) -> Tensor:
    """(..., d) raw features -> (..., d+1) float64 with the constant-1 column appended."""
    features = features.double()
    if features.shape[-1] == 0:
        raise ValueError("features are empty")
    return torch.cat([features, torch.ones(*features.shape[:-1], 1, dtype=features.dtype)], dim=-1)


def stack_head(weight: Tensor, bias: Tensor | None) -> Tensor:
    """nn.Linear (c, d) weight + (c,) bias -> the (d+1, c) W of Phi = [f, 1] W."""
    b = bias if bias is not None else torch.zeros(weight.shape[0], dtype=weight.dtype)
    return torch.cat([weight.T, b[None, :]], dim=0).double()


def _objective(fb: Tensor, w: Tensor, targets: Tensor, lam: float) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, gradient, dCE/dPhi per point) of mean soft-target cross-entropy + lam ||W||^2."""
    phi = fb @ w
    logp = torch.log_softmax(phi, dim=-1)
    loss = -(targets * logp).sum(-1).mean() + lam * (w * w).sum()
    dphi = logp.exp() - targets  # per-point gradient of CE w.r.t. its logits
    grad = fb.T @ dphi / fb.shape[0] + 2 * lam * w
    return loss, grad, dphi


def fit_representer(features: Tensor, targets: Tensor, w0: Tensor, lam: float = LAMBDA,
                    rel_tol: float = REL_TOL, max_iter: int = MAX_ITER) -> RepresenterFit:
    """Full-batch (accelerated) gradient descent with backtracking line search from the trained last layer.

    Args:
        features: (n, d) last hidden features, without the constant 1.
        targets: (n, c) rows summing to 1 (the model's softmax outputs, or one-hot labels).
        w0: (d+1, c) the trained last layer as `stack_head` builds it.
        lam: L2 strength; alpha scales with 1/lam, and the decomposition is exact only at a
            stationary point, so smaller lam needs a tighter optimum.
    Returns:
        RepresenterFit with the best W (lowest gradient norm seen) and its alpha.
    """
    if lam <= 0:
        raise ValueError(f"lambda must be > 0, got {lam}")
    if len(features) == 0:
        raise ValueError("no training points to decompose over")
    start = time.perf_counter()
    # Step 1: features with the bias column, float64 (alpha ~ 1/(2 lam n) amplifies round-off)
    fb, t, w = with_bias(features), targets.double(), w0.double().clone()
    _, grad, _ = _objective(fb, w, t, lam)
    g0 = best_g = float(grad.norm())
    best_w, y, w_prev, step, momentum, steps = w.clone(), w.clone(), w.clone(), 1.0, 1.0, 0
    # Step 2: gradient steps from the extrapolated point y (Nesterov), each step size found by
    # backtracking; features of norm ~30 make plain descent need 10^4+ steps, this needs ~10^2
    while steps < max_iter and best_g > rel_tol * g0 and best_g > 0.0:
        steps += 1
        loss_y, grad_y, _ = _objective(fb, y, t, lam)
        gsq = float((grad_y * grad_y).sum())
        while True:
            w = y - step * grad_y
            loss_w, grad, _ = _objective(fb, w, t, lam)
            if loss_w <= loss_y - ARMIJO * step * gsq or step < 1e-12:
                break
            step *= SHRINK
        if float(grad.norm()) < best_g:
            best_g, best_w = float(grad.norm()), w.clone()
        # restart the momentum when it points uphill (O'Donoghue & Candes 2015 gradient restart)
        if float((grad_y * (w - w_prev)).sum()) > 0:
            momentum = 1.0
        nxt = (1 + (1 + 4 * momentum ** 2) ** 0.5) / 2
        y = w + (momentum - 1) / nxt * (w - w_prev)
        w_prev, momentum, step = w, nxt, step * 2.0
    # Step 3: alpha from the best W's per-point loss gradients
    _, _, dphi = _objective(fb, best_w, t, lam)
    alpha = -dphi / (2 * lam * fb.shape[0])
    return RepresenterFit(fb, best_w, alpha, lam, g0, best_g, steps, time.perf_counter() - start)


def representer_values(alpha: Tensor, train_features: Tensor, test_feature: Tensor) -> Tensor:
    """(n, c) values alpha_ik (f_i . f_t) for one test point; `train_features` carry the 1 column,
    `test_feature` (d,) does not. Summed over i they give the test point's logits."""
    ft = with_bias(test_feature.reshape(1, -1))[0]
    return alpha * (train_features @ ft)[:, None]


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two equally shaped tensors, flattened."""
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float((a @ b) / denom) if denom > 0 else 0.0
