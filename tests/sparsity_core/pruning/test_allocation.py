"""Layer-wise sparsity allocation (pruning/allocation.py): ERK and OWL ratios computed by hand on
toys, per-layer sparsities reaching `prune`, and what the spec refuses."""

import pytest
import torch
from torch import nn

from sparsity_core.pruning import METHODS
from sparsity_core.pruning.allocation import (
    erk_densities,
    erk_sparsities,
    layer_sparsities,
    outlier_ratio,
    owl_outlier_ratios,
    owl_sparsities,
)
from sparsity_core.specs import SpecError, parse_spec


def test_erk_two_layers_by_hand():
    # a: 4x4, (4 + 4) / 16 = 0.5; b: 2 out x 8 in, (8 + 2) / 16 = 0.625; 16 weights each.
    # density 0.5 keeps 16 of 32: eps (0.5 * 16 + 0.625 * 16) = 16, eps = 8/9
    dens = erk_densities({"a": (4, 4), "b": (2, 8)}, 0.5)
    assert dens["a"] == pytest.approx(4 / 9) and dens["b"] == pytest.approx(5 / 9)
    sp = erk_sparsities({"a": (4, 4), "b": (2, 8)}, 0.5)
    assert sp["a"] == pytest.approx(5 / 9) and sp["b"] == pytest.approx(4 / 9)


def test_erk_caps_a_layer_at_density_one_and_solves_the_rest_again():
    # a: 1x2, raw 3/2, 2 weights; b: 8x8, raw 1/4, 64 weights; keep 33 of 66.
    # eps = 33 / (1.5 * 2 + 0.25 * 64) = 33/19 puts a at 2.6 > 1: a dense, b keeps 33 - 2 = 31 of 64
    dens = erk_densities({"a": (1, 2), "b": (8, 8)}, 0.5)
    assert dens == {"a": 1.0, "b": pytest.approx(31 / 64)}
    assert erk_sparsities({"a": (1, 2), "b": (8, 8)}, 0.0) == {"a": 0.0, "b": 0.0}


def test_owl_formula_by_hand_and_its_mean_is_the_target():
    # D = 1, 3, 2: min-max scaled into [0, 2 lambda] = 0, 0.16, 0.08, mean 0.08
    # sparsity = target + mean - scaled = 0.78, 0.62, 0.70
    assert owl_sparsities([1.0, 3.0, 2.0], 0.7, 0.08) == pytest.approx([0.78, 0.62, 0.70])
    # weighted by block sizes 2, 1, 1: mean of scaled (0 * 2 + 0.16 + 0.08) / 4 = 0.06
    out = owl_sparsities([1.0, 3.0, 2.0], 0.7, 0.08, sizes=[2, 1, 1])
    assert out == pytest.approx([0.76, 0.60, 0.68])
    assert (2 * out[0] + out[1] + out[2]) / 4 == pytest.approx(0.7)
    assert owl_sparsities([2.0, 2.0], 0.5, 0.08) == [0.5, 0.5]  # no outlier difference: uniform
    assert owl_sparsities([1.0, 3.0], 0.0, 0.08) == [0.0, 0.0]  # the dense reference stays dense


def test_owl_clips_at_zero_and_keeps_the_mean():
    out = owl_sparsities([0.0, 1.0, 2.0, 3.0], 0.05, 0.08)  # unclipped: 0.13, 0.077, 0.023, -0.03
    assert min(out) == 0.0 and sum(out) / 4 == pytest.approx(0.05)
    assert out == sorted(out, reverse=True)  # more outliers, fewer zeros


def test_outlier_ratio_counts_scores_above_m_times_the_block_mean():
    # 98 ones and two 100s: mean 2.98, 5 x mean = 14.9, two outliers of 100 scores
    scores = torch.ones(100)
    scores[[3, 40]] = 100.0
    assert outlier_ratio([scores[:50], scores[50:]], 5.0) == pytest.approx(0.02)
    assert outlier_ratio([scores], 200.0) == 0.0


def _block(outliers: int) -> dict[str, nn.Module]:
    layer = nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.weight.view(-1)[:outliers] = 100.0  # planted outliers
    return {f"b{outliers}": layer}


