"""Every "try this" preset is a valid comparison that can run here: its specs parse and pass their
lab's pre-run check, its runs differ only in what the preset compares, and each lab has a fast one."""

import pytest

from sparsity_core.catalog.presets import FAST_S, PRESETS, Preset, presets, register_preset
from sparsity_core.jobs.executors import PREFLIGHTS, resolve
from sparsity_core.specs import parse_spec

ALL = [(lab, p) for lab, items in PRESETS.items() for p in items]
LABS = ("pruning", "sae", "explain", "kernels")  # the keys each page's preset_button(lab) asks for


@pytest.mark.parametrize("lab, preset", ALL, ids=[f"{lab}:{p.name}" for lab, p in ALL])
def test_preset_specs_parse_and_explain_themselves(lab, preset):
    specs = [parse_spec(s) for s in preset.specs]
    assert len(specs) >= 2, "a preset compares at least two runs"
    assert len(preset.explanation) > 80 and "Notice" in preset.explanation  # what the student should see
    assert len({s.model_dump_json(exclude={"name"}) for s in specs}) == len(specs)
    assert isinstance(preset.expected_s, int) and preset.expected_s > 0


@pytest.mark.parametrize("lab, preset", ALL, ids=[f"{lab}:{p.name}" for lab, p in ALL])
def test_preset_specs_pass_their_labs_preflight(lab, preset):
    for spec in map(parse_spec, preset.specs):
        assert spec.parent_run is None  # ids are not known in advance
        resolve(PREFLIGHTS[spec.kind])(spec, None)  # raises SpecError with the field's message


@pytest.mark.parametrize("lab", LABS)
def test_every_lab_has_a_sequence_with_a_fast_first_step(lab):
    items = presets(lab)
    assert len(items) >= 2
    assert items[0].fast and items[0].expected_s <= FAST_S == 60  # the first click a class waits for


def test_no_lab_is_offered_that_no_page_asks_for():
    assert set(PRESETS) == set(LABS)


def test_the_smollm2_preset_is_magnitude_wanda_sparsegpt_at_half_and_says_it_is_slow():
    (smol,) = [p for p in presets("pruning") if "SmolLM2" in p.name]
    assert [(s["model"], s["method"], 0.5 in s["sparsities"]) for s in smol.specs] == [
        ("smollm2-135m", m, True) for m in ("magnitude", "wanda", "sparsegpt")]
    assert not smol.fast and "Slow" in smol.explanation


def test_duplicate_preset_names_are_refused():
    with pytest.raises(ValueError, match="already"):
        register_preset("pruning", Preset(presets("pruning")[0].name, "x", 1))
