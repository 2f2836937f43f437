"""Checks of a pruning spec that need the method registry or the model's shapes.

`spec_field_problem` runs inside PruneSpec validation (method x pattern x scope x targets x
params); `preflight_prune` runs before a run is queued and loads the model to check that every
layer can be tiled by the pattern and that the calibration fits in its data.
"""

from __future__ import annotations

from typing import Any, Optional

from sparsity_core.pruning.masks import parse_pattern, shape_problem

STRUCTURED = ("heads", "neurons")  # checked by pruning/structured.py, not by the weight methods


def spec_field_problem(field: str, value: Any, data: dict[str, Any]) -> Optional[str]:
    """A message for a person when `field` does not fit the fields validated before it."""
    from sparsity_core.pruning import METHODS

    cls = METHODS.get(data.get("method", ""))
    if cls is None:
        return None  # the method's own message is shown already
    if field == "params":
        try:
            cls(**value)
        except (TypeError, ValueError) as exc:
            return str(exc)
        return None
    try:
        pattern = parse_pattern(value)
    except ValueError as exc:
        return str(exc)
    if pattern.kind in STRUCTURED:
        return None
    if not cls.supports(pattern):
        return f"{cls.name} cannot prune the {value} pattern; it supports {', '.join(cls.patterns)}"
    if data.get("scope") == "global" and (pattern.kind != "unstructured" or "global" not in cls.scopes):
        return f"global scope needs the unstructured pattern and a method that allows it ({cls.name}: {', '.join(cls.scopes)})"
    low = [s for s in data.get("sparsities", []) if 0 < s < pattern.min_sparsity - 1e-9]
    if low:
        return (f"{value} prunes {pattern.min_sparsity:.0%} by itself; targets {low} are below it "
                f"(use 0 for the dense reference, or targets of at least {pattern.min_sparsity:g})")
    return None


def preflight_prune(spec) -> None:
    """Refuse, before queueing, a pattern that does not tile a layer or calibration longer than
    the data. Raises SpecError({field: message})."""
    from sparsity_core.data.calibration import calibration_problem
    from sparsity_core.pruning import METHODS
    from sparsity_core.pruning.base import weight_2d
    from sparsity_core.pruning.recovery import preflight as preflight_recovery
    from sparsity_core.specs import SpecError
    from sparsity_core.zoo import load_skeleton, prunable_linears

    preflight_recovery(spec)  # schedule / recovery / heads / neurons, without loading weights
    pattern = parse_pattern(spec.pattern)
    method = METHODS[spec.method]
    if pattern.kind in STRUCTURED and not method.needs_calibration:
        return
    handle = load_skeleton(spec.model)  # shapes only: no weights read in the UI process
    errors = {}
    for name, module in prunable_linears(handle).items():
        problem = shape_problem(pattern, tuple(weight_2d(module).shape))
        if problem:
            errors["pattern"] = f"{problem.replace('a layer', name)} (layer {name})"
            break
    if method.needs_calibration:
        problem = calibration_problem(handle, spec.calibration_samples, spec.seq_len, spec.seed)
        if problem:
            errors["calibration_samples"] = problem
    if errors:
        raise SpecError(errors)
