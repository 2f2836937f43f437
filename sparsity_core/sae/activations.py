"""Activation capture: where a site is in a block, hooks that are always removed, cached shards.

    key = ActivationKey("minilm-l6", layer=3, site="resid", data="all", split="train", context=128)
    acts = load_activations(handle, key, n_tokens=200_000)   # captured once, then read from disk

Sites: `resid` is the residual stream after block `layer` (the block's output), `mlp` and `attn`
the MLP and attention outputs before they are added back; `hidden` is an MLP classifier's hidden
layer `layer` after its ReLU (digits-mlp: 256 then 128 units), read on whole image splits
(`image_activations`, one row per image, no cache: 1,797 digits take milliseconds). Text is cut into windows of `context`
tokens (`corpus.py`; each window gets the tokenizer's special tokens), every real token of a window
is one row, except a causal LM's first position (its attention sink: `leaves_out_first`) and its
rare massive activations further in (`massive_rows`; the count is `manifest["massive_left_out"]`).
Shards are safetensors under cache_dir("activations", <key hash>), written in window order with a
manifest, so a later run on the same model/parent/layer/site/data reuses them and a bigger budget
only captures the missing tail. Capture stops the forward pass right after the site (a private
exception), which saves the blocks above it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sparsity_core.data import digits
from sparsity_core.paths import cache_dir
from sparsity_core.sae.corpus import corpus_texts, iter_windows
from sparsity_core.zoo import ModelHandle, blocks
from sparsity_core.zoo.adapters import resolve_path

CAPTURE_ORDER = 4  # bumped when what a shard holds changes (2: corpora shuffled; 3: no causal-LM sink rows;
#                   4: nor a causal LM's massive activations further in, `massive_rows`)
MASSIVE_NORM = 16  # a causal LM's row this many times its batch's median norm is a massive activation
SHARD_TOKENS = 65_536  # ~50 MB of fp16 at d=384: small enough to write often, few files at 1M tokens
WINDOWS_PER_BATCH = 16  # 16 x 128 tokens per forward keeps the attention matmuls efficient on a CPU
SITE_PATHS = {  # the module whose output is a site (catalog.sae.SITES; resid is the block), first match wins
    "attn": ("self_attn.o_proj", "attn.c_proj", "attention.output.dense", "self_attn.out_proj",
             "attention.out_lin"),
    "mlp": ("mlp", "output.dense", "ffn.lin2", "fc2"),
}


@dataclass(frozen=True)
class ActivationKey:
    """Everything that decides what a shard holds (the token budget is not part of it)."""

    model: str
    layer: int
    site: str = "resid"
    data: str = "all"
    split: str = "train"
    context: int = 128
    parent: str = ""  # "run-12@0.5" when activations come from a pruned parent
    seed: int = 0  # split seed

    def folder(self):
        what = {**asdict(self), "order": CAPTURE_ORDER}
        digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
        return cache_dir("activations", digest)


@dataclass
class Activations:
    acts: Tensor  # (n, d) float16
    token_ids: Tensor  # (n,) int64
    window: Tensor  # (n,) int64: which window each row came from (contexts never cross windows)
    images: Optional[Tensor] = None  # (n, 8, 8) pixels when rows are images (token_ids then hold labels)

    def __len__(self) -> int:
        return len(self.acts)


# ------------------------------------------------------------------ sites and hooks
def site_module(handle: ModelHandle, layer: int, site: str) -> nn.Module:
    if site == "hidden":
        return hidden_module(handle, layer)
    found = blocks(handle)
    if not found:
        raise ValueError(f"{handle.name} has no transformer blocks to read activations from")
    if not 0 <= layer < len(found):
        raise ValueError(f"layer {layer} is out of range: {handle.name} has blocks 0..{len(found) - 1}")
    block = found[layer]
    if site == "resid":
        return block
    for path in SITE_PATHS[site]:
        module = resolve_path(block, path)
        if module is not None:
            return module
    raise ValueError(f"no {site} output found in a {handle.family} block")


def hidden_module(handle: ModelHandle, layer: int) -> nn.Module:
    """The ReLU after hidden layer `layer` of an MLP classifier (its `body` is Linear, ReLU, ...)."""
    relus = [m for m in getattr(handle.model, "body", ()) if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(f"{handle.name} has no MLP hidden layers to read activations from")
    if not 0 <= layer < len(relus):
        raise ValueError(f"layer {layer} is out of range: {handle.name} has hidden layers 0..{len(relus) - 1}")
    return relus[layer]


IMAGE_SEED = 0  # the digits split digits-mlp was trained on: its test images are new to model and SAE alike


@torch.no_grad()
def image_activations(handle: ModelHandle, layer: int, split: str) -> Activations:
    """Hidden layer `layer` of an MLP classifier on every image of a digits split: one row per
    image, its label in `token_ids`, each image its own window, the pixels alongside."""
    data = digits(split, seed=IMAGE_SEED)
    images = torch.from_numpy(data.images)
    got: list[Tensor] = []

    def hook(_mod, _inp, output):
        got.append(output.detach())
        raise _StopForward

    with hooked(hidden_module(handle, layer), hook):
        try:
            handle.model(images.to(handle.device))
        except _StopForward:
            pass
    acts = got[0].to("cpu", torch.float16)
    return Activations(acts, torch.from_numpy(data.labels), torch.arange(len(acts)), images)


def first_tensor(output) -> Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _replace_first(output, new: Tensor):
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    return new


class _StopForward(Exception):
    """Raised by a capture hook once the site is read: the blocks above it need not run."""


@contextmanager
def hooked(module: nn.Module, fn: Callable) -> Iterator[None]:
    """A forward hook that is removed however the block exits (errors included)."""
    handle = module.register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def splice(module: nn.Module, replace: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Run the model with the site's output replaced by `replace(output)` (SAE, zero ablation)."""
    def hook(_mod, _inp, output):
        return _replace_first(output, replace(first_tensor(output)))

    with hooked(module, hook):
        yield


