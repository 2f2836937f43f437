"""mutual_choice: tokens and latents choose each other (Ayonrinde 2024).

The k x batch largest (token, latent) pairs of the whole batch are kept, with no per-latent cap
(and batchtopk's generous 4k per-token cap, which keeps selection cheap), so both sides adapt: a
hard token takes more latents and a broad latent more tokens.
Unlike batchtopk, inference uses a threshold per latent (as feature choice does), and the AuxK loss
keeps latents from dying, since nothing here guarantees a latent any tokens.
"""

from __future__ import annotations

from sparsity_core.sae.base import register_variant
from sparsity_core.sae.batchtopk import BatchTopKSAE
from sparsity_core.sae.feature_choice import FeatureChoiceSAE


@register_variant
class MutualChoiceSAE(BatchTopKSAE):
    name = "mutual_choice"

    def __init__(self, d_in, d_sae, k=32, l1_coeff=None, seed=0):
        super().__init__(d_in, d_sae, k, l1_coeff, seed)
        self.register_buffer("thresholds", self.b_enc.detach().new_zeros(d_sae))

    after_select = FeatureChoiceSAE.after_select
    encode = FeatureChoiceSAE.encode
    calibrate = FeatureChoiceSAE.calibrate
