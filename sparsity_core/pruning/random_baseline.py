"""Random pruning: the baseline every method should beat.

Scores are seeded uniform noise (seed + a hash of the layer name), so a run is reproducible and
every layer gets its own draw.
"""

import zlib

import torch
from torch import Tensor

from sparsity_core.pruning.base import PruningMethod, register_method


@register_method
class RandomPruning(PruningMethod):
    name = "random"

    def score(self, name: str, weight: Tensor, stats=None) -> Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(name.encode()))
        return torch.rand(weight.shape, generator=gen).to(weight.device)
