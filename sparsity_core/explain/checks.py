"""Checks before an explanation run is queued (the jobs layer's preflight for kind `explain`).

Refused with a message a person understands, and nothing stored: a model without a
classification head, a dataset of the wrong kind (pictures vs text, or another number of classes)
or an empty one, a test index past the end of the test split, a parent run that the one parent
rule refuses. For a bundled model every fact comes from the catalog and the stored split sizes
(no torch, a few milliseconds in the app); an `hf:` checkpoint's config.json is read.
"""

from __future__ import annotations

from typing import Optional

from sparsity_core.catalog.datasets import DATASETS, IMAGE_DATASETS, TEXT_DATASETS
from sparsity_core.catalog.models import MODELS, model_entry
from sparsity_core.explain.splits import split_sizes
from sparsity_core.jobs.context import ParentRun, check_parent
from sparsity_core.specs import ExplainSpec, SpecError


def model_problem(model: str) -> Optional[str]:
    """Why `model` cannot be explained, or None."""
    entry = model_entry(model)
    try:
        task = entry.task if entry is not None else _hf_task(model)
    except (OSError, ValueError) as exc:  # hf_config's one line names the checkpoint
        return str(exc).splitlines()[0] if str(exc) else f"cannot read the config of {model}"
    if task == "causal_lm":
        heads = ", ".join(n for n, e in MODELS.items() if e.task != "causal_lm")
        return (f"{model} is a language model without a classification head: pick {heads} "
                "(an encoder gets a head trained on its embeddings) or an hf: sequence classifier")
    return None


def preflight_explain(spec: ExplainSpec, parent: Optional[ParentRun]) -> None:
    problem = model_problem(spec.model)
    if problem:
        raise SpecError({"model": problem})
    entry, data = model_entry(spec.model), DATASETS[spec.dataset]
    image_model = entry is not None and entry.image  # hf: checkpoints read text
    if image_model != (data.modality == "image"):
        want = ", ".join(IMAGE_DATASETS) if image_model else f"a text dataset ({', '.join(TEXT_DATASETS)})"
        raise SpecError({"dataset": f"{spec.model} explains {want}, not {spec.dataset}"})
    if spec.image is not None and not image_model:
        raise SpecError({"image": f"{spec.model} reads text: type a sentence instead of drawing"})
    if spec.text is not None and image_model:
        raise SpecError({"text": f"{spec.model} reads 8x8 images: draw a digit instead of typing"})
    n_train, n_test = split_sizes(spec.dataset, spec.seed)
    n_train = min(n_train, spec.train_limit or n_train)
    if n_train == 0 or n_test == 0:
        raise SpecError({"dataset": f"{spec.dataset} has no {'training' if n_train == 0 else 'test'} rows"})
    classes = len(entry.classes) if entry is not None else hf_classes(spec.model)
    if classes and classes != len(data.classes):
        raise SpecError({"dataset": f"{spec.model} predicts {classes} classes, {spec.dataset} has {len(data.classes)}"})
    if spec.text is None and spec.image is None and spec.test_index >= n_test:
        raise SpecError({"test_index": f"the {spec.dataset} test split has {n_test} rows: pick 0..{n_test - 1}"})
    if spec.parent_run is not None:
        check_parent(parent, spec, sparsity=spec.parent_sparsity)


def _hf_task(model: str) -> str:
    """The task an hf: checkpoint's config.json names (a one-line ValueError when it cannot be read)."""
    from sparsity_core.zoo.hf import hf_config

    arch = " ".join(hf_config(model.removeprefix("hf:"))[1].architectures or [])
    return "causal_lm" if "ForCausalLM" in arch else "classifier" if "ForSequenceClassification" in arch else "encoder"


def hf_classes(model: str) -> Optional[int]:
    """Number of labels of an `hf:` sequence classifier (None for anything else)."""
    from sparsity_core.zoo.hf import hf_config

    config = hf_config(model.removeprefix("hf:"))[1]
    return config.num_labels if "ForSequenceClassification" in " ".join(config.architectures or []) else None
