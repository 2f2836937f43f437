"""Gradual pruning and recovery: fine-tuning or distillation from the dense teacher.

Follows the pre-train/fine-tune pruning recipe (Zhu & Gupta 2017; Sanh et al. 2020, movement
pruning; Kurtic et al. 2022, oBERT): the dense model is fine-tuned first (the teacher), then
pruned progressively along the cubic schedule

    s_t = s_f + (s_i - s_f) (1 - t/T)^3

while it trains, then fine-tuned at its final sparsity with the mask fixed. `distill` trains on
KL(teacher || student) of temperature-softened logits plus MSE between hidden states, with a
little cross-entropy on the labels; `finetune` is the same loop without the teacher.

Masks only shrink: a weight pruned at step t stays zero at every later step. `MaskGuard` zeroes
the gradient of pruned weights (so Adam never sees one) and re-applies the mask after every
optimizer step (so weight decay and stale momentum cannot move one either).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Batch = tuple[object, Tensor]  # (model inputs: a dict of tensors or one tensor, labels)


# ---------------------------------------------------------------- schedule and masks

def cubic_sparsity(step: int, total: int, s_init: float, s_final: float) -> float:
    """Zhu & Gupta's cubic schedule: prunes fast while many redundant weights are left, then slowly."""
    if total <= 0 or step >= total:
        return s_final
    return s_final + (s_init - s_final) * (1.0 - step / total) ** 3


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


# ---------------------------------------------------------------- data, forward, loss

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
        warm = int(self.cfg.warmup * total)
        if step < warm:
            return self.cfg.lr * (step + 1) / warm
        return self.cfg.lr * max(total - step, 1) / max(total - warm, 1)

    def run(self, steps: int, on_step: Optional[Callable[[int, int, dict], None]] = None,
            before_step: Optional[Callable[[int], None]] = None) -> None:
        for t in range(steps):
            if before_step is not None:
                before_step(t)
            parts = self.step(self.lr_at(t, steps))
            if on_step is not None:
                on_step(t, steps, parts)
        self.model.eval()


def make_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of the dense model."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def gradual_prune(trainer: Trainer, prune_to: Callable[[float], dict[str, Tensor]], s_init: float,
                  s_final: float, steps: int, prune_every: int,
                  on_step: Optional[Callable[[int, int, dict], None]] = None) -> list[float]:
    """Train `steps` steps, raising the mask's sparsity along the cubic schedule every
    `prune_every` steps; it reaches `s_final` at the last pruning step. Returns the schedule used."""
    guard = trainer.guard
    used: list[float] = []

    def before(t: int) -> None:
        if t % prune_every == 0:
            # the schedule ends at T - prune_every so the last interval trains at s_final already
            s = cubic_sparsity(t, max(steps - prune_every, 1), s_init, s_final)
            guard.set(prune_to(s))
            used.append(s)

    trainer.run(steps, on_step=on_step, before_step=before)
    if not used or used[-1] != s_final:
        guard.set(prune_to(s_final))
        used.append(s_final)
    return used


# ---------------------------------------------------------------- the job path (schedule / recovery / structured)

RECOVERY_MODELS = ("digits-mlp", "minilm-l6-rt")  # classifiers with a labelled training split here


def spec_errors(spec) -> dict[str, str]:
    """{field: message} for schedule / recovery / structured choices this spec cannot run."""
    from sparsity_core.pruning import METHODS
    from sparsity_core.pruning.structured import STRUCTURED_PATTERNS, check_structured, family_of_name

    errors: dict[str, str] = {}
    structured = spec.pattern in STRUCTURED_PATTERNS
    if structured:
        errors.update(check_structured(spec.model, family_of_name(spec.model), spec.pattern, spec.method))
    if spec.schedule == "gradual":
        if spec.recovery == "none":
            errors["recovery"] = "a gradual schedule prunes between training steps: pick finetune or distill"
        if spec.pattern != "unstructured":
            errors["schedule"] = ("the gradual schedule raises an unstructured mask step by step; "
                                  "for N:M, blocks, heads or neurons use oneshot with recovery")
    if spec.recovery != "none" and spec.model not in RECOVERY_MODELS:
        hint = " (minilm-l6-rt is minilm-l6 fine-tuned on Rotten Tomatoes)" if spec.model == "minilm-l6" else ""
        errors["recovery"] = (f"recovery trains on labelled data, which only {', '.join(RECOVERY_MODELS)} "
                              f"have here{hint}")
    trains = spec.schedule == "gradual" or spec.recovery != "none"
    if trains and not structured and METHODS[spec.method].needs_calibration:
        errors["method"] = (f"{spec.method} needs calibration activations; with fine-tuning or a gradual "
                            f"schedule use a data-free method such as magnitude")
    return errors


