""".streamlit/config.toml keeps the app closed and quiet by default (loopback, headless, no usage
statistics, no external-IP lookup), and `serve` passes the same values as flags."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sparsity_core.cli import streamlit_flags

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"
EXPECTED = {"browser.gatherUsageStats": False, "server.headless": True, "server.showEmailPrompt": False,
            "server.address": "127.0.0.1"}


def _options() -> dict:
    data = tomllib.loads(CONFIG.read_text())
    return {f"{section}.{key}": value for section, keys in data.items() for key, value in keys.items()}


def test_the_config_parses_and_is_closed_by_default():
    assert _options() == EXPECTED


def test_streamlit_reads_it_as_set_by_hand():
    """A non-wildcard server.address set by hand is what makes Streamlit's banner skip get_external_ip.
    In a fresh interpreter started in the repository root, as `streamlit run app.py` is."""
    code = ("from streamlit import config as c; print(c.is_manually_set('server.address'), "
            "c.get_option('server.address'), c.get_option('browser.gatherUsageStats'), c.get_option('server.headless'))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}  # only the file speaks
    env["HOME"] = str(CONFIG.parents[1] / ".no-home")  # no user-wide ~/.streamlit/config.toml
    done = subprocess.run([sys.executable, "-c", code], cwd=CONFIG.parents[1], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.stdout.split() == ["True", "127.0.0.1", "False", "True"], done.stderr[-2000:]


def _flags(host: str) -> dict:
    argv = streamlit_flags(host)
    return {name.removeprefix("--"): value for name, value in zip(argv[::2], argv[1::2])}


def test_serve_passes_the_same_values():
    flags = _flags("127.0.0.1")
    for name, value in EXPECTED.items():
        assert flags[name] == (str(value).lower() if isinstance(value, bool) else value)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_a_wildcard_address_still_names_a_server_address(host):
    """With --host 0.0.0.0 the banner would look up the external IP unless browser.serverAddress is set."""
    flags = _flags(host)
    assert flags["server.address"] == host and flags["browser.serverAddress"] == "localhost"
