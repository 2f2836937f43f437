"""What pruning did to an SAE's features, on decoders a person can check by hand."""

import numpy as np
import pandas as pd

from sparsity_core.reports.feature_diff import dense_counterpart, fate_counts, feature_fates
from sparsity_core.sae.compare import match_features

# dense SAE A: three axis directions, a dead latent, and -y; pruned SAE B: x, a direction between
# y and z, and -x
DEC_A = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, -1, 0]], dtype=np.float32)
DEC_B = np.array([[1, 0, 0], [0, 0.8, 0.6], [-1, 0, 0]], dtype=np.float32)


def _features(densities):
    return pd.DataFrame({"latent": range(len(densities)), "density": densities,
                         "top_tokens": [f"t{i}" for i in range(len(densities))]})


def test_fates_follow_the_decoder_cosines():
    fates = feature_fates(match_features(DEC_A, DEC_B), match_features(DEC_B, DEC_A),
                          _features([0.1, 0.2, 0.05, 0.0, 0.01]), _features([0.1, 0.3, 0.02]))
    by_a = fates[fates["fate"] != "new"].set_index("latent_a")
    # x -> x (1.0) and y -> (0, .8, .6) (0.8): kept; z -> (0, .8, .6) (0.6): moved; -y: nothing close
    assert by_a.loc[0, ["fate", "latent_b", "cosine"]].tolist() == ["kept", 0, 1.0]
    assert by_a.loc[1, ["fate", "latent_b", "cosine"]].tolist() == ["kept", 1, 0.8]
    assert by_a.loc[2, ["fate", "latent_b", "cosine"]].tolist() == ["moved", 1, 0.6]
    assert by_a.loc[4, "fate"] == "lost"
    assert 3 not in by_a.index  # dead in A: its decoder is noise, no fate
    new = fates[fates["fate"] == "new"]
    assert new["latent_b"].tolist() == [2]  # -x: nothing in A points its way
    assert fate_counts(fates) == {"kept": 2, "moved": 1, "lost": 1, "new": 1}
    assert fates.loc[fates["latent_a"] == 2, "top_tokens_b"].item() == "t1"


def test_the_dense_counterpart_is_the_newest_same_setup_run_without_a_parent():
    setup = {"model": "minilm-l6", "layer": 3, "site": "resid", "data": "all", "context": 128, "variant": "topk",
             "expansion": 8}
    pruned = {**setup, "parent_run": 4}
    candidates = [(9, {**setup, "parent_run": 4}), (8, {**setup, "layer": 2}), (7, setup), (5, setup)]
    assert dense_counterpart(pruned, candidates) == 7
    assert dense_counterpart(setup, candidates) is None  # a dense run has no dense counterpart to find
    assert dense_counterpart({**pruned, "variant": "relu_l1"}, candidates) is None
