"""Gradual pruning and recovery: the cubic schedule, masks that never regrow, the distillation
loss, the job path end to end on digits-mlp (seconds), and its runs loading back as parents."""

from __future__ import annotations

import math

import pytest
import torch

from sparsity_core.jobs.context import RunContext
from sparsity_core.pruning import METHODS
from sparsity_core.pruning.artifacts import load_pruned
from sparsity_core.pruning.checks import preflight_prune
from sparsity_core.pruning.recovery import cubic_sparsity, gradual_prune
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import SpecError, parse_spec
from sparsity_core.training import (
    MaskGuard,
    ShuffledBatches,
    TrainConfig,
    Trainer,
    distill_loss,
    logits_and_hidden,
    make_teacher,
)


def tiny_classifier():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=16, num_labels=2,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg)


def random_batches(seed: int = 0) -> ShuffledBatches:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (64, 12), generator=gen)
    labels = (ids[:, 0] > 25).long()  # a learnable rule: the first token's id

    def make(idx):
        return {"input_ids": ids[idx], "attention_mask": torch.ones_like(ids[idx])}, labels[idx]

    return ShuffledBatches(64, 16, seed, make)


def linears_of(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".encoder." in f".{n}"}


def test_cubic_schedule_by_hand():
    # s_t = s_f + (s_i - s_f)(1 - t/T)^3 with s_i = 0, s_f = 0.8, T = 10
    assert cubic_sparsity(0, 10, 0.0, 0.8) == 0.0
    assert cubic_sparsity(5, 10, 0.0, 0.8) == pytest.approx(0.8 - 0.8 * 0.125)  # 0.7
    assert cubic_sparsity(10, 10, 0.0, 0.8) == pytest.approx(0.8)
    assert cubic_sparsity(99, 10, 0.5, 0.9) == 0.9


def test_gradual_pruning_masks_only_shrink_and_nothing_regrows():
    model = tiny_classifier()
    linears = linears_of(model)
    method = METHODS["magnitude"]()
    history = []

    def prune_to(s):
        masks = method.prune(linears, s)
        history.append({n: m.weight.detach() != 0 for n, m in linears.items()})
        return masks

    with MaskGuard(linears) as guard:
        trainer = Trainer(model, random_batches(), TrainConfig(lr=1e-2), guard=guard)  # large lr: regrowth would show
        used = gradual_prune(trainer, prune_to, 0.0, 0.8, steps=12, prune_every=3)
        final = {n: guard.masks[n].clone() for n in linears}
    assert used[0] == 0.0 and used[-1] == 0.8 and used == sorted(used)
    for before, after in zip(history, history[1:]):
        assert all(bool((after[n] & ~before[n]).sum() == 0) for n in linears)  # no weight comes back
    for name, module in linears.items():
        assert not module.weight[~final[name]].any()  # every pruned weight is exactly zero
        assert (~final[name]).float().mean() == pytest.approx(0.8, abs=1 / module.weight.numel())
    assert not any(m.weight._backward_hooks for m in linears.values())  # guard's hooks are gone


def test_without_the_guard_pruned_weights_regrow():
    model = tiny_classifier()
    linears = linears_of(model)
    METHODS["magnitude"]().prune(linears, 0.8)
    Trainer(model, random_batches(), TrainConfig(lr=1e-2)).run(3)
    zeros = sum(int((m.weight == 0).sum()) for m in linears.values())
    assert zeros < 0.1 * sum(m.weight.numel() for m in linears.values())


def test_distill_loss_by_hand():
    logits = torch.zeros(2, 2)
    hidden = [torch.ones(2, 3)]
    labels = torch.tensor([0, 1])
    cfg = TrainConfig(alpha=0.9, temperature=2.0, hidden_weight=1.0)
    # same logits and hidden states as the teacher: KL = MSE = 0, only 0.1 * CE = 0.1 * ln 2 is left
    loss, parts = distill_loss(logits, logits, hidden, hidden, labels, cfg)
    assert parts["kl"] == pytest.approx(0.0, abs=1e-7) and parts["hidden_mse"] == 0.0
    assert float(loss) == pytest.approx(0.1 * math.log(2))
    # a hidden state off by 1 everywhere adds MSE 1
    loss2, _ = distill_loss(logits, logits, [hidden[0] + 1], hidden, labels, cfg)
    assert float(loss2 - loss) == pytest.approx(1.0)


def test_distillation_moves_the_student_towards_the_teacher():
    teacher_model = tiny_classifier()
    Trainer(teacher_model, random_batches(), TrainConfig(lr=1e-3)).run(20)
    student = make_teacher(teacher_model)
    for p in student.parameters():
        p.requires_grad_(True)
    linears = linears_of(student)
    METHODS["magnitude"]().prune(linears, 0.7)
    teacher = make_teacher(teacher_model)
    inputs, _ = next(iter(random_batches(seed=1)))

    def gap():  # what distillation minimises: the hidden-state distance to the teacher
        with torch.no_grad():
            _, s_hidden = logits_and_hidden(student, inputs)
            _, t_hidden = logits_and_hidden(teacher, inputs)
        return float(sum((s - t).pow(2).mean() for s, t in zip(s_hidden, t_hidden)))

    before = gap()
    with MaskGuard(linears) as guard:
        guard.set({n: m.weight != 0 for n, m in linears.items()})
        Trainer(student, random_batches(), TrainConfig(lr=1e-3), teacher=teacher, guard=guard).run(15)
    assert gap() < 0.5 * before


