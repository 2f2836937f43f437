"""Calibration statistics of every prunable layer's input, from one forward pass of the dense model.

    stats = collect_stats(handle.model, linears, calib.batches, need={"norm", "hessian"})
    stats["model.layers.0.self_attn.q_proj"]["sq_sum"]   # (in,) sum of x_j^2 over tokens

Per layer: `sq_sum` (Wanda's ||X_j||^2), `mean` (DSnoT's E[x_j]), `hessian` (SparseGPT's
X X^T / tokens). Padding tokens are left out. Layers fed the same tensor (q/k/v, gate/up) share
one accumulator, which saves a third of the Hessian work on a Llama block. Statistics come from the
dense model in one pass (not block-by-block on the already-pruned model as in the papers'
sequential variant); the run's info says so. Hooks are removed in `finally`.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import Tensor, nn

from sparsity_core.pruning.base import in_features


class _Acc:
    def __init__(self, n: int, need: set[str]):
        self.count = 0
        self.sq_sum = torch.zeros(n, dtype=torch.float64)
        self.sum = torch.zeros(n, dtype=torch.float64) if "mean" in need else None
        self.hessian = torch.zeros(n, n, dtype=torch.float32) if "hessian" in need else None

    def add(self, x: Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float().cpu()
        self.count += x.shape[0]
        self.sq_sum += (x.double() ** 2).sum(0)
        if self.sum is not None:
            self.sum += x.double().sum(0)
        if self.hessian is not None:
            self.hessian.addmm_(x.t(), x)

    def result(self) -> dict[str, Tensor]:
        out = {"sq_sum": self.sq_sum.float(), "count": torch.tensor(self.count)}
        if self.sum is not None:
            out["mean"] = (self.sum / max(self.count, 1)).float()
        if self.hessian is not None:
            out["hessian"] = self.hessian / max(self.count, 1)
        return out


@torch.no_grad()
def collect_stats(model: nn.Module, linears: dict[str, nn.Module], batches: Iterable,
                  need: Iterable[str], on_batch: Optional[Callable[[int, int], None]] = None
                  ) -> dict[str, dict[str, Tensor]]:
    """Run `batches` through `model`; return per-layer input statistics (see module docstring)."""
    need = set(need)
    batches = list(batches)
    accs: dict[str, _Acc] = {}
    last: dict[str, object] = {"input": None, "acc": None}
    batch_mask: dict[str, Optional[Tensor]] = {"mask": None}

    def hook_for(name: str, module: nn.Module):
        def hook(_mod, args):
            x = args[0]
            if x is last["input"] and name not in accs:  # same tensor as the previous layer
                accs[name] = last["acc"]
                return
            if name not in accs:
                accs[name] = _Acc(in_features(module), need)
            if accs[name] is last["acc"] and x is last["input"]:
                return  # shared accumulator: already counted
            mask = batch_mask["mask"]
            if mask is not None and x.dim() == 3 and x.shape[:2] == mask.shape:
                x = x[mask.bool()]
            accs[name].add(x)
            last["input"], last["acc"] = args[0], accs[name]
        return hook

    handles = [m.register_forward_pre_hook(hook_for(n, m)) for n, m in linears.items()]
    try:
        device = next(model.parameters()).device
        for i, batch in enumerate(batches):
            last["input"] = None
            if isinstance(batch, dict):
                batch_mask["mask"] = batch.get("attention_mask")
                model(**{k: v.to(device) for k, v in batch.items()})
            else:
                model(batch.to(device))
            if on_batch:
                on_batch(i + 1, len(batches))
    finally:
        for h in handles:
            h.remove()
    return {name: accs[name].result() for name in linears if name in accs}
