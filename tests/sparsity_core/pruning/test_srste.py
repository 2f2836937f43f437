"""N:M training with SR-STE (Zhou et al. 2021): the forward always sees an N:M weight, the dense
weights keep training, the decay reaches only pruned weights (one SGD step by hand), the end is
exactly N:M; and the job path on digits-mlp next to fixed-mask fine-tuning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsity_core.jobs.context import RunContext
from sparsity_core.pruning.artifacts import load_pruned
from sparsity_core.pruning.checks import preflight_prune
from sparsity_core.pruning.masks import nm_mask
from sparsity_core.pruning.run import run_prune
from sparsity_core.reports.compare import config_table
from sparsity_core.specs import SpecError, parse_spec
from sparsity_core.training import SRSTE, ShuffledBatches, TrainConfig, Trainer


class Toy(nn.Module):
    """features (the layer SR-STE trains) -> head, the shape the Trainer's MLP path expects."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.features(x))


def toy_batches() -> ShuffledBatches:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return ShuffledBatches(64, 16, 0, lambda idx: (x[idx], y[idx]))


def nonzeros_per_group(weight: torch.Tensor, m: int = 4) -> torch.Tensor:
    return (weight.reshape(weight.shape[0], -1, m) != 0).sum(-1)


def test_srste_forward_sees_2_to_4_every_step_dense_weights_train_and_the_end_is_exactly_2_to_4():
    model = Toy()
    layer = model.features
    seen = []
    hook = layer.register_forward_pre_hook(lambda mod, args: seen.append(mod.weight.detach().clone()))
    try:
        with SRSTE({"features": layer}, lambda s: nm_mask(s, 2, 4)) as guard:
            Trainer(model, toy_batches(), TrainConfig(lr=5e-2), guard=guard).run(12)
            assert (layer.weight != 0).all()  # between steps the weights are dense: SR-STE keeps them
            masks = guard.finish()
    finally:
        hook.remove()
    assert len(seen) == 12
    for effective in seen:  # the weight each forward used: 2 of every 4 kept
        assert (nonzeros_per_group(effective) == 2).all()
    assert len({tuple(w.flatten().ne(0).tolist()) for w in seen}) > 1  # masks were recomputed and moved
    assert (nonzeros_per_group(layer.weight) == 2).all()
    assert torch.equal(masks["features"], layer.weight != 0)
    assert torch.equal(masks["features"], nm_mask(layer.weight.abs(), 2, 4))
    assert len(guard.flips) == 12 and max(guard.flips) > 0


@pytest.mark.parametrize("decay, expected_grad, expected", [
    # W = [1, -2, 3, -4]: 2:4 keeps 3 and -4. Forward with [0, 0, 3, -4]; loss = sum(W~ x), x = 1s,
    # so dloss/dW~ = [1, 1, 1, 1] goes straight through to all four; decay adds lambda * W on the
    # pruned two only: [0.5 * 1, 0.5 * -2, 0, 0]. SGD, lr 0.1: W - 0.1 * grad.
    (0.5, [1.5, 0.0, 1.0, 1.0], [0.85, -2.0, 2.9, -4.1]),
    (0.0, [1.0, 1.0, 1.0, 1.0], [0.9, -2.1, 2.9, -4.1]),
])
def test_srste_decay_reaches_only_pruned_weights_one_sgd_step_by_hand(decay, expected_grad, expected):
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, -4.0]]))
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    with SRSTE({"l": layer}, lambda s: nm_mask(s, 2, 4), decay=decay) as guard:
        guard.before_forward()
        assert layer.weight.tolist() == [[0.0, 0.0, 3.0, -4.0]]  # what the forward sees
        layer(torch.ones(1, 4)).sum().backward()
        guard.after_backward()
        assert layer.weight.tolist() == [[1.0, -2.0, 3.0, -4.0]]  # the dense weights are back
        assert layer.weight.grad[0].tolist() == pytest.approx(expected_grad)
        opt.step()
        guard.after_step()
    assert layer.weight[0].tolist() == pytest.approx(expected)
    assert guard.masks["l"].tolist() == [[False, False, True, True]]


def test_srste_puts_the_dense_weights_back_when_a_step_fails():
    layer = nn.Linear(4, 2, bias=False)
    dense = layer.weight.detach().clone()
    with pytest.raises(RuntimeError, match="boom"):
        with SRSTE({"l": layer}, lambda s: nm_mask(s, 2, 4)) as guard:
            guard.before_forward()
            raise RuntimeError("boom")
    assert torch.equal(layer.weight, dense)


def test_srste_and_fixed_mask_runs_on_digits_end_exactly_2_to_4_and_compare_by_their_setting():
    base = {"kind": "prune", "model": "digits-mlp", "sparsities": [0.5], "pattern": "2:4", "recovery": "finetune",
            "steps": 8, "lr": 1e-2, "batch_size": 64, "train_rows": 256}
    runs = {}
    for training in ("fixed_mask", "sr_ste"):
        spec = parse_spec({**base, "nm_training": training})
        preflight_prune(spec)
        ctx = RunContext()
        run_prune(spec, ctx)
        assert ctx.values("sparsity")[0.5] == pytest.approx(0.5)
        model = load_pruned(ctx.as_parent(1, spec), 0.5).model
        for layer in (model.body[0], model.body[2]):
            assert (nonzeros_per_group(layer.weight) <= 2).all()  # exactly N:M (a 0 weight may be kept)
        runs[training] = (spec, ctx)
    srste_ctx = runs["sr_ste"][1]
    assert srste_ctx.facts["recovery"]["srste"]["decay"] == 2e-4
    assert set(srste_ctx.facts["srste_flip_rate"]["0.5"]) == {"first_tenth", "last_tenth"}
    # the compare page's settings table tells the two runs apart by nm_training
    import pandas as pd

    frame = pd.DataFrame([{"id": i, "kind": "prune", "model": "digits-mlp", "method": "magnitude",
                           "status": "succeeded", "name": None, "parent_run": None,
                           "spec": spec.model_dump(mode="json"), "info": {}}
                          for i, (spec, _) in enumerate(runs.values(), start=1)])
    table = config_table(frame, differences_only=True)
    assert list(table.index) == ["nm_training"]
    assert table.loc["nm_training"].tolist() == ["fixed_mask", "sr_ste"]


@pytest.mark.parametrize("fields, field, words", [
    ({"pattern": "unstructured", "nm_training": "sr_ste", "recovery": "finetune"}, "nm_training", "N:M patterns"),
    ({"pattern": "2:4", "nm_training": "sr_ste"}, "nm_training", "pick recovery finetune or distill"),
    ({"pattern": "2:4", "nm_training": "sr_ste", "recovery": "finetune", "method": "random"}, "method",
     "pick magnitude"),
    ({"pattern": "2:4", "schedule": "gradual", "recovery": "finetune"}, "schedule", "sr_ste"),
])
def test_srste_specs_that_cannot_run_are_refused(fields, field, words):
    with pytest.raises(SpecError) as err:
        preflight_prune(parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.5], **fields}))
    assert words in err.value.errors[field]


def test_srste_decay_is_bounded():
    with pytest.raises(SpecError) as err:
        parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.5], "srste_decay": -1})
    assert "srste_decay" in err.value.errors
