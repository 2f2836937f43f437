"""Job specs: one pydantic model per job kind. A spec is everything needed to reproduce a run.

    spec = parse_spec({"kind": "prune", "model": "digits-mlp", "sparsities": [0, 0.5, 0.9]})

Validation happens here, before anything is queued; `field_errors` turns a ValidationError into
{field: message} so a page can show each message beside its widget and the CLI can print one line.
The schema version is stored with every run (bump it when a field changes meaning).
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION = 1


class BaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    kind: str
    model: str = Field(description="a bundled model name, or hf:<hub-id-or-local-path>")
    name: Optional[str] = Field(None, max_length=200, description="free text shown in the UI")
    seed: int = Field(0, ge=0)
    parent_run: Optional[int] = Field(None, ge=1, description="the run this one builds on")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from sparsity_core.zoo.registry import check_model_name

        return check_model_name(value)

    @property
    def method_name(self) -> Optional[str]:
        return getattr(self, "method", None) or getattr(self, "variant", None)


class PruneSpec(BaseSpec):
    """Prune a model at each target sparsity and evaluate it (kind `prune`)."""

    kind: Literal["prune"] = "prune"
    method: str = Field("magnitude", description="a registered pruning method")
    scope: Literal["layer", "global"] = Field(
        "layer", description="layer: every layer at the target; global: one threshold for all")
    sparsities: list[float] = Field(..., min_length=1, description="target fractions of zeros")
    pattern: str = Field("unstructured", description="unstructured | N:M | block:RxC | heads | neurons")
    eval_samples: Optional[int] = Field(
        None, ge=16, description="cap on evaluation rows (None: the whole test split)")

    @field_validator("sparsities")
    @classmethod
    def _in_range(cls, values: list[float]) -> list[float]:
        for v in values:
            if not 0.0 <= v < 1.0:
                raise ValueError(f"each sparsity must be in [0, 1), got {v}")
        if len(set(values)) != len(values):
            raise ValueError("sparsities repeat a value")
        return sorted(values)

    @field_validator("method")
    @classmethod
    def _registered(cls, value: str) -> str:
        from sparsity_core.pruning import METHODS

        if value not in METHODS:
            raise ValueError(f"unknown pruning method {value!r}; known: {', '.join(METHODS)}")
        return value


SPECS: dict[str, type[BaseSpec]] = {"prune": PruneSpec}


def parse_spec(data: dict[str, Any] | str | BaseSpec) -> BaseSpec:
    """Validate a dict or JSON text into the spec class its `kind` names."""
    if isinstance(data, BaseSpec):
        return data
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise SpecError({"": f"not valid JSON: {exc}"}) from None
    if not isinstance(data, dict):
        raise SpecError({"": "a spec is a JSON object"})
    kind = data.get("kind")
    if kind not in SPECS:
        raise SpecError({"kind": f"unknown kind {kind!r}; known: {', '.join(SPECS)}"})
    try:
        return SPECS[kind].model_validate(data)
    except ValidationError as exc:
        raise SpecError(field_errors(exc)) from None


class SpecError(ValueError):
    """A spec that does not validate; `.errors` maps field name -> message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" if k else v for k, v in errors.items()))


def field_errors(exc: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        msg = err["msg"].removeprefix("Value error, ")
        out.setdefault(field, msg)
    return out
