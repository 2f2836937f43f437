"""The SAE job: capture activations, train the variant, measure it, compute feature statistics,
export. Plus the preflight that refuses bad input before anything is queued.

Artifacts: `sae` (weights, safetensors), `saelens` (cfg.json + sae_weights.safetensors folder),
`features` and `contexts` (parquet, read by the feature browser). Metrics: training curves with
x = tokens seen (`train_l0`, `train_fve`, `train_mse`, `coeff`, `dead_fraction`), the final
held-out numbers without x (`l0`, `fve`, `nmse`, `dead_fraction`, `tokens_per_s`, downstream
keys), and the log-density histogram (`log_density`, x = bin centre).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sparsity_core.progress import Progress, Stage
from sparsity_core.sae import VARIANTS
from sparsity_core.sae.activations import ActivationKey, corpus_texts, corpus_token_count, load_activations
from sparsity_core.sae.export import export_saelens, hook_name, save_sae
from sparsity_core.sae.features import feature_tables
from sparsity_core.sae.metrics import downstream, log_density_histogram, reconstruction_metrics
from sparsity_core.sae.trainer import TrainConfig, train_sae
from sparsity_core.specs import SAESpec, SpecError
from sparsity_core.zoo import ModelHandle, blocks, load_model

EVAL_TOKENS = 32_768  # held-out tokens (test split) for the final metrics and the feature browser


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError({"device": f"{name} was asked for but this machine has no CUDA GPU"})
    return device


def load_source(spec: SAESpec, device) -> ModelHandle:
    """The dense model, or the pruned model of the parent run."""
    if spec.parent_run is None:
        return load_model(spec.model, device=device)
    from sparsity_core.pruning.artifacts import load_pruned

    return load_pruned(spec.parent_run, spec.parent_sparsity, device=device)


def activation_key(spec: SAESpec, handle: ModelHandle, split: str) -> ActivationKey:
    parent = f"run-{spec.parent_run}@{handle.meta.get('target_sparsity')}" if spec.parent_run else ""
    return ActivationKey(spec.model, spec.layer, spec.site, spec.data, split, spec.context, parent, spec.seed)


def preflight_sae(spec: SAESpec) -> None:
    """Layer in range, k within the latents, a token budget the corpus can fill, a usable parent."""
    errors: dict[str, str] = {}
    if spec.parent_run is not None:
        _check_parent(spec, errors)
    try:
        handle = load_model(spec.model)
    except Exception as exc:  # a model that does not load is a message beside the model field
        raise SpecError({"model": f"could not load {spec.model}: {exc}"}) from None
    n_blocks = len(blocks(handle))
    if n_blocks == 0:
        errors["model"] = f"{spec.model} has no transformer blocks: the SAE lab reads text models"
    elif spec.layer >= n_blocks:
        errors["layer"] = f"layer {spec.layer} is out of range: {spec.model} has blocks 0..{n_blocks - 1}"
    if handle.tokenizer is None:
        errors["model"] = f"{spec.model} has no tokenizer, so no text can be fed to it"
    width = getattr(handle.model.config, "hidden_size", None) or 0
    latents = spec.expansion * width
    if width and spec.k > latents:
        errors["k"] = f"k={spec.k} is larger than the number of latents ({spec.expansion} x {width} = {latents})"
    if spec.batch_tokens > spec.tokens:
        errors["batch_tokens"] = f"a batch of {spec.batch_tokens:,} tokens is more than the budget ({spec.tokens:,})"
    if not errors and handle.tokenizer is not None:
        held = corpus_token_count(handle, spec.model, spec.data, "train", spec.context, spec.seed)
        if spec.tokens > held:
            errors["tokens"] = (f"the {spec.data} training split holds {held:,} tokens for {spec.model}; "
                                f"ask for at most that many")
    if errors:
        raise SpecError(errors)


def _check_parent(spec: SAESpec, errors: dict[str, str]) -> None:
    from db import repo
    from sparsity_core.pruning.artifacts import stored_targets, target_tag

    parent = repo.get_run(spec.parent_run)
    if parent is None or parent.kind != "prune":
        errors["parent_run"] = f"run {spec.parent_run} is not a pruning run"
    elif parent.status != "succeeded":
        errors["parent_run"] = f"pruning run {spec.parent_run} has not succeeded (status {parent.status})"
    elif parent.model != spec.model:
        errors["parent_run"] = f"pruning run {spec.parent_run} pruned {parent.model}, not {spec.model}"
    elif spec.parent_sparsity is not None and target_tag(spec.parent_sparsity) not in map(target_tag, stored_targets(spec.parent_run)):
        errors["parent_sparsity"] = (f"run {spec.parent_run} has sparsities "
                                     f"{', '.join(map(target_tag, stored_targets(spec.parent_run)))}")


def run_sae(spec: SAESpec, progress: Progress) -> None:
    torch.manual_seed(spec.seed)
    device = pick_device(spec.device)
    # Step 1: the model (dense or the pruned parent) and its activations, captured once and cached
    progress.update(0.0, f"loading {spec.model}")
    handle = load_source(spec, device)
    train = load_activations(handle, activation_key(spec, handle, "train"), spec.tokens, Stage(progress, 0.0, 0.25))
    evals = load_activations(handle, activation_key(spec, handle, "test"), EVAL_TOKENS, Stage(progress, 0.25, 0.3))
    d_in = train.acts.shape[1]
    progress.info(activations={"model": spec.model, "layer": spec.layer, "site": spec.site, "data": spec.data,
                               "context": spec.context, "train_tokens": len(train), "eval_tokens": len(evals),
                               "eval_split": "test", "parent": activation_key(spec, handle, "train").parent or None},
                  device=str(device), d_in=d_in, d_sae=spec.expansion * d_in)
    # Step 2: train, logging a handful of points
    sae = VARIANTS[spec.variant](d_in, spec.expansion * d_in, spec.k, spec.l1_coeff, spec.seed)
    cfg = TrainConfig(spec.tokens, spec.batch_tokens, spec.lr, spec.seed, spec.dead_window,
                      log_every=max(1, (spec.tokens // spec.batch_tokens) // 40))  # ~40 points a curve

    def log(seen, stats):
        for key in ("l0", "fve", "mse"):
            progress.metric(f"train_{key}", stats[key], x=seen)
        progress.metric("coeff", stats["coeff"], x=seen)
        progress.metric("dead_fraction", stats["dead_fraction"], x=seen)

    result = train_sae(sae, train.acts, cfg, device, log=log, progress=Stage(progress, 0.3, 0.8))
    # Step 3: held-out measurements, the density histogram and the downstream cost
    progress.update(0.8, "measuring on held-out tokens")
    final, counts = reconstruction_metrics(sae, evals.acts, result.scale)
    final.update(dead_fraction=result.dead_fraction(cfg.window), tokens_per_s=result.tokens_per_s,
                 eval_dead_fraction=float((counts == 0).float().mean()))
    centres, share = log_density_histogram(counts, len(evals))
    for c, v in zip(centres, share):
        progress.metric("log_density", float(v), x=float(c))
    if spec.downstream:
        progress.update(0.85, "splicing the SAE into the model")
        final.update(downstream(handle, sae, result.scale, spec.layer, spec.site,
                                corpus_texts(spec.data, "test", spec.seed), spec.context, spec.seed))
    for key, value in final.items():
        progress.metric(key, value)
    # Step 4: feature statistics for the browser, weights and the SAELens export
    progress.update(0.92, "feature statistics")
    unembed = _unembedding(handle)
    features, contexts = feature_tables(sae, evals, result.scale, handle.tokenizer, unembed)
    out = Path(progress.artifact_dir)
    features.to_parquet(out / "features.parquet")
    contexts.to_parquet(out / "contexts.parquet")
    progress.artifact("features", out / "features.parquet", "parquet")
    progress.artifact("contexts", out / "contexts.parquet", "parquet")
    save_sae(sae, out / "sae.safetensors", result.scale)
    progress.artifact("sae", out / "sae.safetensors", "safetensors")
    export_saelens(sae, out / "saelens", result.scale, model=spec.model, layer=spec.layer,
                   hook_name=hook_name(handle.family, spec.layer, spec.site), context=spec.context, dataset=spec.data)
    progress.artifact("saelens", out / "saelens", "dir")
    progress.info(training={"steps": result.steps, "tokens": result.tokens, "seconds": round(result.seconds, 2),
                            "tokens_per_s": round(result.tokens_per_s), "scale": result.scale,
                            "dead_window": cfg.window, "threads": torch.get_num_threads()},
                  summary={k: round(v, 5) for k, v in final.items()})
    (out / "summary.json").write_text(json.dumps(final))
    progress.update(1.0, f"done: L0 {final['l0']:.1f}, FVE {final['fve']:.3f}")


def _unembedding(handle: ModelHandle):
    """(vocab, d) unembedding with the final norm's gain folded in, for LMs; None otherwise."""
    if handle.task != "causal_lm":
        return None
    W = handle.model.get_output_embeddings().weight.detach()
    norm = getattr(getattr(handle.model, "model", None), "norm", None)
    gain = getattr(norm, "weight", None)
    return W * gain.detach() if gain is not None else W
