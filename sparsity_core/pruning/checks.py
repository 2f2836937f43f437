"""Checks of a pruning spec made before a run is queued; torch-free for bundled models.

    preflight_prune(spec, parent=None)     # raises SpecError({field: message})

The spec's own fields (method x pattern x scope x targets x params) are validated by specs.py.
These checks need the model: that the pattern tiles every prunable layer, that the calibration
fits in its data, and that a schedule / recovery / heads / neurons choice is one this model can
run. A bundled model is checked from its catalog entry (`linears`, `family`, `train_data`) and
never loaded; an `hf:` model from its meta-device skeleton.
"""

from __future__ import annotations

from typing import Optional

from sparsity_core.catalog.models import MODELS, model_entry
from sparsity_core.catalog.pruning import METHODS, STRUCTURED, Pattern, parse_pattern, shape_problem
from sparsity_core.data.calibration import calibration_problem
from sparsity_core.jobs.context import ParentRun
from sparsity_core.specs import PruneSpec, SpecError

# the families whose heads / neurons pruning/structured.py can remove (it registers a finder for
# each pair, and a test keeps the two in step)
UNIT_FAMILIES = {"heads": ("bert", "llama"), "neurons": ("bert", "llama", "mlp")}


def trains(spec: PruneSpec) -> bool:
    """The run trains the model: a gradual schedule or fine-tune / distill recovery."""
    return spec.schedule == "gradual" or spec.recovery != "none"


def structured(spec: PruneSpec) -> bool:
    """The run removes whole heads or neurons."""
    return parse_pattern(spec.pattern).kind in STRUCTURED


def reads_calibration(spec: PruneSpec) -> bool:
    """The run reads calibration activations: its method needs them, or OWL's outlier ratios, or
    greedy activation allocation's block errors do."""
    return METHODS[spec.method].needs_calibration or spec.allocation in ("owl", "greedy")


def sequential(spec: PruneSpec) -> bool:
    """Statistics are gathered block by block through the model being pruned (pruning/calibrate.py)."""
    return METHODS[spec.method].needs_calibration and spec.calibration == "sequential"


def soup_size(spec: PruneSpec) -> int:
    """Ingredients of each target's sparse model soup; 0 when the run cooks none (0 or 1 asked)."""
    return spec.soup_ingredients if spec.soup_ingredients >= 2 else 0


def srste(spec: PruneSpec) -> bool:
    """The run trains its N:M masks with SR-STE (Zhou et al. 2021) rather than under a fixed mask."""
    return spec.nm_training == "sr_ste"


def recipe_problems(spec: PruneSpec) -> dict[str, str]:
    """{field: message} for a sparse model soup or SR-STE that this spec cannot run. Both train
    after a one-shot prune: the gradual schedule ramps unstructured masks only (recovery.py says why)."""
    errors: dict[str, str] = {}
    kind = parse_pattern(spec.pattern).kind
    if soup_size(spec):
        if spec.recovery == "none":
            errors["soup_ingredients"] = "a soup averages fine-tuned copies of the pruned model: pick finetune or distill"
        elif spec.schedule != "oneshot":
            errors["soup_ingredients"] = ("a soup's ingredients are fine-tuned from one pruned model: use the oneshot "
                                          "schedule (gradual students do not share a mask until the end)")
        elif kind in STRUCTURED:
            errors["soup_ingredients"] = ("a soup averages copies under one weight mask: use unstructured, N:M or "
                                          "block patterns, not heads or neurons")
        elif srste(spec):
            errors["soup_ingredients"] = ("SR-STE moves each copy's mask at every step, so ingredients would not share "
                                          "one: use soups with nm_training fixed_mask")
    if srste(spec):
        if kind != "nm":
            errors["nm_training"] = (f"SR-STE trains N:M patterns (e.g. 2:4), not {spec.pattern}; "
                                     f"use fixed_mask, or pick an N:M pattern")
        elif spec.recovery == "none":
            errors["nm_training"] = "SR-STE is a way of training: pick recovery finetune or distill"
        elif spec.method != "magnitude":
            errors["method"] = ("SR-STE recomputes its N:M mask from |W| at every step, from the dense weights: "
                                "that is magnitude's mask; pick magnitude")
    return errors