def test_owl_follows_a_hand_made_outlier_profile():
    groups = [_block(0), _block(3), _block(1)]  # 0, 3, 1 outliers of 100 weights
    stats = {name: {"sq_sum": torch.ones(10)} for g in groups for name in g}  # ||X_j|| = 1: score = |W|
    ratios = owl_outlier_ratios(groups, stats, m=5.0)
    assert ratios == pytest.approx([0.0, 0.03, 0.01])
    per_layer = layer_sparsities("owl", groups, 0.6, ratios, lam=0.1)
    # scaled 0, 0.2, 0.0667 (mean 0.0889): the block with most outliers is pruned least
    assert per_layer == pytest.approx({"b0": 0.6889, "b3": 0.4889, "b1": 0.6222}, abs=1e-4)
    assert sum(per_layer.values()) / 3 == pytest.approx(0.6)


def test_per_layer_sparsities_reach_each_layer_and_global_refuses_them():
    torch.manual_seed(0)
    linears = {"a": nn.Linear(8, 4), "b": nn.Linear(8, 4)}
    masks = METHODS["magnitude"]().prune(linears, {"a": 0.25, "b": 0.75})
    assert [int((~masks[n]).sum()) for n in "ab"] == [8, 24]
    with pytest.raises(ValueError, match="per-layer sparsities need the layer scope"):
        METHODS["magnitude"]().prune(linears, {"a": 0.25, "b": 0.75}, scope="global")
    with pytest.raises(ValueError, match="no sparsity given for layer 'b'"):
        METHODS["magnitude"]().prune(linears, {"a": 0.25})


@pytest.mark.parametrize("change, field, words", [
    ({"allocation": "owl", "scope": "global"}, "allocation", "use scope layer"),
    ({"allocation": "erk", "pattern": "2:4"}, "allocation", "use the unstructured pattern"),
    ({"allocation": "owl", "pattern": "block:4x4"}, "allocation", "use the unstructured pattern"),
    ({"allocation": "erk", "pattern": "neurons", "method": "magnitude"}, "allocation", "unstructured"),
    ({"allocation": "owl", "owl_m": 0.5}, "owl_m", "greater than or equal to 1"),
    ({"allocation": "owl", "owl_lambda": 0.5}, "owl_lambda", "less than or equal to 0.3"),
    ({"allocation": "mixed"}, "allocation", "'uniform', 'owl', 'erk' or 'greedy'"),
    ({"allocation": "greedy"}, "allocation", "greedy allocates activation sparsity"),
])
def test_the_spec_refuses_what_an_allocation_cannot_do(change, field, words):
    with pytest.raises(SpecError) as err:
        parse_spec({"kind": "prune", "model": "digits-mlp", "method": "wanda", "sparsities": [0.5], **change})
    assert words in err.value.errors[field]


def test_catalog_names_match_the_spec():
    from typing import get_args

    from sparsity_core.catalog.pruning import ALLOCATIONS, CALIBRATIONS
    from sparsity_core.specs import PruneSpec

    assert get_args(PruneSpec.model_fields["allocation"].annotation) == tuple(ALLOCATIONS)
    assert get_args(PruneSpec.model_fields["calibration"].annotation) == tuple(CALIBRATIONS)


def test_allocation_bars_pair_allocated_with_reached_and_group_many_layers_by_block():
    import pandas as pd

    from sparsity_core.reports.pruning import allocation_bars, allocation_targets

    rows = [(1, key, f"model.layers.{b}.mlp.{k}", 0.7, value) for b in range(12) for k in ("up", "down", "gate")
            for key, value in (("layer_target", 0.6 + b / 100), ("layer_sparsity", 0.61 + b / 100))]
    frame = pd.DataFrame(rows, columns=["run_id", "key", "series", "x", "value"])
    assert allocation_targets(frame, 1) == [0.7] and allocation_targets(frame, 2) == []
    fig = allocation_bars(frame, 1, 0.7)  # 36 layers: one pair of bars per block
    allocated, reached = fig.data
    assert (allocated.name, reached.name) == ("allocated", "reached")
    assert list(allocated.x) == [f"block {b}" for b in range(12)]
    assert list(allocated.y) == pytest.approx([0.6 + b / 100 for b in range(12)])
    assert "no layer-wise allocation" in allocation_bars(frame, 1, 0.5).layout.annotations[0].text
