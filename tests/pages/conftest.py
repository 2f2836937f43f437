"""Page-test helpers: where a message shows in the element tree of an AppTest, and finished SAE
runs written by hand for the SAE and compare pages."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

from db import repo
from sparsity_core.jobs import submit
from sparsity_core.specs import parse_spec


def find(node, key: str):
    """(siblings, index) of the widget with `key` in the element tree, or None when it is not drawn."""
    children = list(getattr(node, "children", {}).values())
    for i, child in enumerate(children):
        if getattr(child, "key", None) == key:
            return children, i
        found = find(child, key)
        if found:
            return found
    return None


def messages_below(at, key: str, stop: Optional[set[str]] = None) -> Optional[list[str]]:
    """The error messages drawn right after widget `key`, in its block, up to the next widget
    (or, with `stop`, the next widget whose key is in `stop`); None when `key` is not drawn."""
    found = find(at._tree, key)
    if found is None:
        return None
    siblings, i = found
    found = []
    for sibling in siblings[i + 1:]:
        sibling_key = getattr(sibling, "key", None)
        if sibling_key is not None and (stop is None or sibling_key in stop):
            break
        if type(sibling).__name__ == "Error":
            found.append(sibling.value)
    return found


@pytest.fixture
def below():
    return messages_below


SAE_METRICS = [{"key": "l0", "value": 32.0}, {"key": "fve", "value": 0.9}, {"key": "train_fve", "x": 4096, "value": 0.5},
               {"key": "log_density", "x": -1.0, "value": 1.0}]


@pytest.fixture
def sae_run(store):
    """A factory of succeeded SAE runs with the artifacts the browser reads, written by hand (no
    training): with `decoder`, also the SAE weights (`W_dec`) that side-by-side matching reads;
    with `parent`, an SAE on that pruning run's model; `metrics` replace the default few."""

    def make(decoder=None, parent=None, variant: str = "topk", metrics: Optional[list[dict]] = None) -> int:
        spec = {"kind": "sae", "model": "minilm-l6", "tokens": 8192, "data": "rotten_tomatoes", "variant": variant}
        if parent is None:
            run_id = submit(spec, status="running", worker="test")
        else:  # stored as it is: the pre-run check would look for the parent's pruned weights
            spec = parse_spec({**spec, "parent_run": parent}).model_dump(mode="json")
            run_id = repo.create_run(kind="sae", model="minilm-l6", spec=spec, spec_version=2, parent_run_id=parent,
                                     method=variant)
        folder = store / "artifacts" / f"run-{run_id:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        # latent 0 fires on 10% of tokens (dense: hidden by default); selectivity = mean top-context
        # activation / mean activation: latent 0: 2.0 / 1.0 = 2, latent 1: (3 + 1) / 2 / 2.0 = 1,
        # latent 2: (2.5 + 1.5) / 2 / 0.5 = 4, the most selective: the browser opens on it
        features = pd.DataFrame({"latent": [0, 1, 2], "density": [0.1, 0.01, 0.004],
                                 "log10_density": [-1.0, -2.0, -2.4], "mean_activation": [1.0, 2.0, 0.5],
                                 "max_activation": [2.0, 3.0, 2.5], "top_tokens": ["movie", "bad", "<script>"],
                                 "act_hist": [[0] * 35, [1] * 35, [2] * 35]})
        contexts = pd.DataFrame({"latent": [0, 1, 1, 2, 2], "rank": [0, 0, 1, 0, 1],
                                 "activation": [2.0, 3.0, 1.0, 2.5, 1.5],
                                 "left": ["a great", "a really", "not", "see <b>", "the"],
                                 "token": ["movie", "bad", "bad", "<script>", "tag"],
                                 "right": ["!", "film", "at all", "alert(1)", "& co"]})
        for name, frame in (("features", features), ("contexts", contexts)):
            frame.to_parquet(folder / f"{name}.parquet")
            repo.add_artifact(run_id, name, folder / f"{name}.parquet", "parquet")
        (folder / "saelens").mkdir()
        (folder / "saelens" / "cfg.json").write_text("{}")
        repo.add_artifact(run_id, "saelens", folder / "saelens", "dir")
        if decoder is not None:
            save_file({"W_dec": np.asarray(decoder, dtype=np.float32)}, str(folder / "sae.safetensors"))
            repo.add_artifact(run_id, "sae", folder / "sae.safetensors", "safetensors")
        repo.add_metrics(run_id, SAE_METRICS if metrics is None else metrics)
        repo.finish_run(run_id, "succeeded")
        return run_id
    return make