def unit_problem(model: str, family: str, pattern: str) -> Optional[str]:
    """Why `model` (of adapter `family`) has no `pattern` units this lab can remove, or None."""
    if family in UNIT_FAMILIES[pattern]:
        return None
    what = "attention heads" if pattern == "heads" else "FFN neurons this lab knows how to remove"
    return f"{model} ({family}) has no {what}; heads work on BERT- and Llama-style models, neurons also on MLPs"


def recovery_problems(spec: PruneSpec) -> dict[str, str]:
    """{field: message} for schedule / recovery choices this spec's model and method cannot run."""
    errors: dict[str, str] = {}
    if spec.schedule == "gradual":
        if spec.recovery == "none":
            errors["recovery"] = "a gradual schedule prunes between training steps: pick finetune or distill"
        if spec.pattern != "unstructured":
            errors["schedule"] = ("the gradual schedule raises an unstructured mask step by step; "
                                  "for N:M, blocks, heads or neurons use oneshot with recovery "
                                  "(N:M masks can still move while training: nm_training sr_ste)")
    entry = model_entry(spec.model)
    if spec.recovery != "none" and (entry is None or entry.train_data is None):
        trainable = [n for n, e in MODELS.items() if e.train_data]
        built_on = "".join(f" ({n} is {MODELS[n].description})" for n in trainable
                           if spec.model in MODELS[n].description.split())
        errors["recovery"] = (f"recovery trains on labelled data, which only {', '.join(trainable)} "
                              f"have here{built_on}")
    if trains(spec) and not structured(spec) and METHODS[spec.method].needs_calibration:
        errors["method"] = (f"{spec.method} needs calibration activations; with fine-tuning or a gradual "
                            f"schedule use a data-free method such as magnitude")
    for field, message in recipe_problems(spec).items():
        errors.setdefault(field, message)
    return errors


def _tiling_problem(pattern: Pattern, entry, skeleton) -> Optional[str]:
    if entry is not None:
        for out_f, in_f, count in entry.linears:
            if problem := shape_problem(pattern, (out_f, in_f)):
                return f"{problem} ({count} layer{'s' * (count > 1)} of {out_f}x{in_f})"
        return None
    from sparsity_core.pruning.base import weight_2d  # torch: only for an hf: skeleton
    from sparsity_core.zoo import prunable_linears

    for name, module in prunable_linears(skeleton).items():
        if problem := shape_problem(pattern, tuple(weight_2d(module).shape)):
            return f"{problem.replace('a layer', name)} (layer {name})"
    return None


def preflight_prune(spec: PruneSpec, parent: Optional[ParentRun] = None) -> None:
    """Refuse, before queueing, what this model cannot run: a pattern that does not tile a layer,
    calibration longer than the data, heads on a model without attention, recovery without labels.
    Raises SpecError({field: message}). A pruning run starts from the dense model: a `parent_run`
    is recorded with it, and only has to exist."""
    if spec.parent_run is not None and parent is None:
        raise SpecError({"parent_run": f"run {spec.parent_run} does not exist"})
    entry = model_entry(spec.model)
    skeleton = None
    if entry is None:  # hf: shapes, family and tokenizer from the meta-device skeleton (no weights)
        from sparsity_core.zoo import load_skeleton

        skeleton = load_skeleton(spec.model)
    pattern = parse_pattern(spec.pattern)
    errors = recovery_problems(spec)
    if pattern.kind in STRUCTURED:
        problem = unit_problem(spec.model, entry.family if entry else skeleton.family, pattern.kind)
    else:
        problem = _tiling_problem(pattern, entry, skeleton)
    if problem:
        errors["pattern"] = problem
    if reads_calibration(spec):
        problem = calibration_problem(spec.model, spec.calibration_samples, spec.seq_len, spec.seed, handle=skeleton)
        if problem:
            errors["calibration_samples"] = problem
    if errors:
        raise SpecError(errors)
