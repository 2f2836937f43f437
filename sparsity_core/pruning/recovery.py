"""Gradual pruning and recovery: fine-tuning or distillation from the dense teacher, and heads / neurons.

Follows the pre-train/fine-tune pruning recipe (Zhu & Gupta 2017; Sanh et al. 2020, movement
pruning; Kurtic et al. 2022, oBERT): the dense model is fine-tuned first (the teacher), then
pruned progressively along the cubic schedule

    s_t = s_f + (s_i - s_f) (1 - t/T)^3

while it trains, then fine-tuned at its final sparsity with the mask fixed. `oneshot` with
recovery prunes each target from the dense model at once and then trains at that sparsity;
heads / neurons are removed physically (structured.py) and trained the same way. The training
loop, the losses and the guard that keeps pruned weights at zero are `sparsity_core.training`;
masks only shrink: a weight pruned at step t stays zero at every later step.

Two recipes on top of one-shot recovery (`schedule="oneshot"`, `recovery` finetune or distill):

- Sparse model soups (Zimmer et al. 2023): with `soup_ingredients=k` (2..8) each target's pruned
  model is fine-tuned k times under its one mask, ingredient i with seed `seed + i` (its own data
  order and dropout), and the k copies are averaged into the soup. Each ingredient's quality is
  the evaluator's own key (accuracy) with series `ingredient i`, their mean and best series
  `ingredient mean` / `ingredient best` (so labels and direction are the key's); the soup is the
  target's result, series "" (its curve, its stored weights). The soup keeps every zero of the
  mask, checked before it is recorded.
- N:M training: `nm_training="fixed_mask"` fine-tunes under the one-shot N:M mask (the MaskGuard,
  as for any mask); `"sr_ste"` trains the dense weights with SR-STE (Zhou et al. 2021), the mask
  recomputed from |W| every step, and masks them exactly N:M at the end. SR-STE starts from the
  dense weights: its masks are |W|'s, so the method is magnitude.

Decision: the gradual schedule ramps unstructured masks only. An N:M mask has no sparsity to ramp
(every group keeps N of M from the first step); what a gradual path would add, masks that move
while the model trains, is what SR-STE does, so N:M trains with oneshot + recovery.

    run_recovery(parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.8],
                             "recovery": "finetune", "steps": 50, "soup_ingredients": 4}), RunContext())
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from sparsity_core.catalog.pruning import parse_pattern
from sparsity_core.data import load_dataset
from sparsity_core.jobs.context import RunContext, Stage, target_tag
from sparsity_core.pruning import METHODS
from sparsity_core.pruning.checks import soup_size, srste, structured
from sparsity_core.pruning.masks import pattern_mask
from sparsity_core.pruning.record import Recorder, open_model, restore_dense
from sparsity_core.pruning.structured import prune_structured
from sparsity_core.specs import PruneSpec
from sparsity_core.training import (
    SRSTE,
    Guard,
    MaskGuard,
    ShuffledBatches,
    StepCallback,
    TrainConfig,
    Trainer,
    UniformSoup,
    make_teacher,
)
from sparsity_core.zoo import ModelHandle, prunable_linears
from sparsity_core.zoo.classifier import text_batches


def cubic_sparsity(step: int, total: int, s_init: float, s_final: float) -> float:
    """Zhu & Gupta's cubic schedule: prunes fast while many redundant weights are left, then slowly."""
    if total <= 0 or step >= total:
        return s_final
    return s_final + (s_init - s_final) * (1.0 - step / total) ** 3


def gradual_prune(trainer: Trainer, prune_to: Callable[[float], dict[str, Tensor]], s_init: float,
                  s_final: float, steps: int, prune_every: int, on_step: Optional[StepCallback] = None
                  ) -> list[float]:
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


LOWER_IS_BETTER = {"perplexity"}  # the other quality keys (accuracy) are higher-is-better


def best_of(key: str, values: list[float]) -> float:
    return min(values) if key in LOWER_IS_BETTER else max(values)


def zeros_kept(linears: dict, masks: dict[str, Tensor]) -> None:
    """Raise if any weight the mask prunes is not exactly zero (a soup must keep its mask)."""
    for name, mask in masks.items():
        lost = int((linears[name].weight.detach()[~mask.to(linears[name].weight.device)] != 0).sum())
        if lost:
            raise RuntimeError(f"{name}: {lost} pruned weights are nonzero; the mask was not kept")


def training_data(handle: ModelHandle, rows: Optional[int]) -> tuple[int, Callable]:
    """(rows, fetch(indices) -> batch) of the model's labelled training split (its catalog entry's
    `train_data`), loaded once; `ShuffledBatches(rows, batch_size, seed, fetch)` streams it in a seeded order."""
    name = handle.entry.train_data if handle.entry is not None else None
    if name is None:
        raise ValueError(f"{handle.name} has no labelled training split for recovery")
    data = load_dataset(name, "train", seed=0).subset(rows)  # seed 0: the split the cached model trained on
    if data.images is not None:
        x, y = torch.from_numpy(data.images), torch.from_numpy(data.labels)
        return len(y), lambda idx: (x[idx], y[idx])
    return len(data), text_batches(handle.tokenizer, data)


