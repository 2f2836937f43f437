"""Every message a spec can carry has a place on its page: right below the widget that sets the
field, or in the catch-all for a field the page does not show. Nothing is ever dropped silently.

The fields come from the spec classes themselves (`spec_fields`), so a new field is covered the day
it is added; each page's `ErrorPlaces` declares which widget sets which field.
"""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import repo
from pages._ui import ErrorPlaces, spec_fields
from sparsity_core.catalog import METHODS
from sparsity_core.reports.seed import seed_pruning
from sparsity_core.specs import ExplainSpec, KernelSpec, PruneSpec, SAESpec, SpecError

PAGES = Path(__file__).resolve().parents[2] / "pages"


def _set(key, value, kind="selectbox"):
    return lambda at: getattr(at, kind)(key=key).set_value(value)


# page -> (spec class, submit button, configurations that together draw every widget it declares)
CASES = {
    "pruning": (PruneSpec, "p_submit", {
        "magnitude": [],
        "wanda, calibration": [_set("p_method", "wanda")],
        "dsnot, its parameters": [_set("p_method", "dsnot")],
        "sparsegpt, gradual": [_set("p_method", "sparsegpt"), _set("p_schedule", "gradual", "radio")],
        "hf checkpoint": [_set("p_model", "hf:<hub id or local path>"), _set("p_hf", "org/model", "text_input")],
        "magnitude, owl and its parameters": [_set("p_allocation", "owl")],
    }),
    "sae": (SAESpec, "sae_submit", {"defaults": [],
                                    "matryoshka, its prefixes": [_set("sae_variant", "matryoshka_batchtopk")]}),
    "explain": (ExplainSpec, "e_submit", {
        "digits, a test example": [],
        # the canvas's 8x8 input, where the (AppTest-inert) canvas component puts a drawing
        "digits, drawn": [_set("e_mode", "draw a digit", "radio"),
                          lambda at: at.session_state.__setitem__("e_drawn", [[8.0] * 8] * 8)],
        "text, typed": [_set("e_model", "minilm-l6-rt"), _set("e_mode", "type a sentence", "radio")],
    }),
    "kernels": (KernelSpec, "k_submit", {
        "layers only": [],
        "a parent run": [lambda at: at.selectbox(key="k_parent").select_index(1)],
    }),
}


class Capture:
    """The ErrorPlaces a page builds, and the specs it submits: each refused with every message."""

    def __init__(self, spec_cls):
        self.spec_cls, self.places, self.sent = spec_cls, [], []

    def submit(self, spec: dict) -> int:
        self.sent.append(spec)
        raise SpecError(messages_for(self.spec_cls, spec))


def messages_for(spec_cls, spec: dict) -> dict[str, str]:
    """A distinct message for every field of the spec class, for each parameter of the method the
    spec names, and one that names no field."""
    fields = spec_fields(spec_cls)
    if "params" in fields and spec.get("method") in METHODS:
        fields += [f"params.{p}" for p in METHODS[spec["method"]].params.model_fields]
    return {field: f"message {n} for {field or 'the spec'}" for n, field in enumerate(["", *fields])}


def capture(monkeypatch, spec_cls) -> Capture:
    seen = Capture(spec_cls)
    init = ErrorPlaces.__init__

    def keep(self, *args, **kwargs):
        init(self, *args, **kwargs)
        seen.places.append(self)

    monkeypatch.setattr(ErrorPlaces, "__init__", keep)
    monkeypatch.setattr("sparsity_core.jobs.api.submit", seen.submit)
    return seen


@pytest.mark.parametrize("page", list(CASES))
def test_every_message_shows_once_beside_its_widget_or_in_the_catch_all(page, monkeypatch, below):
    spec_cls, button, configurations = CASES[page]
    seen = capture(monkeypatch, spec_cls)
    if page == "kernels":
        seed_pruning("magnitude")  # a parent run to pick
    beside_seen = set()
    for name, steps in configurations.items():
        at = AppTest.from_file(str(PAGES / f"{page}.py"), default_timeout=60).run()
        for step in steps:
            step(at)
            at.run()
        at.button(key=button).click().run()
        assert not at.exception, (name, at.exception)
        place = seen.places[-1]
        assert place.spec is spec_cls
        spec = seen.sent[-1]
        widgets = dict(place.widgets)
        if "params" in spec:  # each parameter has its own widget, keyed by method
            widgets |= {f"params.{p}": f"p_param_{spec['method']}_{p}" for p in spec["params"]}
        declared, here = set(widgets.values()), set()
        shown = [e.value for e in at.error]
        for field, message in messages_for(spec_cls, spec).items():
            others = f"{field}: {message}" if field else message
            assert len([v for v in shown if v in (message, others)]) == 1, (name, field, shown)
            near = below(at, widgets[field], stop=declared) if field in widgets else None
            if near is not None:
                assert message in near, (name, field)
                here.add(field)
            else:
                assert others in shown, (name, field)
        # each field the page sent has its message right below the widget that set it
        assert set(spec) - set(place.fixed) <= here, (name, sorted(set(spec) - here))
        beside_seen |= here
        assert repo.list_runs(kind=spec_cls.model_fields["kind"].default) == []
    assert set(place.widgets) <= beside_seen  # every declared place was drawn in some configuration


def test_the_declaration_names_real_fields():
    with pytest.raises(ValueError, match="has no field expanson"):
        ErrorPlaces(SAESpec, {"expanson": "sae_expansion"})


def test_expansion_over_the_cap_is_shown_beside_its_widget_and_queues_nothing(below):
    at = AppTest.from_file(str(PAGES / "sae.py"), default_timeout=60).run()
    at.number_input(key="sae_expansion").set_value(512)
    at.button(key="sae_submit").click().run()
    assert not at.exception
    assert below(at, "sae_expansion") == ["Input should be less than or equal to 256"]
    assert any(e.value.startswith("Not queued: check expansion") for e in at.error)
    assert repo.list_runs() == []
    at.number_input(key="sae_expansion").set_value(256).run()  # the message stays until the next submit
    assert below(at, "sae_expansion") == ["Input should be less than or equal to 256"]
