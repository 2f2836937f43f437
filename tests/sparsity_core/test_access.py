"""serve's access rule: beyond loopback it needs a token (long enough) or a complete st.login."""

import pytest

from sparsity_core.cli import MIN_TOKEN_CHARS, access_problem, is_loopback, main


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.5"])
def test_loopback_needs_nothing(host):
    assert is_loopback(host) and access_problem(host, None, None) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.168.1.7", "::"])
def test_beyond_loopback_without_a_control_is_refused(host):
    assert not is_loopback(host)
    assert "SPARSITY_TOKEN" in access_problem(host, None, None)


def test_a_short_token_is_refused_and_a_long_one_accepted():
    assert f"at least {MIN_TOKEN_CHARS}" in access_problem("0.0.0.0", "short", None)
    assert access_problem("0.0.0.0", "x" * MIN_TOKEN_CHARS, None) is None


def test_an_incomplete_auth_section_is_refused():
    assert "cookie_secret" in access_problem("0.0.0.0", None, {"redirect_uri": "http://x/oauth2callback"})


def test_serve_refuses_in_one_line_with_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("SPARSITY_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no user-wide secrets.toml
    assert main(["serve", "--host", "0.0.0.0", "--port", "8599"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SPARSITY_TOKEN" in err[0]
