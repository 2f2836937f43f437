"""The "try this" button queues a preset's runs in one click and links them on the compare page."""

from streamlit.testing.v1 import AppTest

from db import repo


def _page():
    from pages._ui import preset_button

    preset_button("pruning")


def test_one_click_queues_the_digits_preset_and_links_to_compare():
    at = AppTest.from_function(_page, default_timeout=30).run()
    assert not at.exception
    at.button(key="preset-pruning-0").click().run()
    runs = sorted(repo.list_runs(), key=lambda r: r.id)
    assert [(r.status, r.spec["scope"]) for r in runs] == [("queued", "layer"), ("queued", "global")]
    assert f"compare?runs={runs[0].id},{runs[1].id}" in at.success[0].value