def test_gradual_distill_job_on_digits():
    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.5, 0.9], "schedule": "gradual",
                       "recovery": "distill", "steps": 10, "finetune_steps": 5, "lr": 1e-3, "batch_size": 64})
    ctx = RunContext()
    run_prune(spec, ctx)
    sparsity, accuracy = ctx.values("sparsity"), ctx.values("accuracy")
    assert sparsity[0.5] == pytest.approx(0.5, abs=1e-3) and sparsity[0.9] == pytest.approx(0.9, abs=1e-3)
    dense = ctx.values("dense_accuracy")[None]
    assert dense > 0.9 and accuracy[0.5] > dense - 0.05  # 50% of an MLP is nearly free
    # the one layout of every pruning run: masks and weights per target, the model, the views
    assert {"masks@0.5", "pruned@0.5", "masks@0.9", "pruned@0.9", "model", "views"} <= set(ctx.artifacts)
    assert ctx.facts["recovery"]["recovery"] == "distill"
    assert ctx.fraction == 1.0 and ctx.message == "done"


def test_neuron_removal_with_finetune_shrinks_digits_mlp():
    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.5], "pattern": "neurons",
                       "recovery": "finetune", "steps": 5, "lr": 1e-3})
    ctx = RunContext()
    run_prune(spec, ctx)
    params = ctx.values("model_params")[0.5]
    # 64-256-128-10 -> 64-128-64-10: (64*128+128) + (128*64+64) + (64*10+10)
    assert params == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert ctx.values("unit_sparsity")[0.5] == pytest.approx(0.5)
    # the prunable layers lost 3/4 of their weights: 64x256 -> 64x128 and 256x128 -> 128x64
    assert ctx.values("sparsity")[0.5] == pytest.approx(1 - (128 * 64 + 64 * 128) / (256 * 64 + 128 * 256))
    assert {"masks@0.5", "pruned@0.5", "plan@0.5", "model"} <= set(ctx.artifacts)


@pytest.mark.parametrize("fields", [
    {"schedule": "gradual", "recovery": "finetune", "steps": 6, "finetune_steps": 2},
    {"recovery": "finetune", "steps": 4},
    {"pattern": "neurons", "recovery": "finetune", "steps": 4},
    {"pattern": "neurons"},
    {"method": "sparsegpt", "calibration_samples": 64},
], ids=["gradual", "oneshot-finetune", "neurons-finetune", "neurons", "oneshot-sparsegpt"])
def test_load_pruned_rebuilds_what_the_run_evaluated(fields, evaluated_states):
    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.5, 0.75], "lr": 1e-2,
                       "batch_size": 64, **fields})
    ctx = RunContext()
    run_prune(spec, ctx)
    evaluated = dict(zip(spec.sparsities, evaluated_states[-2:]))  # recovery evaluates the dense model first
    parent = ctx.as_parent(3, spec)
    assert parent.targets() == [0.5, 0.75]
    for target, state in evaluated.items():
        loaded = load_pruned(parent, target).model.state_dict()
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state), target


def test_unit_pruning_without_recovery_needs_no_training_data():
    # an encoder with no labelled split can still lose heads, checked from its catalog entry
    preflight_prune(parse_spec({"kind": "prune", "model": "minilm-l6", "sparsities": [0.5], "pattern": "heads"}),
                    None)


@pytest.mark.parametrize("fields, field, words", [
    ({"model": "digits-mlp", "pattern": "heads"}, "pattern", "no attention heads"),
    ({"model": "digits-mlp", "schedule": "gradual"}, "recovery", "pick finetune or distill"),
    ({"model": "minilm-l6", "recovery": "distill"}, "recovery", "minilm-l6-rt is minilm-l6 fine-tuned"),
    ({"model": "smollm2-135m", "recovery": "finetune"}, "recovery", "only digits-mlp, minilm-l6-rt"),
    ({"model": "digits-mlp", "pattern": "2:4", "schedule": "gradual", "recovery": "finetune"}, "schedule", "oneshot"),
    ({"model": "digits-mlp", "method": "wanda", "recovery": "finetune"}, "method", "data-free"),
])
def test_bad_recovery_specs_are_refused_before_queueing(fields, field, words):
    with pytest.raises(SpecError) as err:
        preflight_prune(parse_spec({"kind": "prune", "sparsities": [0.5], **fields}), None)
    assert words in err.value.errors[field]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gradual_pruning_trains_on_the_gpu():
    model = tiny_classifier().to("cuda")
    linears = linears_of(model)
    with MaskGuard(linears) as guard:
        trainer = Trainer(model, random_batches(), TrainConfig(lr=1e-3), guard=guard)
        gradual_prune(trainer, lambda s: METHODS["magnitude"]().prune(linears, s), 0.0, 0.5, steps=4, prune_every=2)
    assert all(m.weight.is_cuda and float((m.weight == 0).float().mean()) >= 0.5 for m in linears.values())
