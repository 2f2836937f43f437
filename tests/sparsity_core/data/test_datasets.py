import numpy as np

from sparsity_core.data.datasets import digits


def test_digits_read_directly_equal_scikit_learns_loader():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rows = np.concatenate([digits(split, seed=3).labels for split in ("train", "val", "test")])
    assert sorted(rows.tolist()) == sorted(bunch.target.tolist())  # the three splits partition all 1,797
    train = digits("train", seed=3)
    first = train.images[0]
    match = np.where((bunch.images == first).all(axis=(1, 2)))[0]
    assert len(match) >= 1 and bunch.target[match[0]] == train.labels[0]
    assert first.min() >= 0 and first.max() <= 16 and first.shape == (8, 8)
