"""The classifier adapter and captum wrappers on a tiny random BERT classifier (no hub, < 1 s)."""

import numpy as np
import pytest
import torch

from sparsity_core.explain import captum_methods as cm
from sparsity_core.explain.models import build_classifier, final_linear
from sparsity_core.zoo import ModelHandle


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from sparsity_core.zoo.minilm import model_dir

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=3)
    model = BertForSequenceClassification(config).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir())  # the real WordPiece vocabulary
    return ModelHandle("hf:tiny", model, "classifier", "bert", tokenizer=tokenizer, classes=("a", "b", "c"))


def test_head_input_features_rebuild_the_models_logits(tiny_bert):
    clf = build_classifier(tiny_bert)
    assert final_linear(tiny_bert.model, 3)[0] == "classifier"
    texts = ["a short one", "a somewhat longer sentence than the first one", "mid length text"]
    feats = clf.featurize(texts)
    assert feats.shape == (3, 32)
    ids, mask = clf.tokenize(texts)
    with torch.no_grad():
        logits = tiny_bert.model(input_ids=ids, attention_mask=mask).logits
        assert torch.allclose(clf.head(feats), logits, atol=1e-5)  # length-sorted batching kept the order


def test_the_feature_hook_is_removed_even_after_an_error(tiny_bert):
    clf = build_classifier(tiny_bert)
    with pytest.raises(IndexError):
        clf.encode(torch.tensor([[10 ** 6]]), torch.ones(1, 1, dtype=torch.long))  # id past the vocabulary
    assert len(clf.head._forward_pre_hooks) == 0


def test_token_attributions_add_up(tiny_bert):
    clf = build_classifier(tiny_bert)
    out = cm.attribute(clf, "a warm and funny film", target=1, steps=64)
    assert out["tokens"][0] == "[CLS]" and out["tokens"][-1] == "[SEP]" and len(out["values"]) == len(out["tokens"])
    assert abs(out["delta"]) < 0.05  # completeness: attributions sum to F(x) - F(baseline)


def test_a_model_without_a_classification_head_is_refused():
    handle = ModelHandle("lm", torch.nn.Linear(2, 2), "causal_lm", "llama")
    with pytest.raises(ValueError, match="no classification head"):
        build_classifier(handle)


def test_influence_wrappers_on_hand_made_features(tmp_path):
    from sparsity_core.explain.cache import train_head

    # two clusters; the test point sits in cluster 0
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    _, ckpts = train_head(feats, labels, 2, checkpoint_dir=tmp_path)
    assert len(ckpts) == 5 and all(p.suffix == ".safetensors" for p in ckpts)
    test = torch.tensor([1.0, 0.05], dtype=torch.float64)
    top = cm.tracin_top_k(cm.tracin(feats, labels, ckpts, 2), test, target=0, k=2)
    assert set(top["proponents"]["index"]) == {0, 1}  # same-label neighbours help
    sim = cm.similarity_top_k(feats, test, k=2)
    assert sim["proponents"]["index"][0] == 0 and set(sim["opponents"]["index"]) == {2, 3}
    assert cm.overlap([0, 1], [1, 5]) == 0.5
    si = cm.self_influence(feats, labels, ckpts, 2)
    assert si.shape == (4,) and np.all(si.numpy() >= 0)


def test_closed_form_influence_is_captums(tmp_path):
    """tracin_scores / cosine_top_k, which the run uses, give TracInCPFast's and SimilarityInfluence's
    top-k ids and scores; and TracIn by hand on one point: lr * (g_i . g_t) * (x_i . x_t)."""
    from sparsity_core.explain.cache import train_head

    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (40,), generator=gen)
    _, ckpts = train_head(feats, labels, 3, checkpoint_dir=tmp_path)
    heads = cm.checkpoint_heads(ckpts)
    test = torch.randn(6, generator=gen, dtype=torch.float64)
    scores = cm.tracin_scores(feats, labels, heads, test, target=2)
    ours = cm.top_k(scores, 5)
    want = cm.tracin_top_k(cm.tracin(feats, labels, ckpts, 3), test, target=2, k=5)
    for side in ("proponents", "opponents"):
        assert ours[side]["index"] == want[side]["index"]
        np.testing.assert_allclose(ours[side]["score"], want[side]["score"], rtol=1e-9)
    w, b, lr = heads[0]
    assert lr == 0.002 and len(heads) == 5
    one = sum(lr * float((torch.softmax(feats[7] @ w.T + b, -1) - torch.eye(3)[labels[7]].double())
                         @ (torch.softmax(test @ w.T + b, -1) - torch.eye(3)[2].double())) * float(feats[7] @ test)
              for w, b, lr in heads)
    assert float(scores[7]) == pytest.approx(one, rel=1e-12)
    sim, want = cm.cosine_top_k(feats, test, 5), cm.similarity_top_k(feats, test, 5)
    for side in ("proponents", "opponents"):
        assert sim[side]["index"] == want[side]["index"]
        np.testing.assert_allclose(sim[side]["score"], want[side]["score"], rtol=1e-12)
    # cosine by hand: a row parallel to the test point scores 1, an opposite one -1
    both = torch.stack([2 * test, -test, feats[0]])
    assert cm.cosine_top_k(both, test, 1) == {"proponents": {"index": [0], "score": [pytest.approx(1.0)]},
                                             "opponents": {"index": [1], "score": [pytest.approx(-1.0)]}}
