"""Keyed cache files: one file per distinct key, a file written under another key is not read back."""

import torch

from sparsity_core.explain.cache import fingerprint, keyed_path, load_keyed, save_atomic


def test_a_changed_key_is_another_file_and_a_foreign_file_is_a_miss(tmp_path):
    folder = tmp_path / "setup"
    folder.mkdir()
    key = {"lambda": 0.003, "fraction": 0.1, "head": [40, 0.002]}
    path = keyed_path(folder, "mislabel", key)
    assert path.parent == folder and path.name.startswith("mislabel-") and path.suffix == ".safetensors"
    assert keyed_path(folder, "mislabel", {**key, "fraction": 0.2}) != path
    assert keyed_path(folder, "mislabel", dict(reversed(key.items()))) == path  # order of the dict is no input
    assert load_keyed(path, key) is None  # nothing stored yet
    save_atomic({"curve": torch.tensor([0.0, 0.5, 1.0])}, path, {"key": key})
    tensors, meta = load_keyed(path, key)
    assert tensors["curve"].tolist() == [0.0, 0.5, 1.0] and meta["key"]["head"] == [40, 0.002]
    assert load_keyed(path, {**key, "lambda": 0.004}) is None  # same file name, other key: not trusted
    assert [p.name for p in folder.iterdir()] == [path.name]  # no tmp file left behind


def test_a_fingerprint_sees_values_shape_and_dtype():
    x = torch.arange(6, dtype=torch.float32)
    assert fingerprint(x) == fingerprint(x.clone()) and len(fingerprint(x)) == 16
    assert fingerprint(x) != fingerprint(x + torch.tensor([0, 0, 0, 0, 0, 1e-6]))
    assert fingerprint(x) != fingerprint(x.reshape(2, 3)) != fingerprint(x.double())
    assert fingerprint(x, x) != fingerprint(x)
