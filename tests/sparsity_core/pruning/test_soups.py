"""Sparse model soups (Zimmer et al. 2023): the mean of fine-tuned copies of one pruned model keeps
its mask; checked on hand-made state dicts, then through the job on digits-mlp (a few seconds)."""

from __future__ import annotations

import pytest
import torch

from sparsity_core.jobs.context import RunContext
from sparsity_core.pruning.checks import preflight_prune
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import SCHEMA_VERSION, SpecError, parse_spec
from sparsity_core.training import UniformSoup


def soup_of(*states):
    soup = UniformSoup()
    for state in states:
        soup.add(state)
    return soup.state()


def test_a_soup_of_two_identical_ingredients_is_that_ingredient_and_keeps_every_zero():
    w = torch.tensor([[0.0, 1.5, 0.0, -2.0], [0.3, 0.0, 0.0, 7.0]])
    state = {"w": w, "b": torch.tensor([0.25, -1.0]), "steps": torch.tensor([3])}
    soup = soup_of(state, {k: v.clone() for k, v in state.items()})
    assert all(torch.equal(soup[k], state[k]) for k in state)  # bit for bit, not approximately
    assert torch.equal(soup["w"] == 0, w == 0)


def test_a_soup_of_two_different_ingredients_is_their_mean_on_the_mask_and_zero_off_it():
    mask = torch.tensor([[False, True, False, True]])
    a = {"w": torch.tensor([[0.0, 1.0, 0.0, -2.0]]), "frozen": torch.tensor([0.1]), "ids": torch.tensor([5])}
    b = {"w": torch.tensor([[0.0, 3.0, 0.0, 4.0]]), "frozen": torch.tensor([0.1]), "ids": torch.tensor([5])}
    soup = soup_of(a, b)
    assert soup["w"].tolist() == [[0.0, 2.0, 0.0, 1.0]]  # (1 + 3) / 2, (-2 + 4) / 2; zeros stay zero
    assert not soup["w"][~mask].any()
    assert torch.equal(soup["frozen"], a["frozen"]) and soup["ids"].dtype == torch.int64


def test_a_soup_refuses_ingredients_of_different_models():
    soup = UniformSoup()
    soup.add({"w": torch.zeros(2)})
    with pytest.raises(ValueError, match="one architecture"):
        soup.add({"v": torch.zeros(2)})
    with pytest.raises(ValueError, match="empty soup"):
        UniformSoup().state()


def test_a_soups_run_on_digits_records_each_ingredient_their_mean_best_and_the_soup(evaluated_states):
    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.8], "recovery": "finetune",
                       "steps": 6, "lr": 1e-2, "batch_size": 64, "train_rows": 256, "soup_ingredients": 2})
    preflight_prune(spec)
    ctx = RunContext()
    run_prune(spec, ctx)
    ing = [ctx.values("accuracy", f"ingredient {i}")[0.8] for i in range(2)]
    assert ctx.values("accuracy", "ingredient mean")[0.8] == pytest.approx(sum(ing) / 2)
    assert ctx.values("accuracy", "ingredient best")[0.8] == max(ing)
    assert 0.8 in ctx.values("accuracy")  # the soup is the target's result
    assert ctx.values("sparsity")[0.8] == pytest.approx(0.8, abs=1e-3)
    assert ctx.facts["recovery"]["soup"]["seeds"] == [0, 1]
    # evaluations: dense, ingredient 0, ingredient 1, the soup
    assert len(evaluated_states) == 4
    dense, first, second, soup = evaluated_states
    for name in ("body.0.weight", "body.2.weight"):
        assert not torch.equal(first[name], second[name])  # other seeds, other data orders
        assert torch.equal(first[name] == 0, second[name] == 0)  # one mask
        assert torch.allclose(soup[name], (first[name] + second[name]) / 2)
        assert torch.equal(soup[name][first[name] == 0], torch.zeros_like(soup[name][first[name] == 0]))
        assert float((soup[name] == 0).float().mean()) == pytest.approx(0.8, abs=1e-3)


@pytest.mark.parametrize("fields, words", [
    ({"soup_ingredients": 2}, "pick finetune or distill"),
    ({"soup_ingredients": 2, "recovery": "finetune", "schedule": "gradual"}, "use the oneshot schedule"),
    ({"soup_ingredients": 2, "recovery": "finetune", "pattern": "neurons"}, "not heads or neurons"),
    ({"soup_ingredients": 2, "recovery": "finetune", "pattern": "2:4", "nm_training": "sr_ste"}, "fixed_mask"),
])
def test_soups_that_cannot_run_are_refused_beside_the_field(fields, words):
    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.5], **fields})
    with pytest.raises(SpecError) as err:
        preflight_prune(spec)
    assert words in err.value.errors["soup_ingredients"]


def test_soup_bounds_and_stored_specs_without_the_field():
    with pytest.raises(SpecError) as err:
        parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.5], "soup_ingredients": 9})
    assert "8" in err.value.errors["soup_ingredients"]
    # a spec stored before soups existed (any stored version) reads with no soup and fixed masks
    for version in range(1, SCHEMA_VERSION + 1):
        old = parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.5], "recovery": "finetune"},
                         version=version)
        assert (old.soup_ingredients, old.nm_training, old.srste_decay) == (0, "fixed_mask", 2e-4)
    preflight_prune(parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0.5], "soup_ingredients": 1}))
