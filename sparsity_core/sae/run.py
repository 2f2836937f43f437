"""The SAE job: capture activations, train the variant, measure it, compute feature statistics,
export. Its pre-run check is `sae.checks.preflight_sae` (no torch, the app runs it).

Artifacts: `sae` (weights, safetensors), `saelens` (cfg.json + sae_weights.safetensors folder),
`features` and `contexts` (parquet, read by the feature browser). Metrics: training curves with
x = tokens seen (`train_l0`, `train_fve`, `train_mse`, `coeff`, `dead_fraction`), the final
held-out numbers without x (`l0`, `fve`, `nmse`, `dead_fraction`, `eval_dead_fraction`,
`dense_fraction`, `tokens_per_s`, downstream keys), and the log-density histogram (`log_density`,
x = bin centre). The SAEBench-style suite (Karvonen et al. 2025): with `k_sweep`, one SAE per k on
the same activations (`sweep_<key>`, x = measured L0, series `k=<k>`; the browsed SAE is the one at
`k`); with `probing`, k-sparse probes (`sparse_probe_accuracy`, x = k, series `<task>|<source>`);
with `absorption`, first-letter feature absorption (`absorption_rate`, `absorption_fraction`,
`absorption_split`, `absorption_latent_f1`; per letter `absorption_by_letter`, x = letter index
0..25, series `full absorption` / `absorption fraction`). The latents the probes and the
absorption task name get a `labels` column in `features` ("sport (bbc_news)", "first letter L").
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import torch

from sparsity_core.catalog.sae import HIDDEN_LAYERS, LETTERS, SWEEP_KEYS
from sparsity_core.jobs.context import ParentRun, RunContext, Stage, check_parent, target_tag
from sparsity_core.pruning.artifacts import load_pruned
from sparsity_core.sae.absorption import absorption, absorption_labels
from sparsity_core.sae.activations import ActivationKey, cached_tokens, image_activations, load_activations
from sparsity_core.sae.checks import budget_problem, k_problems, preflight_sae
from sparsity_core.sae.corpus import token_count
from sparsity_core.sae.export import export_saelens, hook_name, save_sae
from sparsity_core.sae.features import feature_tables
from sparsity_core.sae.metrics import dense_and_dead, downstream, log_density_histogram, reconstruction_metrics
from sparsity_core.sae.probing import probe_images, probe_labels, sparse_probing
from sparsity_core.sae.trainer import TrainConfig, train_sae
from sparsity_core.sae.variants import build_sae
from sparsity_core.specs import SAESpec, SpecError
from sparsity_core.zoo import ModelHandle, load_model
from sparsity_core.zoo.devices import resolve_device

EVAL_TOKENS = 32_768  # held-out tokens (test split) for the final metrics and the feature browser


def activation_key(spec: SAESpec, split: str, parent: Optional[ParentRun], sparsity: Optional[float]) -> ActivationKey:
    tag = f"run-{parent.id}@{target_tag(sparsity)}" if parent else ""
    return ActivationKey(spec.model, spec.layer, spec.site, spec.data, split, spec.context, tag, spec.seed)


def run_sae(spec: SAESpec, ctx: RunContext) -> None:
    torch.manual_seed(spec.seed)
    # Step 1: the submit-time checks again (a spec may come from elsewhere than the app; they cost
    # milliseconds), the parent's target, the device, the model (dense or pruned)
    parent = ctx.parent(spec.parent_run) if spec.parent_run is not None else None
    preflight_sae(spec, parent)
    sparsity = check_parent(parent, spec, sparsity=spec.parent_sparsity) if parent else None
    device = resolve_device(spec.device)
    pruned = f" pruned by run {parent.id} at sparsity {target_tag(sparsity)}" if parent else ""
    ctx.update(0.0, f"loading {spec.model}{pruned}")
    handle = load_pruned(parent, sparsity, device=device) if parent else load_model(spec.model, device=device)
    # Step 2: the activations. Text: a budget the corpus can fill (counted once per corpus and
    # tokenizer), captured once and cached. An MLP classifier's hidden layer: every image of the
    # train and test splits (the trainer makes several passes when the budget is larger)
    eval_key, parent_tag, capture, massive = None, activation_key(spec, "train", parent, sparsity).parent or None, None, None
    if spec.site == "hidden":
        ctx.update(0.0, f"reading hidden layer {spec.layer} of {spec.model} on the digits train and test images")
        train, evals = (image_activations(handle, spec.layer, split) for split in ("train", "test"))
    else:
        ctx.update(0.0, f"counting the tokens of the {spec.data} training split")
        problem = budget_problem(spec, token_count(handle.tokenizer, spec.model, spec.data, "train", spec.context,
                                                   spec.seed))
        if problem:
            raise SpecError({"tokens": problem})
        train_key, eval_key = (activation_key(spec, split, parent, sparsity) for split in ("train", "test"))
        before, start = cached_tokens(train_key) + cached_tokens(eval_key), time.perf_counter()
        train = load_activations(handle, train_key, spec.tokens, Stage(ctx, 0.0, 0.25))
        evals = load_activations(handle, eval_key, EVAL_TOKENS, Stage(ctx, 0.25, 0.3))
        # what this run captured, and how long it took: the estimate of a later run's first capture
        capture = {"tokens": cached_tokens(train_key) + cached_tokens(eval_key) - before,
                   "seconds": round(time.perf_counter() - start, 2)}
        # a causal LM's massive activations the cached captures left out (activations.massive_rows)
        massive = sum(cached_tokens(k, "massive_left_out") for k in (train_key, eval_key))
    d_in = train.acts.shape[1]
    ctx.info(activations={"model": spec.model, "layer": spec.layer, "site": spec.site, "data": spec.data,
                          "context": spec.context, "train_tokens": len(train), "eval_tokens": len(evals),
                          "eval_split": "test", "parent": parent_tag,
                          "rows": "images" if evals.images is not None else "tokens", "capture": capture,
                          "massive_left_out": massive},
             device=str(device), d_in=d_in, d_sae=spec.expansion * d_in)
    # Step 3: train, logging a handful of points
    sae = build_sae(spec, d_in)  # the variant with its options (a Matryoshka SAE's prefixes)
    cfg = TrainConfig(spec.tokens, spec.batch_tokens, spec.lr, spec.seed, spec.dead_window,
                      log_every=max(1, (spec.tokens // spec.batch_tokens) // 40))  # ~40 points a curve

    def log(seen, stats):
        for key in ("l0", "fve", "mse"):
            ctx.metric(f"train_{key}", stats[key], x=seen)
        ctx.metric("coeff", stats["coeff"], x=seen)
        ctx.metric("dead_fraction", stats["dead_fraction"], x=seen)

    sweep = sorted({spec.k, *spec.k_sweep})  # [k] without a sweep: the path is the single SAE's
    if problems := k_problems(spec, d_in):  # the width is known now, also for an hf: model whose config hides it
        raise SpecError(problems)
    trained = 0.3 + 0.5 / len(sweep)  # the run's own SAE takes its share of the training stage
    result = train_sae(sae, train.acts, cfg, device, log=log, progress=Stage(ctx, 0.3, trained))
    # Step 4: held-out measurements (dense and dead latents included), the density histogram and
    # the downstream cost
    ctx.update(trained, f"measuring the SAE on {len(evals):,} held-out tokens")
    final, counts = held_out(sae, result, cfg, evals)
    centres, share = log_density_histogram(counts, len(evals))
    for c, v in zip(centres, share):
        ctx.metric("log_density", float(v), x=float(c))
    baselines: dict = {}  # the clean and zeroed passes, shared with the sweep's SAEs
    if spec.downstream:
        ctx.update(trained, "splicing the SAE into the model: a fixed held-out set, clean, with the SAE, zeroed")
        start = time.perf_counter()
        values, evaluated = downstream(handle, sae, result.scale, spec.layer, spec.site, spec.data, spec.context,
                                       spec.seed, cache=eval_key.folder() if eval_key else None, baselines=baselines)
        final.update(values)
        ctx.info(downstream={**evaluated, "seconds": round(time.perf_counter() - start, 2)})
    absorbed = None
    if spec.absorption:
        ctx.update(trained, "feature absorption: a first-letter probe on the vocabulary's words, each letter's "
                            "main latents, the latents that take their place")
        start = time.perf_counter()
        absorbed, summary, described = absorption(handle, sae, result.scale, spec.layer, spec.site, spec.seed,
                                                  cache=eval_key.folder(), baselines=baselines)
        final.update(summary)
        for row in absorbed:
            x = float(LETTERS.index(row["letter"]))
            ctx.metric("absorption_by_letter", row["full"], x=x, series="full absorption")
            ctx.metric("absorption_by_letter", row["fraction"], x=x, series="absorption fraction")
        ctx.info(absorption={**described, "letters": absorbed, "seconds": round(time.perf_counter() - start, 2)})
    for key, value in final.items():
        ctx.metric(key, value)
    # Step 4b: the SAEBench-style suite: an L0 sweep (one more SAE per k, same activations) and
    # sparse probing of the run's own SAE
    if len(sweep) > 1:
        run_sweep(spec, ctx, handle, train, evals, eval_key, device, sweep, final, Stage(ctx, trained, 0.85),
                  baselines)
    labels: dict[int, list[str]] = absorption_labels(absorbed) if absorbed else {}
    if spec.probing:
        ctx.update(0.86, "sparse probing: k-sparse probes on the labelled corpora, latents against raw activations")
        start = time.perf_counter()
        if spec.site == "hidden":
            rows, probed = probe_images(sae, result.scale, train, evals, seed=spec.seed)
        else:
            rows, probed = sparse_probing(handle, sae, result.scale, spec.layer, spec.site, spec.context, spec.seed,
                                          cache=eval_key.folder())
        for row in rows:
            ctx.metric("sparse_probe_accuracy", row["accuracy"], x=row["k"], series=f"{row['task']}|{row['source']}")
        ctx.info(probing={**probed, "seconds": round(time.perf_counter() - start, 2)})
        for latent, names in probe_labels(probed).items():
            labels.setdefault(latent, []).extend(names)
    # Step 5: feature statistics for the browser, weights and the SAELens export
    ctx.update(0.92, "feature statistics for the browser: densities, top contexts")
    unembed = _unembedding(handle, spec)
    features, contexts = feature_tables(sae, evals, result.scale, handle.tokenizer, unembed)
    features["labels"] = [", ".join(labels.get(int(j), [])) for j in features["latent"]]
    out = Path(ctx.artifact_dir)
    features.to_parquet(out / "features.parquet")
    contexts.to_parquet(out / "contexts.parquet")
    ctx.artifact("features", out / "features.parquet", "parquet")
    ctx.artifact("contexts", out / "contexts.parquet", "parquet")
    save_sae(sae, out / "sae.safetensors", result.scale)
    ctx.artifact("sae", out / "sae.safetensors", "safetensors")
    export_saelens(sae, out / "saelens", result.scale, model=spec.model, layer=spec.layer,
                   hook_name=hook_name(handle.family, spec.layer, spec.site), context=spec.context, dataset=spec.data)
    ctx.artifact("saelens", out / "saelens", "dir")
    ctx.info(training={"steps": result.steps, "tokens": result.tokens, "seconds": round(result.seconds, 2),
                       "tokens_per_s": round(result.tokens_per_s), "scale": result.scale,
                       "dead_window": cfg.window, "threads": torch.get_num_threads()},
             summary={k: round(v, 5) for k, v in final.items()})
    (out / "summary.json").write_text(json.dumps(final))
    ctx.update(1.0, f"done: L0 {final['l0']:.1f}, FVE {final['fve']:.3f}")


def held_out(sae, result, cfg: TrainConfig, evals) -> tuple[dict[str, float], torch.Tensor]:
    """({l0, fve, nmse, dead_fraction, tokens_per_s, dense_fraction, eval_dead_fraction}, the
    per-latent firing counts) of a trained SAE on the held-out rows."""
    final, counts = reconstruction_metrics(sae, evals.acts, result.scale)
    final.update(dead_fraction=result.dead_fraction(cfg.window), tokens_per_s=result.tokens_per_s)
    final.update(dense_and_dead(counts, len(evals)))
    return final, counts


def run_sweep(spec: SAESpec, ctx: RunContext, handle, train, evals, eval_key, device, sweep: list[int],
              own: dict[str, float], progress: Stage, baselines: Optional[dict] = None) -> None:
    """The L0 sweep (SAEBench sweeps L0 because most metrics move with it): one SAE per k of `sweep`
    on the same activations, each measured as the run's own SAE (`own`, at spec.k) is. Metrics
    `sweep_<key>` with x = the L0 measured on held-out tokens and series `k=<k>`."""
    rows = {spec.k: own}
    others = [k for k in sweep if k != spec.k]
    for i, k in enumerate(others):
        # Step 1: the same variant, options and schedule at this k, trained on the same tokens
        part = Stage(ctx, progress.start + (progress.stop - progress.start) * i / len(others),
                     progress.start + (progress.stop - progress.start) * (i + 1) / len(others))
        part(0.0, f"L0 sweep: training the SAE at k={k} ({i + 1} of {len(others)})")
        torch.manual_seed(spec.seed)
        sae = build_sae(spec.model_copy(update={"k": k}), train.acts.shape[1])
        cfg = TrainConfig(spec.tokens, spec.batch_tokens, spec.lr, spec.seed, spec.dead_window,
                          log_every=max(1, (spec.tokens // spec.batch_tokens) // 10))  # progress only
        result = train_sae(sae, train.acts, cfg, device, progress=part)
        # Step 2: held-out numbers and the downstream cost, as for the run's own SAE
        rows[k], _ = held_out(sae, result, cfg, evals)
        if spec.downstream:
            values, _ = downstream(handle, sae, result.scale, spec.layer, spec.site, spec.data, spec.context,
                                   spec.seed, cache=eval_key.folder() if eval_key else None, baselines=baselines)
            rows[k].update(values)
        if spec.absorption:
            rows[k].update(absorption(handle, sae, result.scale, spec.layer, spec.site, spec.seed,
                                      cache=eval_key.folder(), baselines=baselines)[1])
    for k in sweep:
        for key in SWEEP_KEYS:
            if key in rows[k]:
                ctx.metric(f"sweep_{key}", rows[k][key], x=rows[k]["l0"], series=f"k={k}")
    ctx.info(sweep={"k": sweep, "own_k": spec.k, "l0": {str(k): round(rows[k]["l0"], 3) for k in sweep}})


def _unembedding(handle: ModelHandle, spec: SAESpec):
    """(vocab, d) unembedding with the final norm's gain folded in, for LMs; for an MLP
    classifier's last hidden layer its head (classes, d); None otherwise."""
    if spec.site == "hidden":
        head = getattr(handle.model, "head", None)
        last = spec.layer == len(HIDDEN_LAYERS.get(spec.model, ())) - 1
        return head.weight.detach() if last and head is not None else None
    if handle.task != "causal_lm":
        return None
    W = handle.model.get_output_embeddings().weight.detach()
    norm = getattr(getattr(handle.model, "model", None), "norm", None)
    gain = getattr(norm, "weight", None)
    return W * gain.detach() if gain is not None else W
