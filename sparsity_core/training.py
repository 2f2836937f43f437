"""The shared training loop: AdamW with warmup and linear decay, fine-tuning or distillation,
optionally keeping pruned weights at zero.

    trainer = Trainer(model, ShuffledBatches(n, 32, seed, make), TrainConfig(lr=1e-4, warmup=0.1))
    trainer.run(200, on_step=lambda t, total, parts: print(t, parts["loss"]))

Without a teacher the loss is cross-entropy on the labels (fine-tuning); with one it is the
distillation loss of Sanh et al. (2020): KL(teacher || student) of temperature-softened logits
plus MSE between hidden states, with a little cross-entropy on the labels. With a `MaskGuard`
pruned weights stay exactly zero: the guard zeroes their gradients (so Adam never sees one) and
re-applies the mask after every optimizer step (so weight decay and stale momentum cannot move one
either). Used by the zoo (the fine-tuned teacher) and by the pruning lab (recovery).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Batch = tuple[object, Tensor]  # (model inputs: a dict of tensors or one tensor, labels)
StepCallback = Callable[[int, int, dict], None]  # (step, steps in all, loss parts)


# ---------------------------------------------------------------- data

class ShuffledBatches:
    """An endless, seeded stream of batches: a new permutation of the rows every epoch."""

    def __init__(self, n_rows: int, batch_size: int, seed: int, make: Callable[[Tensor], Batch]):
        self.n, self.batch_size, self.make = n_rows, batch_size, make
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            for idx in torch.randperm(self.n, generator=self.gen).split(self.batch_size):
                yield self.make(idx)


def to_device(inputs, device):
    return {k: v.to(device) for k, v in inputs.items()} if isinstance(inputs, dict) else inputs.to(device)


# ---------------------------------------------------------------- forward and losses

def logits_and_hidden(model: nn.Module, inputs) -> tuple[Tensor, list[Tensor]]:
    """Class logits and the hidden states distillation matches (the block outputs of a
    transformer; the last hidden layer of an MLP with `features`)."""
    if isinstance(inputs, dict):
        out = model(**inputs, output_hidden_states=True)
        return out.logits, list(out.hidden_states[1:])  # [0] is the frozen embedding output
    hidden = model.features(inputs)
    return model.head(hidden), [hidden]


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 5e-5
    warmup: float = 0.0  # fraction of steps with a linear warmup, then linear decay to 0
    temperature: float = 2.0  # Hinton et al.; 2 is the value Sanh et al. distil with
    alpha: float = 0.9  # weight of the KL term; 1 - alpha goes to cross-entropy on the labels
    hidden_weight: float = 1.0  # weight of the hidden-state MSE
    weight_decay: float = 0.0  # decay would pull kept weights towards the zeros they compete with


def distill_loss(s_logits: Tensor, t_logits: Tensor, s_hidden: list[Tensor], t_hidden: list[Tensor],
                 labels: Tensor, cfg: TrainConfig) -> tuple[Tensor, dict[str, float]]:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE + hidden_weight * mean MSE."""
    T = cfg.temperature
    # Step 1: KL on softened logits, times T^2 so its gradient scale does not shrink with T
    kl = F.kl_div(F.log_softmax(s_logits / T, -1), F.log_softmax(t_logits / T, -1),
                  log_target=True, reduction="batchmean") * T * T
    # Step 2: the hidden states, layer by layer
    mse = torch.stack([F.mse_loss(s, t) for s, t in zip(s_hidden, t_hidden)]).mean()
    ce = F.cross_entropy(s_logits, labels)
    loss = cfg.alpha * kl + (1 - cfg.alpha) * ce + cfg.hidden_weight * mse
    return loss, {"kl": float(kl.detach()), "hidden_mse": float(mse.detach()), "ce": float(ce.detach())}


def make_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of `model` (the dense teacher of distillation)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


# ---------------------------------------------------------------- keeping pruned weights at zero

class MaskGuard:
    """Keeps pruned weights at zero while a model trains; use as a context manager so the gradient
    hooks are removed even when training fails."""

    def __init__(self, linears: dict[str, nn.Module]):
        self.linears = linears
        self.masks: dict[str, Tensor] = {}
        self._hooks = []

    def __enter__(self) -> "MaskGuard":
        for name, module in self.linears.items():
            self._hooks.append(module.weight.register_hook(lambda g, name=name: self._mask_grad(name, g)))
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def _mask_grad(self, name: str, grad: Tensor) -> Tensor:
        mask = self.masks.get(name)
        return grad if mask is None else grad * mask.to(grad.dtype)

    def set(self, masks: dict[str, Tensor]) -> None:
        """New masks (True = kept), intersected with the old ones: nothing pruned comes back."""
        for name, mask in masks.items():
            old = self.masks.get(name)
            self.masks[name] = mask if old is None else mask & old
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for name, mask in self.masks.items():
            weight = self.linears[name].weight
            weight.mul_(mask.to(weight.device, weight.dtype))


# ---------------------------------------------------------------- the loop

def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Everything but the embeddings: they are not pruned, hold half of MiniLM's weights, and
    updating them would cost time without helping the pruned layers recover."""
    return [p for n, p in model.named_parameters() if "embed" not in n and p.requires_grad]


class Trainer:
    """AdamW over `model` on a batch stream, with an optional teacher (distill) and mask guard."""

    def __init__(self, model: nn.Module, batches, cfg: TrainConfig, teacher: Optional[nn.Module] = None,
                 guard: Optional[MaskGuard] = None):
        self.model, self.cfg, self.teacher, self.guard = model, cfg, teacher, guard
        self.stream = iter(batches)
        self.device = next(model.parameters()).device
        self.opt = torch.optim.AdamW(trainable_parameters(model), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(self, lr: float) -> dict[str, float]:
        inputs, labels = next(self.stream)
        inputs, labels = to_device(inputs, self.device), labels.to(self.device)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        logits, hidden = logits_and_hidden(self.model, inputs)
        if self.teacher is None:
            loss = F.cross_entropy(logits, labels)
            parts = {"ce": float(loss.detach())}
        else:
            with torch.no_grad():
                t_logits, t_hidden = logits_and_hidden(self.teacher, inputs)
            loss, parts = distill_loss(logits, t_logits, hidden, t_hidden, labels, self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.guard is not None:
            self.guard.apply()
        return {"loss": float(loss.detach()), **parts}

    def lr_at(self, step: int, total: int) -> float:
        """Linear warmup over the first `warmup` of the steps, then linear decay towards zero."""
        warm = int(self.cfg.warmup * total)
        if step < warm:
            return self.cfg.lr * (step + 1) / warm
        return self.cfg.lr * max(total - step, 1) / max(total - warm, 1)

    def run(self, steps: int, on_step: Optional[StepCallback] = None,
            before_step: Optional[Callable[[int], None]] = None) -> None:
        for t in range(steps):
            if before_step is not None:
                before_step(t)
            parts = self.step(self.lr_at(t, steps))
            if on_step is not None:
                on_step(t, steps, parts)
        self.model.eval()
