"""The models a page or a spec can name, as metadata: no torch, no weights.

    entry = MODELS["minilm-l6"]          # ModelEntry: task, family, modality, datasets, shapes
    check_model_name("hf:./my-checkpoint")   # on an exposed server: only under SPARSITY_MODEL_DIRS

Each bundled entry's implementation (the loader) registers itself under the same name in its own
zoo module (`@register_loader("minilm-l6")`), and a test keeps the two in step. The shapes here
(`linears`, `blocks`, `hidden`) are what the checks made before a run is queued need; a test checks
them against the real model's skeleton, so they cannot drift.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

Task = Literal["classifier", "encoder", "causal_lm"]
Modality = Literal["image", "text"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: Task  # classifier: logits over classes; encoder: sentence embeddings; causal_lm: next token
    family: str  # the adapter that finds blocks and linears: mlp, bert, llama, gpt2, opt
    modality: Modality
    description: str
    params: int  # parameter count, for the page and for estimates
    train_data: Optional[str]  # the labelled dataset it learns / recovers on (None: not trainable here)
    eval_data: str  # what its quality is measured on
    blocks: int  # transformer blocks (0 for an MLP)
    hidden: int  # width of the residual stream (or of the input for an MLP)
    heads: int = 0  # attention heads (query heads)
    kv_heads: int = 0  # key/value heads (grouped-query attention when fewer than heads)
    # every prunable Linear as (out, in, how many): enough to check a pattern tiles every layer
    linears: tuple[tuple[int, int, int], ...] = ()
    classes: tuple[str, ...] = ()
    tokenizer: bool = True

    @property
    def image(self) -> bool:
        return self.modality == "image"


DIGITS = tuple(str(d) for d in range(10))

MODELS: dict[str, ModelEntry] = {e.name: e for e in (
    ModelEntry("digits-mlp", "classifier", "mlp", "image",
               "MLP 64-256-128-10 trained on scikit-learn's 8x8 digits (seconds, cached)",
               params=50_826, train_data="digits", eval_data="digits", blocks=0, hidden=64,
               linears=((256, 64, 1), (128, 256, 1)), classes=DIGITS, tokenizer=False),
    ModelEntry("minilm-l6", "encoder", "bert", "text",
               "all-MiniLM-L6-v2: BERT encoder, 6 layers, hidden 384, 22.7M params",
               params=22_713_216, train_data=None, eval_data="rotten_tomatoes", blocks=6, hidden=384,
               heads=12, kv_heads=12, linears=((384, 384, 24), (1536, 384, 6), (384, 1536, 6))),
    ModelEntry("minilm-l6-rt", "classifier", "bert", "text",
               "minilm-l6 fine-tuned on Rotten Tomatoes fresh/rotten (the distillation teacher; cached)",
               params=22_713_986, train_data="rotten_tomatoes", eval_data="rotten_tomatoes", blocks=6,
               hidden=384, heads=12, kv_heads=12, linears=((384, 384, 24), (1536, 384, 6), (384, 1536, 6)),
               classes=("rotten", "fresh")),
    ModelEntry("smollm2-135m", "causal_lm", "llama", "text",
               "SmolLM2-135M-Instruct: Llama-architecture causal LM, 30 layers, 134.5M params",
               params=134_515_008, train_data=None, eval_data="bbc_news", blocks=30, hidden=576,
               heads=9, kv_heads=3, linears=((576, 576, 60), (192, 576, 60), (1536, 576, 60), (576, 1536, 30))),
)}


def model_names() -> list[str]:
    return list(MODELS)


# On a server reachable beyond loopback (`serve --host`, which sets SPARSITY_EXPOSED), an hf: local
# folder must lie under one of these (os.pathsep-separated); none set: no local folders at all.
# Every path outside gets the same message, so a spec cannot probe what exists on the server.
MODEL_DIRS_ENV = "SPARSITY_MODEL_DIRS"
OUTSIDE_MODEL_DIRS = "hf: local folders are limited to SPARSITY_MODEL_DIRS on this server"


def exposed() -> bool:
    """This process serves people beyond loopback (set by `serve --host`)."""
    return os.environ.get("SPARSITY_EXPOSED", "") not in ("", "0")


def model_dirs() -> list[Path]:
    """The folders hf: local checkpoints may come from on an exposed server, symlinks resolved
    (an entry that cannot be resolved, such as `~nobody`, allows nothing)."""
    dirs = []
    for entry in os.environ.get(MODEL_DIRS_ENV, "").split(os.pathsep):
        try:
            dirs += [Path(entry.strip()).expanduser().resolve()] if entry.strip() else []
        except (OSError, RuntimeError):
            continue
    return dirs


def check_model_name(name: str) -> str:
    """Validate a model name without loading it. Raises ValueError with a message for a person.

    On an exposed server an hf: local folder outside SPARSITY_MODEL_DIRS is refused with one
    message whatever the path (missing, a file, a bad checkpoint): nothing about it is revealed."""
    name = name.strip()
    if name in MODELS:
        return name
    if name.startswith("hf:"):
        ref = name[3:].strip()
        if not ref:
            raise ValueError("hf: needs a hub id or a local path, e.g. hf:./my-checkpoint")
        if exposed():
            _check_exposed_ref(ref)
        else:
            _check_ref(ref)
        return f"hf:{ref}"
    known = ", ".join(MODELS)
    raise ValueError(f"unknown model {name!r}: pick one of {known}, or hf:<hub-id-or-path>")


def _looks_local(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or Path(ref).expanduser().exists()


def _check_ref(ref: str) -> None:
    """A local folder holding a config.json, or something shaped like a hub id."""
    if _looks_local(ref):
        _check_folder(ref, Path(ref).expanduser())
    else:
        _check_hub_id(ref)


def _check_exposed_ref(ref: str) -> None:
    """As `_check_ref`, but a local path must resolve (symlinks and `..` followed) into a
    SPARSITY_MODEL_DIRS folder before anything about it is looked at or said."""
    try:
        local = _looks_local(ref)
        path = Path(ref).expanduser().resolve() if local else None
    except (OSError, RuntimeError):  # `~nobody`, a folder we may not search: as good as outside
        raise ValueError(OUTSIDE_MODEL_DIRS) from None
    if path is None:
        _check_hub_id(ref)
        return
    if not any(path.is_relative_to(d) for d in model_dirs()):
        raise ValueError(OUTSIDE_MODEL_DIRS)
    _check_folder(ref, path)


def _check_hub_id(ref: str) -> None:
    if ref.count("/") > 1 or " " in ref:
        raise ValueError(f"{ref!r} is neither a local directory nor a hub id like 'org/model'")


def _check_folder(ref: str, path: Path) -> None:
    if not path.is_dir():
        raise ValueError(f"hf path {ref!r} does not exist or is not a directory")
    if not (path / "config.json").is_file():
        raise ValueError(f"hf path {ref!r} has no config.json: not a transformers checkpoint")


def model_entry(name: str) -> Optional[ModelEntry]:
    """The catalog entry of a bundled model; None for an `hf:` checkpoint (read its config)."""
    return MODELS.get(name)
