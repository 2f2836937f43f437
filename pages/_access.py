"""Who may use this app, checked by app.py before any page or sidebar renders.

With SPARSITY_TOKEN set, a browser session must give the token once (a password field, or
`?token=` in the URL, removed from the URL at once); it is compared in constant time and remembered
in st.session_state. Without a token but with an [auth] section in secrets.toml, Streamlit's
st.login is the control. With neither, the app is local (serve refuses to bind beyond 127.0.0.1).
`may_change()` is what destructive actions (delete, import, cancel, editing a run) ask before
acting, each saying `READ_ONLY` beside its control when it may not: app.py's gate stops a session
without access first, so this is the second lock, for a page rendered without app.py's gate.
"""

from __future__ import annotations

import hmac
import os
from typing import Optional

import streamlit as st

_GRANTED = "_access_granted"
WRONG = "That token is not right: ask whoever runs this server for it."
READ_ONLY = "Not done: this session may not change runs (open the app with its access token)."


def token() -> Optional[str]:
    return os.environ.get("SPARSITY_TOKEN") or None


def login_configured() -> bool:
    """An [auth] section in secrets.toml: an identity provider for st.login."""
    return bool(st.secrets.load_if_toml_exists() and "auth" in st.secrets)


def _matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def may_change() -> bool:
    """Whether this session may delete, import or cancel runs."""
    if token():
        return bool(st.session_state.get(_GRANTED))
    if login_configured():
        return bool(st.user.is_logged_in)
    return True


def refused(where=None) -> bool:
    """True, saying so in one line (in `where`, a column or placeholder, else here), when this
    session may not change runs: call it before acting on a destructive control's click."""
    if may_change():
        return False
    (where or st).error(READ_ONLY, icon="🔒")
    return True


def gate(pages=None) -> None:
    """Stop the script (nothing else renders) unless this session has access. `pages`, app.py's
    st.navigation pages, are declared hidden while it is closed: the address keeps naming its page
    (a deep link opens there once the token is given) and no list of pages shows, not even the
    file names Streamlit's legacy pages-folder mode lists on a fresh server's first visit."""
    expected = token()
    if expected:
        _token_gate(expected, pages)
    elif login_configured() and not st.user.is_logged_in:
        st.title("Sparsity Lab")
        st.button("Log in", on_click=st.login)
        _hide(pages)
        st.stop()


def _hide(pages) -> None:
    if pages:
        st.navigation(pages, position="hidden")  # declared, never run


def _token_gate(expected: str, pages=None) -> None:
    wrong = False
    from_url = st.query_params.get("token")
    if from_url is not None:
        del st.query_params["token"]  # a token never stays in an address that may be shared
        if _matches(from_url, expected):
            st.session_state[_GRANTED] = True
        else:
            wrong = True
    if st.session_state.get(_GRANTED):
        return
    box = st.empty()  # the form, cleared in this same run once the token is right
    with box.container():
        st.title("Sparsity Lab")
        with st.form("access", clear_on_submit=True):
            given = st.text_input("Access token", type="password")
            submitted = st.form_submit_button("Open")
    if submitted and _matches(given, expected):
        st.session_state[_GRANTED] = True
        box.empty()
        return
    if submitted or wrong:
        st.error(WRONG)
    _hide(pages)
    st.stop()