@torch.no_grad()
def site_outputs(handle: ModelHandle, module: nn.Module, enc: dict) -> Tensor:
    """The site's output for one tokenised batch, (batch, seq, d); stops the forward there."""
    got: list[Tensor] = []

    def hook(_mod, _inp, output):
        got.append(first_tensor(output).detach())
        raise _StopForward

    with hooked(module, hook):
        try:
            handle.model(**enc)
        except _StopForward:
            pass
    if not got:
        raise RuntimeError("the site's hook never ran: the module is not on the forward path")
    return got[0]


def cached_tensors(cache: Optional[Path], name: str, key: str,
                   compute: Callable[[], dict[str, Tensor]]) -> tuple[dict[str, Tensor], bool]:
    """`compute()` (named tensors) kept in `cache`/<name>-<hash of key>.safetensors, and whether they
    came from there. `cache` is a folder that fixes the model, layer, site and parent (a run's
    held-out activation folder); `key` fixes the inputs (texts, context, prompts). None: no cache."""
    path = None if cache is None else cache / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    if path is not None and path.exists():
        return load_file(path), True
    got = compute()
    if path is not None:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({k: v.contiguous() for k, v in got.items()}, tmp)
        tmp.replace(path)  # never a half-written file under the final name
    return got, False


# ------------------------------------------------------------------ capture + cache
def load_activations(handle: ModelHandle, key: ActivationKey, n_tokens: int,
                     progress: Optional[Callable[[float, str], None]] = None) -> Activations:
    """The first `n_tokens` rows of the key's activations, capturing whatever is missing."""
    folder = key.folder()
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs on the same key: one captures, the other waits
        manifest = _manifest(folder, key)
        if manifest["tokens"] < n_tokens and not manifest["exhausted"]:
            _capture(handle, key, manifest, n_tokens, progress)
    if manifest["tokens"] < n_tokens:
        raise ValueError(f"the corpus holds only {manifest['tokens']:,} tokens for this model "
                         f"(asked for {n_tokens:,})")
    return _read(folder, manifest, n_tokens)


def cached_tokens(key: ActivationKey, field: str = "tokens") -> int:
    """Rows of `key` captured so far (0 before its first capture); `field="massive_left_out"`: the
    massive activations its capture left out so far."""
    path = key.folder() / "manifest.json"
    return json.loads(path.read_text()).get(field, 0) if path.exists() else 0


def _manifest(folder, key: ActivationKey) -> dict:
    path = folder / "manifest.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"key": asdict(key), "tokens": 0, "windows_done": 0, "shards": [], "exhausted": False}


def leaves_out_first(handle: ModelHandle) -> bool:
    """Causal LMs: the first position of each window is an attention sink (Xiao et al. 2023; Sun et
    al. 2024, massive activations) and is left out of the activations. On SmolLM2's block 15 its
    norm is ~23,500 against a median of 172 elsewhere: 283 such rows in 32k held 98% of the
    variance, so an SAE trained on them scored FVE 0.96 while splicing it recovered a third of the
    cross-entropy. Encoders keep theirs (MiniLM's [CLS] is no larger than other tokens)."""
    if handle.task != "causal_lm":
        return False
    if getattr(handle.tokenizer, "padding_side", "right") != "right":
        raise ValueError(f"{handle.name}'s tokenizer pads on the left; the capture expects right padding")
    return True


