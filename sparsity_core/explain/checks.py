"""Checks before an explanation run is queued (PREFLIGHTS["explain"]): each failure names its field.

Refused with a message a person understands, and nothing stored: a model without a
classification head, a dataset of the wrong kind or an empty one, a test index past the end of
the test split, a parent run that is not a finished pruning run of the same model.
"""

from __future__ import annotations

from sparsity_core.specs import ExplainSpec, SpecError

IMAGE_MODELS = ("digits-mlp",)


def model_problem(model: str) -> str | None:
    """Why `model` cannot be explained, or None. Reads only the registry or an hf config.json."""
    from sparsity_core.zoo import MODELS

    if model in MODELS:
        task = MODELS[model].task
    else:
        from transformers import AutoConfig

        ref = model.removeprefix("hf:")
        try:
            arch = " ".join(AutoConfig.from_pretrained(ref).architectures or [])
        except (OSError, ValueError) as exc:
            return f"cannot read the config of {ref}: {exc}"
        task = "causal_lm" if "ForCausalLM" in arch else "classifier" if "ForSequenceClassification" in arch else "encoder"
    if task == "causal_lm":
        return (f"{model} is a language model without a classification head: pick digits-mlp, minilm-l6 "
                "(a head is trained on its embeddings) or an hf: sequence classifier")
    return None


def preflight_explain(spec: ExplainSpec) -> None:
    from sparsity_core.explain.prepare import IMAGE_DATASETS, splits

    problem = model_problem(spec.model)
    if problem:
        raise SpecError({"model": problem})
    image_model = spec.model in IMAGE_MODELS
    if image_model != (spec.dataset in IMAGE_DATASETS):
        want = "digits" if image_model else "a text dataset (rotten_tomatoes, bbc_news, tweets)"
        raise SpecError({"dataset": f"{spec.model} explains {want}, not {spec.dataset}"})
    if spec.image is not None and not image_model:
        raise SpecError({"image": f"{spec.model} reads text: type a sentence instead of drawing"})
    if spec.text is not None and image_model:
        raise SpecError({"text": f"{spec.model} reads 8x8 images: draw a digit instead of typing"})
    train, test = splits(spec.dataset, spec.seed, spec.train_limit)
    if len(train) == 0 or len(test) == 0:
        raise SpecError({"dataset": f"{spec.dataset} has no {'training' if len(train) == 0 else 'test'} rows"})
    classes = hf_classes(spec.model)
    if classes and classes != len(train.classes):
        raise SpecError({"dataset": f"{spec.model} predicts {classes} classes, {spec.dataset} has {len(train.classes)}"})
    if spec.text is None and spec.image is None and spec.test_index >= len(test):
        raise SpecError({"test_index": f"the {spec.dataset} test split has {len(test)} rows: "
                                       f"pick 0..{len(test) - 1}"})
    if spec.parent_run is not None:
        parent_sparsity(spec)


def hf_classes(model: str) -> int | None:
    """Number of labels of an `hf:` sequence classifier (None for anything else)."""
    if not model.startswith("hf:"):
        return None
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model.removeprefix("hf:"))
    return config.num_labels if "ForSequenceClassification" in " ".join(config.architectures or []) else None


def parent_sparsity(spec: ExplainSpec) -> float:
    """The parent pruning run's sparsity to explain (the highest stored when not given)."""
    from db import repo

    run = repo.get_run(spec.parent_run)
    if run is None or run.kind != "prune":
        raise SpecError({"parent_run": f"run {spec.parent_run} is not a pruning run"})
    if run.status != "succeeded":
        raise SpecError({"parent_run": f"pruning run {run.id} has not succeeded (it is {run.status})"})
    if run.model != spec.model:
        raise SpecError({"parent_run": f"pruning run {run.id} pruned {run.model}, not {spec.model}"})
    from sparsity_core.pruning.artifacts import stored_targets

    stored = stored_targets(run.id)  # what load_pruned can rebuild (recovery runs keep masks only)
    if not stored:
        raise SpecError({"parent_run": f"pruning run {run.id} stored no pruned weights to explain"})
    if spec.parent_sparsity is None:
        return stored[-1]
    match = [s for s in stored if abs(s - spec.parent_sparsity) < 1e-9]
    if not match:
        raise SpecError({"parent_sparsity": f"run {run.id} has sparsities {', '.join(f'{s:g}' for s in stored)}"})
    return match[0]
