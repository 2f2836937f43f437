""""Try this" presets: prepared comparisons a teacher runs in one click on the bundled models.

A preset is a name, a plain explanation of what it shows, and the specs it queues; the page's
`preset_button(lab)` submits them all and links to the compare page with the new runs selected.
Labs add theirs with `register_preset("pruning", Preset(...))`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRESETS: dict[str, list["Preset"]] = {}


@dataclass(frozen=True)
class Preset:
    name: str
    explanation: str
    specs: list[dict[str, Any]] = field(default_factory=list)


def register_preset(lab: str, preset: Preset) -> None:
    if any(p.name == preset.name for p in PRESETS.get(lab, [])):
        raise ValueError(f"lab {lab!r} has a preset named {preset.name!r} already")
    PRESETS.setdefault(lab, []).append(preset)


def presets(lab: str) -> list[Preset]:
    return list(PRESETS.get(lab, []))


register_preset("pruning", Preset(
    "Layer vs global magnitude on digits",
    "Prunes the small digits classifier by weight size, once with every layer cut to the same "
    "fraction and once with one threshold for the whole network. Global pruning leaves the small "
    "output layer almost intact and usually keeps accuracy longer: compare the curves and the "
    "per-layer bars. Takes a few seconds.",
    [{"kind": "prune", "model": "digits-mlp", "method": "magnitude", "scope": scope,
      "sparsities": [0.0, 0.5, 0.7, 0.8, 0.9, 0.95], "name": f"preset: magnitude {scope}"}
     for scope in ("layer", "global")]))

register_preset("pruning", Preset(
    "Magnitude vs Wanda vs SparseGPT on SmolLM2 at 50%",
    "Prunes half the weights of a real 135M-parameter language model three ways: by weight size "
    "alone (magnitude), by weight size times how strongly each input is used (Wanda), and by "
    "solving for the weights that best keep each layer's output (SparseGPT). Perplexity shows what "
    "each costs; lower is better. The last two look at a few calibration texts first. Takes minutes "
    "on a CPU.",
    [{"kind": "prune", "model": "smollm2-135m", "method": method, "sparsities": [0.0, 0.5],
      "name": f"preset: SmolLM2 {method} 50%"} for method in ("magnitude", "wanda", "sparsegpt")]))
