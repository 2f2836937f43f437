"""The capture order of `all`: every token budget must sample all three corpora."""

from sparsity_core.data import load_dataset
from sparsity_core.sae.activations import CORPORA, corpus_texts


def test_all_is_a_seeded_shuffle_of_every_corpus():
    per_corpus = {name: load_dataset(name, "test", 0).texts for name in CORPORA}
    mixed = corpus_texts("all", "test", 0)
    # the same texts, each once, in a fixed order
    assert sorted(mixed) == sorted(t for texts in per_corpus.values() for t in texts)
    assert mixed == corpus_texts("all", "test", 0)
    assert mixed != corpus_texts("all", "test", 1)
    # a small budget already holds all three corpora, roughly in proportion to their sizes
    head = mixed[:300]
    total = sum(len(texts) for texts in per_corpus.values())
    for name, texts in per_corpus.items():
        members = set(texts)
        share = sum(t in members for t in head) / len(head)
        assert abs(share - len(texts) / total) < 0.1, (name, share)


def test_one_corpus_keeps_its_own_order():
    assert corpus_texts("rotten_tomatoes", "test", 0) == list(load_dataset("rotten_tomatoes", "test", 0).texts)
