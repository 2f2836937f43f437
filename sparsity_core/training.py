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

Two more recipes of the sparse-training literature live here:

- `SRSTE` (Zhou et al. 2021, "Learning N:M Fine-grained Structured Sparse Neural Networks From
  Scratch"): the dense weights are kept and trained; every step the mask is recomputed from |W|,
  the forward sees W * mask, its gradient goes straight through to every dense weight, and the
  pruned ones also get lambda_W * W added to their gradient so they decay unless the loss wants
  them. `finish()` masks the weights for good.
- `UniformSoup` (Zimmer et al. 2023, "Sparse Model Soups"): the elementwise mean of several
  fine-tuned copies of one pruned model; copies that share the mask average into a model with the
  same zeros.

    with SRSTE(linears, lambda s: nm_mask(s, 2, 4)) as guard:
        Trainer(model, batches, TrainConfig(lr=1e-3), guard=guard).run(200)
        masks = guard.finish()                  # every layer exactly 2:4 now
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol

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

class Guard(Protocol):
    """What the trainer calls around one step: a fixed mask (MaskGuard) or a moving one (SRSTE)."""

    masks: dict[str, Tensor]

    def before_forward(self) -> None: ...

    def after_backward(self) -> None: ...

    def after_step(self) -> None: ...


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

    def before_forward(self) -> None:  # the weights are masked already
        pass

    def after_backward(self) -> None:  # the gradient hooks masked the gradients
        pass

    def after_step(self) -> None:
        self.apply()


class SRSTE:
    """Sparse-refined straight-through estimator (Zhou et al. 2021) around a model's linears.

    `mask_fn(|W|) -> kept` gives a layer's mask from its scores (e.g. 2:4 along the input
    dimension). Each step: (1) the mask is recomputed from the dense |W| and the weights are
    masked for the forward; (2) after the backward pass the dense weights come back, so the
    gradient of the masked forward updates every weight (the straight-through estimator), and
    lambda_W * W is added to the gradient of the pruned ones (the "sparse-refined" term, which
    keeps masks from flipping back and forth); (3) the optimizer updates the dense weights.
    `flips` is the fraction of each step's mask that changed from the step before (the paper's
    flip rate). `finish()` masks the weights from their final |W| and returns those masks.
    A context manager: if a step fails mid-way, the dense weights are put back."""

    DECAY = 2e-4  # lambda_W of the paper and of its code (aojunzz/NM-sparsity, decay=0.0002)

    def __init__(self, linears: dict[str, nn.Module], mask_fn: Callable[[Tensor], Tensor], decay: float = DECAY):
        self.linears, self.mask_fn, self.decay = linears, mask_fn, decay
        self.masks: dict[str, Tensor] = {}
        self.flips: list[float] = []
        self._dense: dict[str, Tensor] = {}

    def __enter__(self) -> "SRSTE":
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    @torch.no_grad()
    def _restore(self) -> None:
        for name, dense in self._dense.items():
            self.linears[name].weight.copy_(dense)
        self._dense.clear()

    @torch.no_grad()
    def before_forward(self) -> None:
        changed = total = 0
        for name, module in self.linears.items():
            weight = module.weight
            mask = self._mask(module)
            if name in self.masks:
                changed += int((mask != self.masks[name]).sum())
            total += mask.numel()
            self.masks[name] = mask
            self._dense[name] = weight.detach().clone()
            weight.mul_(mask.to(weight.dtype))
        self.flips.append(changed / total if total else 0.0)

    @torch.no_grad()
    def after_backward(self) -> None:
        dense = dict(self._dense)
        self._restore()
        for name in dense:
            weight, pruned = self.linears[name].weight, ~self.masks[name]
            if weight.grad is not None and self.decay:
                weight.grad.add_(self.decay * pruned.to(weight.dtype) * weight)

    def after_step(self) -> None:  # the dense weights stay dense between steps
        pass

    @torch.no_grad()
    def finish(self) -> dict[str, Tensor]:
        """Mask every layer from its final |W| (exactly the pattern from now on); the masks."""
        self._restore()
        for name, module in self.linears.items():
            self.masks[name] = self._mask(module)
            module.weight.mul_(self.masks[name].to(module.weight.dtype))
        return dict(self.masks)

    def _mask(self, module: nn.Module) -> Tensor:
        """`mask_fn` on the layer's (out, in) |W|, so N:M groups run along the input dimension, in
        the weight's own layout (GPT-2's Conv1D stores (in, out), as pruning.base.weight_2d)."""
        conv1d = type(module).__name__ == "Conv1D"  # pruning.base.weight_2d's rule (training sits below pruning)
        mask = self.mask_fn((module.weight.t() if conv1d else module.weight).abs())
        return mask.t() if conv1d else mask


# ---------------------------------------------------------------- sparse model soups

class UniformSoup:
    """The uniform soup of Zimmer et al. (2023): the elementwise mean of fine-tuned copies of one
    pruned model. Floating entries are summed as the ingredients come (two state dicts in memory,
    whatever their number); an entry no ingredient changed stays bit-identical to the first
    (the frozen embeddings, integer buffers). Copies that share a mask average into a model with
    exactly its zeros: the mean of zeros is zero.

        soup = UniformSoup()
        for state in ingredients: soup.add(state)
        model.load_state_dict(soup.state())
    """

    def __init__(self) -> None:
        self.first: dict[str, Tensor] = {}
        self.total: dict[str, Tensor] = {}
        self.changed: set[str] = set()
        self.count = 0

    @torch.no_grad()
    def add(self, state: dict[str, Tensor]) -> None:
        if not self.first:
            self.first = {k: v.detach().clone() for k, v in state.items()}
            self.total = {k: v.detach().to(torch.promote_types(v.dtype, torch.float32)).clone()
                          for k, v in state.items() if v.is_floating_point()}
        else:
            if state.keys() != self.first.keys():
                raise ValueError("soup ingredients must share one architecture (the same state-dict keys)")
            for k, v in self.total.items():
                v.add_(state[k].detach().to(v.dtype))
                if k not in self.changed and not torch.equal(state[k], self.first[k]):
                    self.changed.add(k)
        self.count += 1

    def state(self) -> dict[str, Tensor]:
        """The mean of the ingredients added so far, in each entry's own dtype."""
        if not self.count:
            raise ValueError("an empty soup: add at least one ingredient")
        return {k: (self.total[k] / self.count).to(v.dtype) if k in self.changed else v.clone()
                for k, v in self.first.items()}


# ---------------------------------------------------------------- the loop

def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Everything but the embeddings: they are not pruned, hold half of MiniLM's weights, and
    updating them would cost time without helping the pruned layers recover."""
    return [p for n, p in model.named_parameters() if "embed" not in n and p.requires_grad]


class Trainer:
    """AdamW over `model` on a batch stream, with an optional teacher (distill) and a guard that
    keeps the linears sparse (MaskGuard: a fixed mask; SRSTE: a mask recomputed every step)."""

    def __init__(self, model: nn.Module, batches, cfg: TrainConfig, teacher: Optional[nn.Module] = None,
                 guard: Optional[Guard] = None):
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
        if self.guard is not None:
            self.guard.before_forward()
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
        if self.guard is not None:
            self.guard.after_backward()
        self.opt.step()
        if self.guard is not None:
            self.guard.after_step()
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
