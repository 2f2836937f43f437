"""minilm-l6-rt's teacher fine-tuning runs on the shared training loop; the zoo never reaches into a lab."""

import ast
from pathlib import Path

import torch

from sparsity_core.zoo.classifier import SentenceClassifier, TeacherBudget, fine_tune_teacher
from sparsity_core.zoo.minilm import model_dir

ZOO = Path(__file__).resolve().parents[3] / "sparsity_core" / "zoo"


def test_fine_tune_teacher_trains_a_tiny_encoder_for_its_budget():
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    model = SentenceClassifier(encoder)
    before = model.classifier.weight.detach().clone()
    steps = []
    fine_tune_teacher(model, tokenizer, TeacherBudget(rows=32, steps=3, batch_size=8),
                      on_step=lambda t, total, parts: steps.append((t, total, parts["loss"] > 0)))
    assert steps == [(0, 3, True), (1, 3, True), (2, 3, True)]
    assert not model.training and not torch.equal(model.classifier.weight, before)


def test_the_zoo_imports_no_lab():
    imported = set()
    for path in ZOO.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
    labs = ("pruning", "sae", "explain", "kernels")
    assert not [m for m in imported if m.split(".")[:2] in [["sparsity_core", lab] for lab in labs]]
