"""`hf:` checkpoints end to end with tiny random BERTs saved locally (no hub): a sequence
classifier explains through its own last Linear, an encoder through a head trained on it."""

import json

import pytest
import torch

from sparsity_core.explain.checks import preflight_explain
from sparsity_core.explain.run import run_explain
from sparsity_core.jobs.context import RunContext
from sparsity_core.specs import SpecError, parse_spec

TINY = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from sparsity_core.zoo.minilm import model_dir

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    out = {}
    for name, model in (("classifier", BertForSequenceClassification(BertConfig(num_labels=5, **TINY))),
                        ("encoder", BertModel(BertConfig(**TINY)))):
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        out[name] = f"hf:{path}"
    return out


def spec(model: str, **overrides) -> dict:
    return {"kind": "explain", "model": model, "dataset": "bbc_news", "train_limit": 60, "top_k": 3,
            "flip_fraction": 0, "ig_steps": 8, **overrides}


def test_an_hf_sequence_classifier_is_explained_with_token_attributions(checkpoints):
    p = RunContext()
    run_explain(parse_spec(spec(checkpoints["classifier"], text="Shares rose as the bank cut rates.")), p)
    e = json.loads(p.artifacts["explanation@dense"][0].read_text())
    assert e["input"]["source"] == "typed" and len(e["classes"]) == 5
    assert e["attribution"]["tokens"][0] == "[CLS]" and "shares" in e["attribution"]["tokens"]
    # the decomposition is of this model's own head: its logits come back from the stored features
    assert p.values("pearson_train")[0.0] > 0.9


def test_an_hf_encoder_gets_a_trained_head(checkpoints):
    p = RunContext()
    run_explain(parse_spec(spec(checkpoints["encoder"], captum=False, test_index=2)), p)
    e = json.loads(p.artifacts["explanation@dense"][0].read_text())
    assert e["input"]["index"] == 2 and "text" in e["excitatory"][0]
    assert p.facts["evaluation"]["head"].startswith("softmax layer trained")


def test_a_classifier_with_other_classes_is_refused(checkpoints):
    with pytest.raises(SpecError) as err:
        preflight_explain(parse_spec(spec(checkpoints["classifier"], dataset="rotten_tomatoes")), None)
    assert err.value.errors["dataset"] == f"{checkpoints['classifier']} predicts 5 classes, rotten_tomatoes has 2"
