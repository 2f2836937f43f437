"""Every "try this" preset is a valid comparison: its specs parse, and its runs differ only in
what the preset compares."""

import pytest

from sparsity_core.catalog.presets import PRESETS, Preset, presets, register_preset
from sparsity_core.specs import parse_spec

ALL = [(lab, p) for lab, items in PRESETS.items() for p in items]


@pytest.mark.parametrize("lab, preset", ALL, ids=[f"{lab}:{p.name}" for lab, p in ALL])
def test_preset_specs_parse_and_explain_themselves(lab, preset):
    specs = [parse_spec(s) for s in preset.specs]
    assert len(specs) >= 2, "a preset compares at least two runs"
    assert len(preset.explanation) > 80
    assert len({s.model_dump_json(exclude={"name"}) for s in specs}) == len(specs)


def test_the_smollm2_preset_is_magnitude_wanda_sparsegpt_at_half():
    (smol,) = [p for p in presets("pruning") if "SmolLM2" in p.name]
    assert [(s["model"], s["method"], 0.5 in s["sparsities"]) for s in smol.specs] == [
        ("smollm2-135m", m, True) for m in ("magnitude", "wanda", "sparsegpt")]


def test_duplicate_preset_names_are_refused():
    with pytest.raises(ValueError, match="already"):
        register_preset("pruning", Preset(presets("pruning")[0].name, "x"))
