"""Calibration sizes checked before a run is queued: row counts, token counts without torch, and the
byte bound used before a bundled LM's tokenizer is on disk."""

import shutil

import pytest

from sparsity_core.data import bbc_news, rotten_tomatoes
from sparsity_core.data.calibration import calibration_problem, calibration_set, count_tokens, lm_token_stream
from sparsity_core.zoo.minilm import model_dir


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A model cache of this test's own: no tokenizer or count left by another test."""
    monkeypatch.setenv("SPARSITY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tokenizer_with_eos(tmp_path_factory):
    """minilm's WordPiece tokenizer saved with an EOS token, as a causal LM's tokenizer folder is."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    AutoTokenizer.from_pretrained(model_dir(), eos_token="[SEP]").save_pretrained(folder)
    return folder


def test_row_counts_of_the_calibration_splits():
    # digits: 70% of scikit-learn's 1,797 images (seed 0 split); Rotten Tomatoes: the val movies
    assert "has only 1258 rows" in calibration_problem("digits-mlp", 1259, 8)
    assert calibration_problem("digits-mlp", 1258, 8) is None
    rows = len(rotten_tomatoes("val", seed=3))
    assert f"has only {rows} rows" in calibration_problem("minilm-l6", rows + 1, 8, seed=3)
    assert calibration_problem("minilm-l6-rt", rows, 8, seed=3) is None


def test_tokens_without_torch_equal_the_transformers_stream(tokenizer_with_eos):
    from transformers import AutoTokenizer

    texts = bbc_news("train", seed=0).texts
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_with_eos)
    # one EOS after each article, as the stream joins them; the model's 512-token limit does not apply
    assert count_tokens(tokenizer_with_eos / "tokenizer.json", texts) == len(lm_token_stream(tokenizer, "train", 0))


def test_a_bundled_lm_is_bounded_by_bytes_then_counted_exactly(own_cache, tokenizer_with_eos):
    texts = bbc_news("train", seed=0).texts
    # Step 1: no tokenizer on disk yet: no tokenizer makes fewer than one byte per token
    bound = sum(len(t.encode()) + 1 for t in texts) // 256
    assert f"has at most {bound} windows of 256 tokens" in calibration_problem("smollm2-135m", bound + 1, 256)
    # Step 2: the loader has left its tokenizer.json in the model cache: the exact count, then cached
    shutil.copytree(tokenizer_with_eos, own_cache / "models" / "smollm2-135m")
    exact = count_tokens(tokenizer_with_eos / "tokenizer.json", texts) // 256
    assert exact < bound
    assert f"has only {exact} windows of 256 tokens" in calibration_problem("smollm2-135m", exact + 1, 256)
    shutil.rmtree(own_cache / "models" / "smollm2-135m")
    assert calibration_problem("smollm2-135m", exact, 256) is None  # from the cached count


def test_calibration_set_draws_what_was_checked():
    from sparsity_core.zoo import load_model

    calib = calibration_set(load_model("digits-mlp"), 100, 8, seed=1)
    assert sum(len(b) for b in calib.batches) == 100 and tuple(calib.batches[0].shape[1:]) == (8, 8)
    assert calib.info == {"dataset": "digits", "split": "train", "samples": 100}
    with pytest.raises(ValueError, match="has only 1258 rows"):
        calibration_set(load_model("digits-mlp"), 2000, 8)
