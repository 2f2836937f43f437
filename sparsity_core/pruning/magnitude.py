"""Magnitude pruning: drop the weights with the smallest |w| (Han et al., 2015).

Layer scope prunes every layer to the target; global scope uses one threshold for the whole
model, so layers with many small weights end up sparser than others.
"""

from torch import Tensor

from sparsity_core.pruning.base import PruningMethod, register_method


@register_method
class Magnitude(PruningMethod):
    name = "magnitude"

    def score(self, name: str, weight: Tensor, stats=None) -> Tensor:
        return weight.abs()