class RecoveryJob:
    """One run of the schedule / recovery / structured path: state shared by its steps."""

    def __init__(self, spec: PruneSpec, ctx: RunContext):
        self.spec, self.ctx = spec, ctx
        # Step 1: the (fine-tuned, dense) model, its evaluation, a copy to restore and the teacher
        self.handle, evaluator = open_model(spec, ctx)
        self.dense = {k: v.detach().clone() for k, v in self.handle.model.state_dict().items()}
        self.recorder = Recorder(spec, ctx, self.handle, evaluator, reference=self.dense)
        self.method = METHODS[spec.method](seed=spec.seed, **spec.params)
        self.teacher = make_teacher(self.handle.model) if spec.recovery == "distill" else None
        self.cfg = TrainConfig(lr=spec.lr, warmup=0.1, temperature=spec.distill_temperature,
                               alpha=spec.distill_alpha, hidden_weight=spec.distill_hidden_weight)
        trained = spec.recovery != "none"
        # the training split, loaded once; a soup's ingredients each stream it in their own seeded order
        self.data = training_data(self.handle, spec.train_rows) if trained else None
        self.batches = self.batches_for(spec.seed)
        per_target = spec.steps + (spec.finetune_steps if spec.schedule == "gradual" else 0)
        self.total_steps = len(spec.sparsities) * per_target * max(soup_size(spec), 1) if trained else 0
        self.global_step = 0
        self.flip_rates: dict[str, dict[str, float]] = {}

    def batches_for(self, seed: int) -> Optional[ShuffledBatches]:
        return ShuffledBatches(self.data[0], self.spec.batch_size, seed, self.data[1]) if self.data else None

    def describe(self) -> dict:
        s = self.spec
        return {"schedule": s.schedule, "recovery": s.recovery, "steps": s.steps,
                "finetune_steps": s.finetune_steps, "lr": s.lr, "batch_size": s.batch_size,
                "train_rows": s.train_rows, "prune_every": self.prune_every,
                "loss": ("alpha*T^2*KL + (1-alpha)*CE + w*MSE(hidden)" if s.recovery == "distill" else "CE"),
                "temperature": s.distill_temperature, "alpha": s.distill_alpha,
                "hidden_weight": s.distill_hidden_weight,
                "schedule_formula": "s_t = s_f + (s_i - s_f)(1 - t/T)^3 (Zhu & Gupta)",
                "soup": ({"ingredients": soup_size(s), "seeds": [s.seed + i for i in range(soup_size(s))],
                          "averaging": "uniform: elementwise mean under one shared mask (Zimmer et al. 2023)"}
                         if soup_size(s) else None),
                "nm_training": s.nm_training if parse_pattern(s.pattern).kind == "nm" else None,
                "srste": ({"decay": s.srste_decay, "mask": "recomputed from |W| every step (Zhou et al. 2021)"}
                          if srste(s) else None)}

    @property
    def prune_every(self) -> int:
        return max(self.spec.steps // 10, 1)  # ten pruning steps per segment, as in Zhu & Gupta's setups

    def at(self, target: float) -> Stage:
        """Where the bar is now, as a stage for `record` (which only names what it does)."""
        done = 0.05 + 0.9 * self.global_step / max(self.total_steps, 1)
        return Stage(self.ctx, done, done)

    def on_step(self, target: float, what: str = "training") -> StepCallback:
        def report(t: int, total: int, parts: dict) -> None:
            self.global_step += 1
            if self.global_step % 10 == 0 or t == total - 1:
                self.ctx.metric("train_loss", parts["loss"], x=self.global_step, series=f"{target:g}")
            self.at(target)(0, f"target {target:.0%}: {what} step {t + 1}/{total}, loss {parts['loss']:.3f}")
        return report

    def train(self, steps: int, target: float, guard: Optional[Guard], batches=None, what: str = "training") -> None:
        batches = batches if batches is not None else self.batches
        if steps and batches is not None:
            Trainer(self.handle.model, batches, self.cfg, self.teacher, guard).run(steps, self.on_step(target, what))

    def cook_soup(self, target: float, guard: MaskGuard) -> None:
        """Zimmer et al. (2023): fine-tune k copies of the pruned model under its one mask, ingredient
        i with seed `seed + i` (data order, dropout), and load their elementwise mean (the soup)."""
        s, model, linears = self.spec, self.handle.model, prunable_linears(self.handle)
        k = soup_size(s)
        # Step 1: the common start, the pruned model before any training
        start = {name: v.detach().clone() for name, v in model.state_dict().items()}
        soup, scores, key = UniformSoup(), [], None
        for i in range(k):
            # Step 2: one ingredient, from the start, with its own seed
            model.load_state_dict(start)
            torch.manual_seed(s.seed + i)
            batches = self.batches_for(s.seed + i)
            self.train(s.steps, target, guard, batches, what=f"ingredient {i + 1}/{k}")
            zeros_kept(linears, guard.masks)
            # Step 3: its quality, under the evaluator's own keys, series `ingredient i`
            self.at(target)(0, f"target {target:.0%}: evaluating ingredient {i + 1}/{k}")
            quality = self.recorder.evaluator(self.handle)
            for name, value in quality.items():
                self.ctx.metric(name, value, x=target, series=f"ingredient {i}")
            key = key or next(iter(quality))
            scores.append(quality[key])
            soup.add(model.state_dict())
        self.ctx.metric(key, sum(scores) / k, x=target, series="ingredient mean")
        self.ctx.metric(key, best_of(key, scores), x=target, series="ingredient best")
        # Step 4: the soup replaces the model; the mean of zeros is zero, and that is checked
        model.load_state_dict(soup.state())
        zeros_kept(linears, guard.masks)

    def run_srste(self, target: float) -> None:
        """Zhou et al. (2021): from the dense weights, train with the N:M mask recomputed from |W|
        every step and the decay on pruned weights; then mask them exactly N:M and record."""
        pattern, linears = parse_pattern(self.spec.pattern), prunable_linears(self.handle)
        with SRSTE(linears, lambda scores: pattern_mask(scores, target, pattern), self.spec.srste_decay) as guard:
            self.train(self.spec.steps, target, guard, what="SR-STE")
            masks = guard.finish()
        # the flip rate (the share of the mask that changed at a step; step 0 has none before it),
        # meaned over the first and the last tenth of training: SR-STE's masks settle as it trains
        flips, tenth = guard.flips[1:], max(len(guard.flips[1:]) // 10, 1)
        if flips:
            self.flip_rates[target_tag(target)] = {"first_tenth": sum(flips[:tenth]) / len(flips[:tenth]),
                                                   "last_tenth": sum(flips[-tenth:]) / len(flips[-tenth:])}
            self.ctx.info(srste_flip_rate=self.flip_rates)
        self.recorder.record(target, self.at(target), masks)

    def prune_unstructured(self, sparsity: float) -> dict[str, Tensor]:
        return self.method.prune(prunable_linears(self.handle), sparsity, scope=self.spec.scope,
                                 pattern=self.spec.pattern)

    def run_oneshot(self) -> None:
        """Each target from the dense model: prune at once, then recover at that sparsity."""
        s = self.spec
        for target in s.sparsities:
            if structured(s):
                removal = prune_structured(self.handle, target, s.pattern, s.scope, s.method, s.seed)
                try:
                    self.train(s.steps, target, None)  # removed units cannot regrow: no mask needed
                    self.recorder.record(target, self.at(target), removal=removal)
                finally:
                    removal.restore()
            elif srste(s):
                self.run_srste(target)
            else:
                with MaskGuard(prunable_linears(self.handle)) as guard:
                    guard.set(self.prune_unstructured(target))
                    if soup_size(s):
                        self.cook_soup(target, guard)
                    else:
                        self.train(s.steps, target, guard)
                    self.recorder.record(target, self.at(target), guard.masks)
            restore_dense(self.handle, self.dense)

    def run_gradual(self) -> None:
        """One student through all targets in order: cubic ramp to each, fine-tune there, measure."""
        s, s_prev = self.spec, 0.0
        with MaskGuard(prunable_linears(self.handle)) as guard:
            for target in s.sparsities:
                trainer = Trainer(self.handle.model, self.batches, self.cfg, self.teacher, guard)
                start = self.global_step
                used = gradual_prune(trainer, self.prune_unstructured, s_prev, target, s.steps,
                                     self.prune_every, self.on_step(target))
                for i, value in enumerate(used):
                    self.ctx.metric("schedule_sparsity", value, x=start + i * self.prune_every,
                                    series=f"{target:g}")
                self.train(s.finetune_steps, target, guard)
                self.recorder.record(target, self.at(target), guard.masks)
                s_prev = target

    def run(self) -> None:
        self.ctx.info(recovery=self.describe(), method_params=self.method.params.model_dump(),
                      teacher=self.handle.meta.get("teacher_budget"))
        dense = self.recorder.evaluator(self.handle)
        self.ctx.info(dense=dense)
        for key, value in dense.items():
            self.ctx.metric(f"dense_{key}", value)
        self.run_gradual() if self.spec.schedule == "gradual" else self.run_oneshot()
        self.recorder.finish()


def run_recovery(spec: PruneSpec, ctx: RunContext) -> None:
    """The `prune` job for gradual schedules, fine-tune / distill recovery and heads / neurons."""
    RecoveryJob(spec, ctx).run()
