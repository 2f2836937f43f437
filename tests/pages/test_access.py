"""The token gate (pages/_access.py), rendered through app.py: with SPARSITY_TOKEN set nothing but
the token field shows until the token is given; a wrong one shows one line; the right one opens."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages._access import WRONG

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-tests-0123"


@pytest.fixture
def app(monkeypatch) -> AppTest:
    monkeypatch.setenv("SPARSITY_TOKEN", TOKEN)
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)


def _page_rendered(at: AppTest) -> bool:
    return [t.value for t in at.title] == ["✂️ Pruning"] and "Store" in [c.value for c in at.sidebar.caption] \
        and not [t for t in at.text_input if t.label == "Access token"]


def test_a_fresh_session_sees_only_the_token_field(app):
    at = app.run()
    assert [t.label for t in at.text_input] == ["Access token"]
    assert [t.value for t in at.title] == ["Sparsity Lab"]
    assert not at.sidebar.caption and not at.error  # no sidebar status, no page, no run data


def test_a_wrong_token_shows_one_line_and_no_page(app):
    at = app.run()
    at.text_input[0].input("not-the-token")
    at.button[0].click().run()
    assert [e.value for e in at.error] == [WRONG]
    assert [t.value for t in at.title] == ["Sparsity Lab"]


def test_the_right_token_opens_the_app(app):
    at = app.run()
    at.text_input[0].input(TOKEN)
    at.button[0].click().run()
    assert not at.error and _page_rendered(at)


def test_a_token_in_the_url_opens_once_and_leaves_the_url(app):
    app.query_params["token"] = TOKEN
    at = app.run()
    assert _page_rendered(at) and "token" not in at.query_params