def uses_this_path(spec) -> bool:
    """run_prune hands a spec to `run_recovery` when it trains or prunes whole units."""
    from sparsity_core.pruning.structured import STRUCTURED_PATTERNS

    return spec.schedule == "gradual" or spec.recovery != "none" or spec.pattern in STRUCTURED_PATTERNS


def preflight(spec) -> None:
    from sparsity_core.specs import SpecError

    errors = spec_errors(spec) if uses_this_path(spec) else {}
    if errors:
        raise SpecError(errors)


def training_batches(handle, batch_size: int, seed: int, rows: Optional[int]) -> ShuffledBatches:
    """The labelled training split of a recovery model, as an endless seeded batch stream."""
    from sparsity_core.data import digits, rotten_tomatoes

    if handle.name == "digits-mlp":
        data = digits("train", seed=0).subset(rows)  # seed 0: the split the cached model trained on
        x, y = torch.from_numpy(data.images), torch.from_numpy(data.labels)
        return ShuffledBatches(len(y), batch_size, seed, lambda idx: (x[idx], y[idx]))
    if handle.meta.get("dataset") == "rotten_tomatoes":
        from sparsity_core.zoo.classifier import text_batches

        data = rotten_tomatoes("train", seed=0).subset(rows)
        return ShuffledBatches(len(data), batch_size, seed, text_batches(handle.tokenizer, data))
    raise ValueError(f"{handle.name} has no labelled training split for recovery")