def massive_rows(out: Tensor, real: Optional[Tensor] = None) -> Tensor:
    """(batch, seq) bool: the positions of `out` (batch, seq, d) whose norm is more than
    MASSIVE_NORM times the median norm of the `real` positions (all when None). Sun et al. (2024)
    find such massive activations on the first token and on the first delimiters; on SmolLM2's
    block 15 a few per 16k tokens beyond the first position (' me', '\\n', ' another') have norms of
    4,000 to 26,000 against a median of 173 (ordinary tokens stay below 9x): one of them holds as
    much variance as 16k ordinary rows, and threshold SAEs (BatchTopK, JumpReLU) trained with them
    scored FVE -4 to -8 on corpora whose test split held one. Like the sink they are left out of
    the capture and kept as they are when an SAE is spliced in."""
    norms = out.float().norm(dim=-1)
    ref = norms[real] if real is not None else norms.flatten()
    return norms > MASSIVE_NORM * ref.median() if ref.numel() else torch.zeros_like(norms, dtype=torch.bool)


def _capture(handle, key, manifest, n_tokens, progress) -> None:
    folder = key.folder()
    module = site_module(handle, key.layer, key.site)
    windows = iter_windows(handle.tokenizer, corpus_texts(key.data, key.split, key.seed), key.context)
    start = manifest["windows_done"]
    sink = leaves_out_first(handle)
    buf: dict[str, list[Tensor]] = {"acts": [], "token_ids": [], "window": []}
    buffered, w0 = 0, start
    for batch in _batches(windows, start):
        enc = handle.tokenizer.pad({"input_ids": batch}, return_tensors="pt").to(handle.device)
        out = site_outputs(handle, module, enc)
        real = enc["attention_mask"].bool()
        if sink:  # right-padded: column 0 is every window's first token; then the massive rows
            real[:, 0] = False
            massive = massive_rows(out, real) & real
            manifest["massive_left_out"] = manifest.get("massive_left_out", 0) + int(massive.sum())
            real &= ~massive
        buf["acts"].append(out[real].to("cpu", torch.float16))
        buf["token_ids"].append(enc["input_ids"][real].cpu())
        buf["window"].append((torch.arange(w0, w0 + len(batch))[:, None].expand_as(real.cpu()))[real.cpu()])
        buffered += int(real.sum())
        w0 += len(batch)
        manifest["windows_done"] = w0
        done = manifest["tokens"] + buffered >= n_tokens
        if buffered >= SHARD_TOKENS or done:
            _write_shard(folder, manifest, buf, buffered)
            buf, buffered = {k: [] for k in buf}, 0
            if progress:
                got = min(manifest["tokens"], n_tokens)  # the last batch overshoots the budget
                progress(got / n_tokens, f"capturing {key.split} activations: {got:,} of {n_tokens:,} tokens")
        if done:
            return
    _write_shard(folder, manifest, buf, buffered)
    manifest["exhausted"] = True
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _batches(windows: Iterator[list[int]], skip: int) -> Iterator[list[list[int]]]:
    """WINDOWS_PER_BATCH windows at a time, after skipping the `skip` already captured."""
    batch: list[list[int]] = []
    for i, ids in enumerate(windows):
        if i < skip:
            continue
        batch.append(ids)
        if len(batch) == WINDOWS_PER_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_shard(folder, manifest, buf, n) -> None:
    if n == 0:
        return
    name = f"shard-{len(manifest['shards']):05d}.safetensors"
    acts = torch.cat(buf["acts"])
    if not torch.isfinite(acts).all():
        raise ValueError("activations overflow float16 at this site; pick another layer or site")
    save_file({"acts": acts.contiguous(), "token_ids": torch.cat(buf["token_ids"]).contiguous(),
               "window": torch.cat(buf["window"]).contiguous()}, folder / name)
    manifest["shards"].append({"file": name, "tokens": n})
    manifest["tokens"] += n
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest))
    tmp.replace(folder / "manifest.json")  # the manifest only ever names complete shards


def _read(folder, manifest, n_tokens) -> Activations:
    parts: dict[str, list[Tensor]] = {"acts": [], "token_ids": [], "window": []}
    got = 0
    for shard in manifest["shards"]:
        data = load_file(folder / shard["file"])
        take = min(shard["tokens"], n_tokens - got)
        for k in parts:
            parts[k].append(data[k][:take])
        got += take
        if got >= n_tokens:
            break
    return Activations(*(torch.cat(parts[k]) for k in ("acts", "token_ids", "window")))
