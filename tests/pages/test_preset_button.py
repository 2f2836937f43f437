"""The "try this" button queues a preset's runs in one click and links them on the compare page
(and a one-run preset to that run's page); every lab page shows its presets near the top."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.catalog.presets import PRESETS, Preset, presets

PAGES = Path(__file__).resolve().parents[2] / "pages"


def _page(lab: str):
    from pages._ui import preset_button

    preset_button(lab)


def test_one_click_queues_the_digits_preset_and_links_to_compare():
    at = AppTest.from_function(_page, args=("pruning",), default_timeout=30).run()
    assert not at.exception
    at.button(key="preset-pruning-0").click().run()
    runs = sorted(repo.list_runs(), key=lambda r: r.id)
    assert [(r.status, r.spec["scope"]) for r in runs] == [("queued", "layer"), ("queued", "global")]
    assert f"compare?runs={runs[0].id},{runs[1].id}" in at.success[0].value


def test_a_one_run_preset_links_to_its_run_page(monkeypatch):
    one = Preset(name="one digits run", explanation="a single magnitude run", expected_s=12,
                         specs=[{"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0.5]}])
    monkeypatch.setitem(PRESETS, "test-lab", [one])
    at = AppTest.from_function(_page, args=("test-lab",), default_timeout=30).run()
    assert "about 12 s here" in [c.value for c in at.caption]
    at.button(key="preset-test-lab-0").click().run()
    (run,) = repo.list_runs()
    assert at.success[0].value.startswith(f"queued run #{run.id}: [open run #{run.id} on its page](pruning?run={run.id})")


@pytest.mark.parametrize("lab", ["pruning", "sae", "explain", "kernels"])
def test_every_lab_page_offers_its_presets_near_the_top(lab):
    items = presets(lab)
    assert len(items) >= 2  # a teaching sequence needs more than one step
    at = AppTest.from_file(str(PAGES / f"{lab}.py"), default_timeout=60).run()
    assert not at.exception
    (expander,) = [e for e in at.expander if e.label.startswith("🎓 Try this")]
    assert at.main.children[2] is expander  # right after the title and the page's explanation
    assert [b.label for b in expander.button] == [f"Run: {p.name}" for p in items]
    assert [c.value for c in expander.caption] == [f"about {p.expected_s} s here" for p in items]