class RecoveryJob:
    """One run of the schedule / recovery / structured path: state shared by its steps."""

    def __init__(self, spec, progress):
        from sparsity_core.pruning import METHODS
        from sparsity_core.pruning.evaluate import make_evaluator
        from sparsity_core.zoo import load_model, prunable_linears

        self.spec, self.progress = spec, progress
        # Step 1: the (fine-tuned, dense) model, its evaluation and its teacher copy
        progress.update(0.0, f"loading {spec.model}")
        self.handle = load_model(spec.model)
        self.evaluator = make_evaluator(self.handle, spec.seed, spec.eval_samples)
        self.dense_state = {k: v.detach().clone() for k, v in self.handle.model.state_dict().items()}
        self.dense_prunable = sum(m.weight.numel() for m in prunable_linears(self.handle).values())
        self.teacher = make_teacher(self.handle.model) if spec.recovery == "distill" else None
        self.method = METHODS[spec.method](seed=spec.seed)
        self.cfg = TrainConfig(lr=spec.lr, warmup=0.1, temperature=spec.distill_temperature,
                               alpha=spec.distill_alpha, hidden_weight=spec.distill_hidden_weight)
        self.batches = training_batches(self.handle, spec.batch_size, spec.seed, spec.train_rows)
        self.global_step = 0
        self.total_steps = len(spec.sparsities) * (spec.steps + spec.finetune_steps)

    def linears(self) -> dict[str, nn.Module]:
        from sparsity_core.zoo import prunable_linears

        return prunable_linears(self.handle)

    def describe(self) -> dict:
        s = self.spec
        return {"schedule": s.schedule, "recovery": s.recovery, "steps": s.steps,
                "finetune_steps": s.finetune_steps, "lr": s.lr, "batch_size": s.batch_size,
                "train_rows": s.train_rows, "prune_every": self.prune_every,
                "loss": ("alpha*T^2*KL + (1-alpha)*CE + w*MSE(hidden)" if s.recovery == "distill" else "CE"),
                "temperature": s.distill_temperature, "alpha": s.distill_alpha,
                "hidden_weight": s.distill_hidden_weight,
                "schedule_formula": "s_t = s_f + (s_i - s_f)(1 - t/T)^3 (Zhu & Gupta)"}

    @property
    def prune_every(self) -> int:
        return max(self.spec.steps // 10, 1)  # ten pruning steps per segment, as in Zhu & Gupta's setups

    def on_step(self, target: float):
        def report(t: int, total: int, parts: dict) -> None:
            self.global_step += 1
            if self.global_step % 10 == 0 or t == total - 1:
                self.progress.metric("train_loss", parts["loss"], x=self.global_step, series=f"{target:g}")
            self.progress.update(0.05 + 0.9 * self.global_step / max(self.total_steps, 1),
                                 f"{target:.0%}: step {t + 1}/{total}, loss {parts['loss']:.3f}")
        return report

    def train(self, steps: int, target: float, guard: Optional[MaskGuard]) -> None:
        if steps and self.spec.recovery != "none":
            Trainer(self.handle.model, self.batches, self.cfg, self.teacher, guard).run(steps, self.on_step(target))

    def prune_unstructured(self, sparsity: float) -> dict[str, Tensor]:
        return self.method.prune(self.linears(), sparsity, scope=self.spec.scope, pattern=self.spec.pattern)

    def record(self, target: float, removal=None) -> None:
        """Measured sparsity, per-layer sparsity, evaluation and the pruned model, at x = target."""
        from safetensors.torch import save_file

        from sparsity_core.pruning.masks import measured_sparsity

        p, linears = self.progress, self.linears()
        if removal is None:
            overall, per_layer = measured_sparsity({n: m.weight for n, m in linears.items()})
        else:  # structured: the fraction of prunable weights that no longer exist
            overall = 1.0 - sum(m.weight.numel() for m in linears.values()) / self.dense_prunable
            per_layer = {}
            p.metric("unit_sparsity", removal.unit_sparsity, x=target)
        p.metric("sparsity", overall, x=target)
        p.metric("params", self.handle.num_params(), x=target)
        for name, value in per_layer.items():
            p.metric("layer_sparsity", value, x=target, series=name)
        for key, value in self.evaluator(self.handle).items():
            p.metric(key, value, x=target)
        if removal is None:  # masks at every target (small); trained weights at the last one only
            path = p.artifact_dir / f"masks-s{target:.4f}.safetensors"
            save_file({n: (m.weight != 0).contiguous().cpu() for n, m in linears.items()}, path)
            p.artifact(f"masks@{target:g}", path, "safetensors")
        if target == self.spec.sparsities[-1]:
            path = p.artifact_dir / f"model-s{target:.4f}.safetensors"
            save_file({k: v.detach().contiguous().cpu() for k, v in self.handle.model.state_dict().items()}, path)
            p.artifact(f"model@{target:g}", path, "safetensors")
        if removal is not None:
            plan = p.artifact_dir / f"plan-s{target:.4f}.json"
            plan.write_text(json.dumps({"pattern": self.spec.pattern, "kept": removal.kept}))
            p.artifact(f"plan@{target:g}", plan, "json")

    def restore_dense(self) -> None:
        self.handle.model.load_state_dict(self.dense_state)

    def run_oneshot(self) -> None:
        """Each target from the dense model: prune at once, then recover at that sparsity."""
        from sparsity_core.pruning.structured import STRUCTURED_PATTERNS, prune_structured

        s = self.spec
        for target in s.sparsities:
            if s.pattern in STRUCTURED_PATTERNS:
                removal = prune_structured(self.handle, target, s.pattern, s.scope, s.method, s.seed)
                try:
                    self.train(s.steps, target, None)  # removed units cannot regrow: no mask needed
                    self.record(target, removal)
                finally:
                    removal.restore()
            else:
                with MaskGuard(self.linears()) as guard:
                    guard.set(self.prune_unstructured(target))
                    self.train(s.steps, target, guard)
                    self.record(target)
            self.restore_dense()

    def run_gradual(self) -> None:
        """One student through all targets in order: cubic ramp to each, fine-tune there, measure."""
        s, s_prev = self.spec, 0.0
        with MaskGuard(self.linears()) as guard:
            for target in s.sparsities:
                trainer = Trainer(self.handle.model, self.batches, self.cfg, self.teacher, guard)
                start = self.global_step
                used = gradual_prune(trainer, self.prune_unstructured, s_prev, target, s.steps,
                                     self.prune_every, self.on_step(target))
                for i, value in enumerate(used):
                    self.progress.metric("schedule_sparsity", value, x=start + i * self.prune_every,
                                         series=f"{target:g}")
                self.train(s.finetune_steps, target, guard)
                self.record(target)
                s_prev = target

    def run(self) -> None:
        self.progress.info(evaluation=self.evaluator.describe(), recovery=self.describe(),
                           params=self.handle.num_params(), prunable_params=self.dense_prunable,
                           teacher=self.handle.meta.get("teacher_budget"))
        dense = self.evaluator(self.handle)
        self.progress.info(dense=dense)
        for key, value in dense.items():
            self.progress.metric(f"dense_{key}", value)
        self.run_gradual() if self.spec.schedule == "gradual" else self.run_oneshot()
        self.progress.update(1.0, "done")


def run_recovery(spec, progress) -> None:
    """The `prune` job for gradual schedules, fine-tune / distill recovery and heads / neurons."""
    torch.manual_seed(spec.seed)
    RecoveryJob(spec, progress).run()
