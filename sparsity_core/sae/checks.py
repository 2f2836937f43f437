"""Checks before an SAE run is queued (the jobs layer's preflight for kind `sae`); each names its field.

For a bundled model every fact comes from its catalog entry (blocks, hidden width, tokenizer) and
the stored token count of the corpus (`corpus.cached_token_count`): no torch, no weights, a few
milliseconds in the app. A corpus never counted for that model is not guessed at: the job counts
it before capturing anything and refuses with the same message, and the count is stored for the
next submit. An `hf:` checkpoint has no entry: its skeleton (meta device, no weights) gives the
same facts, and its tokenizer counts the corpus once.
"""

from __future__ import annotations

from typing import Callable, Optional

from sparsity_core.catalog.models import MODELS, model_entry
from sparsity_core.catalog.sae import CORPORA, HIDDEN_LAYERS, IMAGE_DATA, TEXT_SITES
from sparsity_core.jobs.context import ParentRun, check_parent
from sparsity_core.sae.corpus import cached_token_count, token_count
from sparsity_core.specs import SAESpec, SpecError


def preflight_sae(spec: SAESpec, parent: Optional[ParentRun]) -> None:
    """A text model with blocks (or an MLP classifier with hidden layers), the layer in range, the
    site and data the model has, k within the latents, a token budget the corpus can fill, a usable parent."""
    errors: dict[str, str] = {}
    if spec.parent_run is not None:
        try:
            check_parent(parent, spec, sparsity=spec.parent_sparsity)
        except SpecError as exc:
            errors.update(exc.errors)
    if spec.model in HIDDEN_LAYERS:
        errors.update(_image_problems(spec))
        if spec.absorption:
            errors["absorption"] = (f"feature absorption reads how a text model spells words; {spec.model} reads "
                                    "images: untick it")
        if errors:
            raise SpecError(errors)
        return
    if spec.site not in TEXT_SITES:
        errors["site"] = (f"site {spec.site} is an MLP classifier's hidden layer ({', '.join(HIDDEN_LAYERS)}); "
                          f"{spec.model} has {', '.join(TEXT_SITES)}")
    if spec.data not in (*CORPORA, "all"):
        errors["data"] = f"{spec.data} holds images, for {', '.join(HIDDEN_LAYERS)}; {spec.model} reads text"
    blocks, hidden, has_tokenizer, held = _facts(spec)
    if blocks == 0:
        readers = ", ".join([*(n for n, e in MODELS.items() if e.blocks and e.tokenizer), *HIDDEN_LAYERS])
        raise SpecError({**errors, "model": f"{spec.model} has no transformer blocks or hidden layers the SAE lab "
                                            f"reads: pick one of {readers} or an hf: checkpoint"})
    if not has_tokenizer:
        errors["model"] = f"{spec.model} has no tokenizer, so no text can be fed to it"
    if spec.layer >= blocks:
        errors["layer"] = f"layer {spec.layer} is out of range: {spec.model} has blocks 0..{blocks - 1}"
    if hidden:
        errors.update(k_problems(spec, hidden))
    if spec.batch_tokens > spec.tokens:
        errors["batch_tokens"] = f"a batch of {spec.batch_tokens:,} tokens is more than the budget ({spec.tokens:,})"
    if not errors and (problem := budget_problem(spec, held())):
        errors["tokens"] = problem
    if errors:
        raise SpecError(errors)


def _image_problems(spec: SAESpec) -> dict[str, str]:
    """An MLP classifier: site `hidden`, its own image data, a hidden layer it has, k within the latents."""
    widths, data = HIDDEN_LAYERS[spec.model], IMAGE_DATA[spec.model]
    errors: dict[str, str] = {}
    if spec.site != "hidden":
        errors["site"] = f"{spec.model} is an MLP: its sites are its hidden layers (site hidden), not {spec.site}"
    if spec.data != data:
        errors["data"] = f"{spec.model} reads {data} images: data must be {data}"
    if spec.layer >= len(widths):
        errors["layer"] = (f"layer {spec.layer} is out of range: {spec.model} has hidden layers "
                           f"0..{len(widths) - 1} (widths {', '.join(map(str, widths))})")
    else:
        errors.update(k_problems(spec, widths[spec.layer]))
    if spec.batch_tokens > spec.tokens:
        errors["batch_tokens"] = f"a batch of {spec.batch_tokens:,} images is more than the budget ({spec.tokens:,})"
    return errors


def k_problems(spec: SAESpec, width: int) -> dict[str, str]:
    """k, and every k of the L0 sweep, within the expansion x width latents."""
    latents, errors = spec.expansion * width, {}
    for field, ks in (("k", [spec.k]), ("k_sweep", spec.k_sweep)):
        if too_big := [k for k in ks if k > latents]:
            errors[field] = f"k={too_big[0]} is larger than the number of latents ({spec.expansion} x {width} = {latents})"
    return errors


def budget_problem(spec: SAESpec, held: Optional[int]) -> Optional[str]:
    """Why the training corpus cannot fill `spec.tokens` (None when it can, or when not yet counted)."""
    if held is None or spec.tokens <= held:
        return None
    return f"the {spec.data} training split holds {held:,} tokens for {spec.model}; ask for at most that many"


def _facts(spec: SAESpec) -> tuple[int, int, bool, Callable[[], Optional[int]]]:
    """(blocks, hidden width, has a tokenizer, a function giving the training tokens the corpus
    holds or None), the count asked for only when nothing else is wrong."""
    key = (spec.model, spec.data, "train", spec.context, spec.seed)
    entry = model_entry(spec.model)
    if entry is not None:
        return entry.blocks, entry.hidden, entry.tokenizer, lambda: cached_token_count(*key)
    from sparsity_core.zoo import blocks, load_skeleton  # hf: only; the skeleton needs torch

    try:
        handle = load_skeleton(spec.model)
    except SpecError:  # already one line naming the model field
        raise
    except Exception as exc:  # a checkpoint that does not load is a message beside the model field
        raise SpecError({"model": f"could not read {spec.model}: {exc}"}) from None
    n_blocks, tok = len(blocks(handle)), handle.tokenizer
    hidden = getattr(handle.model.config, "hidden_size", None) or 0
    return n_blocks, hidden, tok is not None, lambda: token_count(tok, *key)
