"""`hf:<hub-id-or-local-path>`: any transformers checkpoint through the Auto classes.

The architecture named in config.json decides the task: *ForCausalLM -> causal_lm,
*ForSequenceClassification -> classifier, anything else -> encoder (mean-pooled embeddings).
Hub ids work for users who are online; offline, a local directory does. A checkpoint that cannot
be read (config.json not JSON, an unknown model_type, a hub id offline) is a ValueError of one line.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from sparsity_core.zoo.adapters import family_of
from sparsity_core.zoo.minilm import mean_pooled_embeddings
from sparsity_core.zoo.registry import ModelHandle


def _resolve(ref: str, **config_kwargs):
    """(source, config, task, Auto class) for a hub id or a local folder (symlinks resolved, the
    folder `check_model_name` checked). ValueError, one line, when its config cannot be read."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    source, config = hf_config(ref, **config_kwargs)
    arch = " ".join(config.architectures or [])
    if "ForCausalLM" in arch or "LMHeadModel" in arch:  # GPT2LMHeadModel names itself the old way
        return source, config, "causal_lm", AutoModelForCausalLM
    if "ForSequenceClassification" in arch:
        return source, config, "classifier", AutoModelForSequenceClassification
    return source, config, "encoder", AutoModel


def hf_config(ref: str, **config_kwargs):
    """(source, transformers config) of `hf:<ref>`: source is the local folder with symlinks
    resolved, or the hub id. A bad config.json or an unreachable hub id is a ValueError of one
    line naming `ref` (never the resolved server path)."""
    from transformers import AutoConfig

    path = Path(ref).expanduser()
    source = str(path.resolve()) if path.exists() else ref
    local = Path(source).is_dir()
    if local and "gguf_file" not in config_kwargs:  # a GGUF carries its config in its header
        _check_config_json(ref, Path(source) / "config.json")
    try:
        return source, AutoConfig.from_pretrained(source, **config_kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(_config_problem(ref, local, exc).replace(source, ref)) from None


def _check_config_json(ref: str, path: Path) -> None:
    """config.json is a JSON object naming a model_type this transformers knows."""
    import transformers
    from transformers import CONFIG_MAPPING

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"hf:{ref}: config.json cannot be read ({type(exc).__name__})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"hf:{ref}: config.json is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"hf:{ref}: config.json holds a JSON {type(data).__name__}, not an object")
    model_type = data.get("model_type")
    if model_type is not None and (not isinstance(model_type, str) or model_type not in CONFIG_MAPPING):
        raise ValueError(f"hf:{ref}: config.json names model_type {str(model_type)[:80]!r}, which transformers "
                         f"{transformers.__version__} does not know (a newer transformers, or a typo?)")


def _config_problem(ref: str, local: bool, exc: BaseException) -> str:
    from huggingface_hub import constants

    if not local and isinstance(exc, OSError):
        if constants.HF_HUB_OFFLINE:  # what the hub client read from HF_HUB_OFFLINE when imported
            return (f"hf:{ref}: not in the local Hugging Face cache, and the hub is offline here "
                    "(HF_HUB_OFFLINE): download it first, or use a local folder")
        return f"hf:{ref}: could not be fetched from the Hugging Face hub: {_first_line(exc)}"
    return f"hf:{ref}: its config cannot be read: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)  # str(KeyError) adds quotes
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def load_hf(ref: str, **kwargs) -> ModelHandle:
    source, config, task, auto = _resolve(ref)
    try:
        model = auto.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError) as exc:  # no weights, weights that do not fit the config
        raise ValueError(f"hf:{ref}: the model cannot be loaded: {_first_line(exc)}".replace(source, ref)) from None
    return _wrap(ref, source, config, task, model)


def skeleton_hf(ref: str, **config_kwargs) -> ModelHandle:
    """Structure only: the config's model built on the meta device (no weights read)."""
    import torch

    source, config, task, auto = _resolve(ref, **config_kwargs)
    try:
        with torch.device("meta"):
            model = auto.from_config(config)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a config.json with odd values
        raise ValueError(f"hf:{ref}: no model can be built from its config.json: {_first_line(exc)}") from None
    return _wrap(ref, source, config, task, model, **config_kwargs)


def _wrap(ref: str, source: str, config, task: str, model, **tokenizer_kwargs) -> ModelHandle:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **tokenizer_kwargs)
    except (OSError, ValueError):  # a bare checkpoint (weights + config) still loads
        tokenizer = None
    classes = ()
    if task == "classifier":
        id2label = getattr(config, "id2label", None) or {}
        classes = tuple(str(id2label.get(i, i)) for i in range(config.num_labels))
    handle = ModelHandle(f"hf:{ref}", model, task, family_of(model), tokenizer=tokenizer,
                         classes=classes, meta={"source": source, "architectures": config.architectures})
    if task == "encoder" and tokenizer is not None:
        handle.embed = partial(mean_pooled_embeddings, model, tokenizer)
    return handle
