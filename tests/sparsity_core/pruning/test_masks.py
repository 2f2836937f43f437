"""Patterns: parsing, N:M groups, whole blocks, shape checks (tiny tensors, checkable by hand)."""

import pytest
import torch

from sparsity_core.catalog.pruning import Pattern, parse_pattern, shape_problem
from sparsity_core.pruning.masks import pattern_mask, row_mask


def test_parse_patterns():
    assert parse_pattern("2:4") == Pattern("nm", n=2, m=4)
    assert parse_pattern("block:16x8") == Pattern("block", rows=16, cols=8)
    assert parse_pattern("unstructured").kind == "unstructured"
    assert parse_pattern("2:4").min_sparsity == 0.5
    for bad in ("4:2", "0:4", "block:0x4", "diagonal"):
        with pytest.raises(ValueError):
            parse_pattern(bad)


def test_two_four_of_one_to_eight():
    # the torchao example: [1..8] pruned 2:4 keeps the two largest of each group of four
    w = torch.arange(1.0, 9.0).reshape(1, 8)
    mask = pattern_mask(w.abs(), 0.5, parse_pattern("2:4"))
    assert (w * mask).tolist() == [[0, 0, 3, 4, 0, 0, 7, 8]]


@pytest.mark.parametrize("pattern,target", [("2:4", 0.5), ("4:8", 0.5), ("2:4", 0.7), ("1:4", 0.75)])
def test_every_nm_group_has_at_least_m_minus_n_zeros(pattern, target):
    pat = parse_pattern(pattern)
    scores = torch.rand(16, 32, generator=torch.Generator().manual_seed(0))
    mask = pattern_mask(scores, target, pat)
    zeros_per_group = (~mask).reshape(16, -1, pat.m).sum(-1)
    assert (zeros_per_group >= pat.m - pat.n).all()
    assert abs((~mask).float().mean().item() - target) < 1 / mask.numel() + 1e-6


def test_block_masks_are_whole_blocks():
    scores = torch.rand(8, 12, generator=torch.Generator().manual_seed(1))
    mask = pattern_mask(scores, 0.5, parse_pattern("block:4x3"))
    tiles = mask.reshape(2, 4, 4, 3).permute(0, 2, 1, 3).reshape(8, 12)  # one row per tile
    assert ((tiles.all(1)) | (~tiles).all(1)).all()  # each tile all kept or all pruned
    assert (~tiles.all(1)).sum() == 4  # half of the 8 tiles


def test_block_prunes_lowest_sum_tile():
    scores = torch.ones(4, 4)
    scores[2:, :2] = 0.1  # the bottom-left 2x2 tile is the weakest
    mask = pattern_mask(scores, 0.25, parse_pattern("block:2x2"))
    assert (~mask).nonzero().tolist() == [[2, 0], [2, 1], [3, 0], [3, 1]]


def test_row_mask_prunes_each_row_equally():
    scores = torch.tensor([[1.0, 2, 3, 4], [40, 30, 20, 10]])
    assert row_mask(scores, 0.5).tolist() == [[False, False, True, True], [True, True, False, False]]


def test_shape_problem_messages():
    assert shape_problem(parse_pattern("2:4"), (8, 16)) is None
    assert "divisible by 4" in shape_problem(parse_pattern("2:4"), (8, 10))
    assert "does not tile" in shape_problem(parse_pattern("block:16x16"), (384, 1000))
