import torch
from torch import nn

from sparsity_core.pruning import METHODS
from sparsity_core.pruning.masks import global_masks, measured_sparsity, unstructured_mask


def linear_with(rows):
    weight = torch.tensor(rows, dtype=torch.float32)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data = weight
    return layer


def test_layer_scope_zeroes_the_smallest_magnitudes():
    layer = linear_with([[1.0, -8.0, 3.0, -2.0], [5.0, 0.5, -7.0, 6.0]])
    METHODS["magnitude"]().prune({"fc": layer}, 0.5, scope="layer")
    # |w| sorted: 0.5 1 2 3 | 5 6 7 8 -> the four smallest go
    assert layer.weight.tolist() == [[0.0, -8.0, 0.0, 0.0], [5.0, 0.0, -7.0, 6.0]]


def test_global_scope_uses_one_threshold_across_layers():
    small = linear_with([[0.1, 0.2], [0.3, 0.4]])
    big = linear_with([[1.0, 2.0], [3.0, 4.0]])
    METHODS["magnitude"]().prune({"small": small, "big": big}, 0.5, scope="global")
    assert small.weight.abs().sum() == 0  # all of the small layer goes first
    assert big.weight.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_masks_and_measurement():
    scores = torch.arange(1.0, 11.0)
    assert unstructured_mask(scores, 0.3).tolist() == [False] * 3 + [True] * 7
    masks = global_masks({"a": torch.tensor([1.0, 9.0]), "b": torch.tensor([5.0, 2.0])}, 0.5)
    assert masks["a"].tolist() == [False, True] and masks["b"].tolist() == [True, False]
    overall, per_layer = measured_sparsity({"a": torch.tensor([0.0, 1.0, 0.0, 0.0]), "b": torch.ones(4)})
    assert overall == 3 / 8 and per_layer == {"a": 0.75, "b": 0.0}
