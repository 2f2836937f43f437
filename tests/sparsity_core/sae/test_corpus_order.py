"""The capture order of `all` (every token budget must sample all three corpora), and the stored
token counts the pre-run check reads."""

import json

from sparsity_core.catalog.sae import CORPORA
from sparsity_core.data import load_dataset
from sparsity_core.sae.corpus import cached_token_count, corpus_texts, token_count


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


class ThreeTokens:
    """A tokenizer that cuts every text into one window of three tokens."""

    pad_token = "[PAD]"

    def __call__(self, texts, **_kwargs):
        return {"input_ids": [[101, 7, 102] for _ in texts]}


def test_a_token_count_is_counted_once_then_read():
    assert cached_token_count("tiny", "bbc_news", "test", 64) is None
    n_texts = len(load_dataset("bbc_news", "test", 0).texts)  # 445 articles
    assert token_count(ThreeTokens(), "tiny", "bbc_news", "test", 64) == 3 * n_texts
    assert cached_token_count("tiny", "bbc_news", "test", 64) == 3 * n_texts
    assert cached_token_count("tiny", "bbc_news", "test", 128) is None  # another window size: not counted


def test_the_bundled_counts_are_the_real_ones_and_read_on_a_fresh_machine():
    from transformers import AutoTokenizer

    from sparsity_core.sae.corpus import BUNDLED_COUNTS, count_tokens
    from sparsity_core.zoo.minilm import model_dir

    bundled = json.loads(BUNDLED_COUNTS.read_text())
    assert len(bundled) == 3 * 4 * 2  # minilm-l6, minilm-l6-rt, smollm2-135m x all + 3 corpora x train, test
    # nothing counted on this machine yet (each test has its own home): the bundled count is read
    assert cached_token_count("minilm-l6", "rotten_tomatoes", "test", 128) == 70_367
    tok = AutoTokenizer.from_pretrained(model_dir())
    assert count_tokens(tok, "rotten_tomatoes", "test", 128) == 70_367
