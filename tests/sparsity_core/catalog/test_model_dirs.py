"""hf: checkpoints named in a spec: local folders limited to SPARSITY_MODEL_DIRS on an exposed
server (one message whatever the path, so nothing about the server leaks), and a checkpoint that
cannot be read is one line, at spec check time and at load time, never a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsity_core.catalog.models import OUTSIDE_MODEL_DIRS, check_model_name
from sparsity_core.specs import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[3]
PRUNE = {"kind": "prune", "sparsities": [0.5]}


@pytest.fixture
def tiny_config(tmp_path) -> str:
    """config.json of a 1-layer BERT of width 16, as transformers writes it."""
    from transformers import BertConfig

    folder = tmp_path / "tiny-bert"
    BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32, architectures=["BertModel"]).save_pretrained(folder)
    return (folder / "config.json").read_text()


def checkpoint(folder: Path, config: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config)
    return folder


@pytest.fixture
def exposed(monkeypatch, tmp_path):
    """An exposed server whose one model folder is tmp_path/models."""
    allowed = tmp_path / "models"
    allowed.mkdir()
    monkeypatch.setenv("SPARSITY_EXPOSED", "1")
    monkeypatch.setenv("SPARSITY_MODEL_DIRS", str(allowed))
    return allowed


def model_error(model: str) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec({**PRUNE, "model": model})
    return err.value.errors["model"]


# ---------------------------------------------------------------- exposed: SPARSITY_MODEL_DIRS
def test_outside_the_model_dirs_every_path_gets_the_same_message(exposed, tmp_path, tiny_config):
    bad = checkpoint(tmp_path / "bad-config", "not json{")
    good_elsewhere = checkpoint(tmp_path / "elsewhere", tiny_config)
    (tmp_path / "a-file").write_text("x")
    for ref in ("/etc", "/nonexistent", str(bad), str(good_elsewhere), str(tmp_path / "a-file"),
                "~", "~no-such-user/x", "./.", f"{exposed}/../elsewhere"):
        assert model_error(f"hf:{ref}") == OUTSIDE_MODEL_DIRS, ref


def test_symlinks_and_dotdot_are_resolved_before_the_check(exposed, tmp_path, tiny_config):
    outside = checkpoint(tmp_path / "outside", tiny_config)
    (exposed / "link").symlink_to(outside)
    assert model_error(f"hf:{exposed / 'link'}") == OUTSIDE_MODEL_DIRS
    inside = checkpoint(exposed / "bert", tiny_config)
    (tmp_path / "into").symlink_to(inside)  # a link from outside into the folder: its target counts
    assert check_model_name(f"hf:{tmp_path / 'into'}") == f"hf:{tmp_path / 'into'}"
    assert check_model_name(f"hf:{exposed}/x/../bert") == f"hf:{exposed}/x/../bert"


def test_a_hub_shaped_name_that_is_a_folder_here_is_checked_as_a_folder(exposed, tmp_path, tiny_config, monkeypatch):
    """transformers would open `org/name` from the working directory before asking the hub."""
    checkpoint(tmp_path / "org" / "name", tiny_config)
    monkeypatch.chdir(tmp_path)
    assert model_error("hf:org/name") == OUTSIDE_MODEL_DIRS
    monkeypatch.chdir(exposed)
    assert check_model_name("hf:org/other") == "hf:org/other"  # not a folder here: a hub id


def test_no_model_dirs_means_no_local_folders_but_hub_ids_stay(monkeypatch, tmp_path, tiny_config):
    monkeypatch.setenv("SPARSITY_EXPOSED", "1")
    monkeypatch.delenv("SPARSITY_MODEL_DIRS", raising=False)
    folder = checkpoint(tmp_path / "bert", tiny_config)
    assert model_error(f"hf:{folder}") == OUTSIDE_MODEL_DIRS
    assert check_model_name("hf:org/model") == "hf:org/model"
    assert check_model_name("hf:gpt2") == "hf:gpt2"
    assert "neither a local directory nor a hub id" in model_error("hf:a/b/c")


def test_several_model_dirs_and_inside_them_the_helpful_messages(monkeypatch, tmp_path, tiny_config):
    first, second = tmp_path / "one", tmp_path / "two"
    second.mkdir()
    monkeypatch.setenv("SPARSITY_EXPOSED", "1")
    monkeypatch.setenv("SPARSITY_MODEL_DIRS", os.pathsep.join([str(first), "", str(second)]))
    folder = checkpoint(second / "bert", tiny_config)
    assert parse_spec({**PRUNE, "model": f"hf:{folder}"}).model == f"hf:{folder}"
    assert "does not exist" in model_error(f"hf:{second / 'missing'}")
    (second / "empty").mkdir()
    assert "no config.json" in model_error(f"hf:{second / 'empty'}")


def test_not_exposed_any_folder_is_allowed(monkeypatch, tmp_path, tiny_config):
    monkeypatch.delenv("SPARSITY_EXPOSED", raising=False)
    monkeypatch.setenv("SPARSITY_MODEL_DIRS", str(tmp_path / "models"))
    folder = checkpoint(tmp_path / "bert", tiny_config)
    assert check_model_name(f"hf:{folder}") == f"hf:{folder}"
    assert "does not exist" in model_error("hf:/nonexistent")


# ---------------------------------------------------------------- checkpoints that cannot be read
def unreadable(tmp_path: Path, tiny_config: str) -> dict[str, tuple[str, str]]:
    """name -> (model, words its one-line message holds)."""
    unknown = json.dumps({**json.loads(tiny_config), "model_type": "no-such-type"})
    return {
        "not json": (f"hf:{checkpoint(tmp_path / 'bad', 'not json{')}", "config.json is not valid JSON (line 1"),
        "a list": (f"hf:{checkpoint(tmp_path / 'list', '[1, 2]')}", "holds a JSON list, not an object"),
        "unknown type": (f"hf:{checkpoint(tmp_path / 'unknown', unknown)}",
                         "names model_type 'no-such-type', which transformers"),
        "no type": (f"hf:{checkpoint(tmp_path / 'untyped', '{}')}", "its config cannot be read: Unrecognized model"),
        "offline hub id": ("hf:no-such-org/no-such-model", "not in the local Hugging Face cache, and the hub is offline"),
    }


@pytest.mark.parametrize("case", ["not json", "a list", "unknown type", "no type", "offline hub id"])
def test_a_checkpoint_that_cannot_be_read_is_one_line_at_check_and_at_load(case, tmp_path, tiny_config, monkeypatch):
    from huggingface_hub import constants

    from sparsity_core.jobs.api import preflight
    from sparsity_core.zoo import load_model, load_skeleton

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once at import: the conftest's may come late
    model, words = unreadable(tmp_path, tiny_config)[case]
    spec = parse_spec({**PRUNE, "model": model})  # the name is fine: the folder has a config.json
    with pytest.raises(SpecError) as err:
        preflight(spec)  # the pruning lab reads the skeleton
    message = err.value.errors["model"]
    assert words in message and "\n" not in message and message.startswith(model)
    with pytest.raises(SpecError) as err:
        load_skeleton(model)
    assert err.value.errors == {"model": message}
    with pytest.raises(ValueError) as err:  # the worker: the run fails with this line
        load_model(model)
    assert str(err.value) == message


def test_a_bad_folder_inside_the_model_dirs_keeps_its_message(exposed, tiny_config):
    from sparsity_core.zoo import load_skeleton

    bad = checkpoint(exposed / "bad", "not json{")
    with pytest.raises(SpecError, match="config.json is not valid JSON"):
        load_skeleton(f"hf:{bad}")
    good = checkpoint(exposed / "bert", tiny_config)
    handle = load_skeleton(f"hf:{good}")
    assert (handle.task, handle.family, handle.model.config.hidden_size) == ("encoder", "bert", 16)
    assert handle.meta["source"] == str(good.resolve())


def test_the_loader_refuses_outside_the_model_dirs_too(exposed, tmp_path, tiny_config):
    """A stored spec read by an exposed worker is checked again before anything is opened."""
    from sparsity_core.zoo import load_model, load_skeleton

    folder = checkpoint(tmp_path / "elsewhere", tiny_config)
    with pytest.raises(SpecError) as err:
        load_skeleton(f"hf:{folder}")
    assert err.value.errors == {"model": OUTSIDE_MODEL_DIRS}
    with pytest.raises(ValueError, match=OUTSIDE_MODEL_DIRS):
        load_model(f"hf:{folder}")


# ---------------------------------------------------------------- the CLI
def cli(*args, cwd, **env):
    return subprocess.run([sys.executable, "-m", "sparsity_core", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_the_cli_prints_one_line_and_exits_2_for_a_bad_folder(tmp_path):
    bad = checkpoint(tmp_path / "bad", "not json{")
    spec = json.dumps({**PRUNE, "model": f"hf:{bad}"})
    done = cli("submit", spec, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"error: invalid spec: model: hf:{bad}: config.json is not valid JSON "
                                   "(line 1, column 1: Expecting value)")
    exposed = cli("submit", spec, cwd=tmp_path, SPARSITY_EXPOSED="1", SPARSITY_MODEL_DIRS=str(tmp_path / "models"))
    assert exposed.returncode == 2
    assert exposed.stderr.strip() == f"error: invalid spec: model: {OUTSIDE_MODEL_DIRS}"
