"""The Matryoshka prefix sizes on the SAE page: a widget only for Matryoshka variants, built from the
catalog's choices, its value sorted into the queued spec, a bad choice refused beside it."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from db import repo

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "sae.py")


def test_prefixes_show_for_matryoshka_only_and_reach_the_queued_spec():
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    assert "sae_prefixes" not in {w.key for w in at.multiselect}  # topk: no nested dictionary
    at.selectbox(key="sae_variant").set_value("matryoshka_batchtopk").run()
    widget = at.multiselect(key="sae_prefixes")
    assert widget.value == [1 / 16, 1 / 4, 1.0]  # the catalog's default
    widget.set_value([1.0, 0.125]).run()  # picked in any order: sent increasing
    at.button(key="sae_submit").click().run()
    assert not at.exception
    (sent,) = repo.list_runs(kind="sae")
    assert sent.spec["variant"] == "matryoshka_batchtopk" and sent.spec["prefixes"] == [0.125, 1.0]


def test_prefixes_without_the_whole_dictionary_are_refused_beside_the_widget(below):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.selectbox(key="sae_variant").set_value("matryoshka_batchtopk").run()
    at.multiselect(key="sae_prefixes").set_value([0.25, 0.5]).run()
    at.button(key="sae_submit").click().run()
    assert not at.exception
    (message,) = below(at, "sae_prefixes")
    assert "the last prefix is the whole dictionary" in message
    assert repo.list_runs() == []
