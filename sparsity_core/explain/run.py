"""The explanation job (kind `explain`): representer points for one prediction, checked and compared.

For the dense model (and, with a pruning `parent_run`, the pruned one beside it):
1. features, head and outputs (cached per model + dataset + seed + parent);
2. the representer fit (cached per lambda too): metrics precompute_s, grad_norm_start/final;
3. the self-check: pearson_train / pearson_test of softmax(F F_t^T alpha) against the model;
4. the test point: top-k excitatory / inhibitory training examples, per-class decomposition,
   explain_ms; captum pixel / token attributions with their convergence delta.
Then, for the explained model (the pruned one when there is a parent): captum TracInCPFast and
SimilarityInfluence top-k with their overlap with the representer top-k, the global ranking by
|alpha|, and the flipped-label detection curves. Metric x is the sparsity (0 for dense).

Only the point's own work is done per run: its features, one product with the cached alpha,
its pixel / token attributions, its TracIn and similarity scores (closed forms over the cached
features and head checkpoints, see `captum_methods.py`). The flipped-label experiment does not
depend on the point and is read from the setup's cache after the first run (`debugging.py`).
`info["cache"]` says what came from the cache: features@v, checkpoints@v, representer@v per
variant v, and mislabel.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch

from sparsity_core.explain import captum_methods as cm
from sparsity_core.explain.cache import fit_path, load_fit, save_fit
from sparsity_core.explain.checks import preflight_explain
from sparsity_core.explain.debugging import GRID, cached_mislabel_curves
from sparsity_core.explain.prepare import Prepared, prepare
from sparsity_core.explain.representer import RepresenterFit, fit_representer, pearson, representer_values, stack_head
from sparsity_core.jobs.context import RunContext, Stage, check_parent
from sparsity_core.specs import ExplainSpec
from sparsity_core.zoo.devices import resolve_device

TEXT_PREVIEW = 400  # characters of a training text kept in the explanation (BBC articles are long)
RANKING_ROWS = 500  # training points kept in the global |alpha| ranking artifact
EXPLAIN_REPEATS = 5  # explain_ms is a median: the first call pays one-off allocation costs
# The fits, the flip experiment's head training and the per-point products are (n x d) x (d x c)
# products with c of 2..10: memory-bound, where a thread team only adds barriers. On this shared
# 2-core host (load ~3.4) one thread made a cold digits run 7.8 s instead of 38 s.
SMALL_OPS_THREADS = 1


def run_explain(spec: ExplainSpec, ctx: RunContext) -> None:
    torch.manual_seed(spec.seed)
    # the submit-time checks again before anything loads (a spec may come from elsewhere than the
    # app; they cost milliseconds), then the parent's target; the model runs on the GPU when there is one
    parent = ctx.parent(spec.parent_run) if spec.parent_run is not None else None
    preflight_explain(spec, parent)
    sparsity = check_parent(parent, spec, sparsity=spec.parent_sparsity) if parent else None
    device = resolve_device("auto")
    ctx.info(device=str(device))
    variants = [("dense", None, 0.0)] + ([("pruned", parent, sparsity)] if parent else [])
    cache: dict[str, bool] = {}
    for i, (label, source, x) in enumerate(variants):
        stage = Stage(ctx, 0.6 * i / len(variants), 0.6 * (i + 1) / len(variants))
        prep = prepare(spec.model, spec.dataset, spec.seed, spec.train_limit, parent=source,
                       sparsity=x if source else None, device=device, report=stage)
        cache.update({f"{part}@{label}": hit for part, hit in prep.cached.items()})
        fit, cache[f"representer@{label}"] = precompute(prep, spec.lam, ctx, label, x)
        self_check(prep, fit, ctx, label, x)
        feat = point_feature(spec, prep, ctx, x)
        explanation = explain_point(spec, prep, fit, feat, ctx, x)
        if spec.captum:
            explanation["attribution"] = cm.attribute(prep.clf, explanation["input"]["item"],
                                                      explanation["prediction"]["class"], spec.ig_steps)
            ctx.metric("attribution_delta", abs(explanation["attribution"]["delta"]), x=x)
        explanation["variant"] = {"label": label, "sparsity": x, "parent_run": source.id if source else None}
        _json_artifact(ctx, f"explanation@{label}", explanation)
    ctx.info(evaluation={"dataset": spec.dataset, "split": "train (decomposed) / test (explained)",
                         "seed": spec.seed, "train_rows": len(prep.train), "test_rows": len(prep.test),
                         "lambda": spec.lam, "modality": prep.clf.modality,
                         "head": "the model's own last Linear" if prep.clf.handle.task != "encoder"
                         else "softmax layer trained on the frozen dense encoder's pooled embeddings"},
             parent_sparsity=sparsity)
    if spec.captum:
        ctx.update(0.65, "captum influence: TracInCPFast and SimilarityInfluence")
        influence(spec, prep, explanation, feat, ctx, x)
    ctx.update(0.8, "global view: ranking by |alpha| and flipped-label detection")
    ranking(prep, fit, ctx)
    if spec.flip_fraction > 0:
        cache["mislabel"] = mislabel(spec, prep, ctx)
    ctx.info(cache=cache)
    ctx.update(1.0, "done")


# ---------------------------------------------------------------- steps
def precompute(prep: Prepared, lam: float, ctx: RunContext, label: str, x: float) -> tuple[RepresenterFit, bool]:
    """The representer fit for this setup and lambda, from the cache or computed once (and which)."""
    path = fit_path(prep.folder, lam)
    cached = path.exists()
    if cached:
        fit = load_fit(path)
    else:
        ctx.update(ctx.fraction, f"representer fit ({label}): {len(prep.train)} points, lambda {lam:g}")
        w0 = stack_head(prep.clf.head.weight.detach().cpu(), prep.clf.head.bias.detach().cpu())
        with torch_threads(SMALL_OPS_THREADS):
            fit = fit_representer(prep.train_features, torch.softmax(prep.train_logits.double(), -1), w0, lam)
        save_fit(fit, path)
    for key, value in (("precompute_s", fit.seconds), ("grad_norm_start", fit.grad_norm_start),
                       ("grad_norm_final", fit.grad_norm_final), ("fit_iterations", fit.iterations)):
        ctx.metric(key, value, x=x)
    _link_artifact(ctx, f"representer@{label}", path)
    return fit, cached


def self_check(prep: Prepared, fit: RepresenterFit, ctx: RunContext, label: str, x: float) -> None:
    """How well softmax(F F_t^T alpha) rebuilds the model's outputs, on training and test points."""
    frames = []
    for split, feats, logits in (("train", prep.train_features, prep.train_logits),
                                 ("test", prep.test_features, prep.test_logits)):
        model_p, rep_p = torch.softmax(logits.double(), -1), torch.softmax(fit.logits(feats), -1)
        ctx.metric(f"pearson_{split}", pearson(rep_p, model_p), x=x)
        n, c = model_p.shape
        frames.append(pd.DataFrame({"split": split, "index": np.repeat(np.arange(n), c),
                                    "class": np.tile(np.asarray(prep.train.classes), n),
                                    "model_prob": model_p.flatten().numpy(),
                                    "representer_prob": rep_p.flatten().numpy()}))
    path = ctx.artifact_dir / f"reconstruction-{label}.parquet"
    pd.concat(frames, ignore_index=True).to_parquet(path, index=False)
    ctx.artifact(f"reconstruction@{label}", path, "parquet")


def test_input(spec: ExplainSpec, prep: Prepared) -> dict[str, Any]:
    """The point to explain: a drawn digit, a typed sentence, or row `test_index` of the test split."""
    if spec.image is not None:
        return {"source": "drawn", "item": spec.image, "label": None}
    if spec.text is not None:
        return {"source": "typed", "item": spec.text, "label": None}
    item = prep.inputs("test")[spec.test_index]
    item = item.tolist() if isinstance(item, np.ndarray) else item
    return {"source": "test split", "index": spec.test_index, "item": item,
            "label": prep.test.classes[int(prep.test.labels[spec.test_index])]}


def point_feature(spec: ExplainSpec, prep: Prepared, ctx: RunContext, x: float) -> torch.Tensor:
    """The test point's features: stored for a test row; a new input goes through the model once."""
    if spec.image is None and spec.text is None:
        return prep.test_features[spec.test_index]
    start = time.perf_counter()
    feat = prep.clf.featurize([spec.image if spec.image is not None else spec.text])[0]
    ctx.metric("featurize_ms", 1000 * (time.perf_counter() - start), x=x)
    return feat


def explain_point(spec: ExplainSpec, prep: Prepared, fit: RepresenterFit, feat: torch.Tensor, ctx: RunContext,
                  x: float) -> dict:
    # Step 1: the point itself (its features come from `point_feature`)
    point = test_input(spec, prep)
    # Step 2: one product against the stored alpha and features: the explanation itself
    # (timed as the median of EXPLAIN_REPEATS calls, the steady state a page sees)
    times = []
    with torch_threads(SMALL_OPS_THREADS):
        for _ in range(EXPLAIN_REPEATS):
            start = time.perf_counter()
            values, pred, top_pos, top_neg = decompose(fit, feat, prep.clf.head, spec.top_k)
            times.append(time.perf_counter() - start)
    ctx.metric("explain_ms", 1000 * float(np.median(times)), x=x)
    col = values[:, pred]
    model_logits = prep.clf.head_logits(feat[None])[0].double()
    # Step 3: what the page shows
    labels = prep.train.labels
    per_label = np.bincount(labels, weights=col.numpy(), minlength=len(prep.train.classes))
    return {
        "input": point,
        "modality": prep.clf.modality,
        "classes": list(prep.train.classes),
        "prediction": {"class": pred, "name": prep.train.classes[pred],
                       "probs": torch.softmax(model_logits, -1).tolist(), "model_logits": model_logits.tolist(),
                       "representer_logits": values.sum(0).tolist()},
        "excitatory": [describe(prep, int(i), float(col[i])) for i in top_pos if col[i] > 0],
        "inhibitory": [describe(prep, int(i), float(col[i])) for i in top_neg if col[i] < 0],
        "per_label": {prep.train.classes[c]: float(v) for c, v in enumerate(per_label)},
        "totals": {"excitatory": float(col.clamp(min=0).sum()), "inhibitory": float(col.clamp(max=0).sum())},
    }


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decompose(fit: RepresenterFit, feat: torch.Tensor, head: torch.nn.Linear, k: int):
    """(values (n, c), predicted class, top-k excitatory indices, top-k inhibitory indices)."""
    values = representer_values(fit.alpha, fit.features, feat)
    with torch.no_grad():
        pred = int(head(feat[None].to(head.weight.device, head.weight.dtype)).argmax())
    col = values[:, pred]
    k = min(k, len(col))
    return values, pred, torch.topk(col, k).indices, torch.topk(-col, k).indices


def describe(prep: Prepared, index: int, value: Optional[float] = None) -> dict[str, Any]:
    """One training example as the page shows it: index, value, label and the picture or text."""
    item = prep.inputs("train")[index]
    out: dict[str, Any] = {"index": index, "label": prep.train.classes[int(prep.train.labels[index])]}
    if value is not None:
        out["value"] = value
    if prep.clf.modality == "image":
        out["image"] = np.asarray(item).tolist()
    else:
        out["text"] = item[:TEXT_PREVIEW]
    return out


def influence(spec: ExplainSpec, prep: Prepared, explanation: dict, feat: torch.Tensor, ctx: RunContext,
              x: float) -> None:
    """captum's influence methods on the same prediction (TracInCPFast's and SimilarityInfluence's scores,
    in closed form over the cached training side), and how much their top-k agrees."""
    pred, k = explanation["prediction"]["class"], spec.top_k
    with torch_threads(SMALL_OPS_THREADS):
        start = time.perf_counter()
        heads = cm.checkpoint_heads(prep.checkpoints)
        scores = cm.tracin_scores(prep.train_features, torch.from_numpy(prep.train.labels), heads, feat, pred)
        results = {"tracin": cm.top_k(scores, k)}
        ctx.metric("tracin_topk_s", time.perf_counter() - start, x=x)
        start = time.perf_counter()
        results["similarity"] = cm.cosine_top_k(prep.train_features, feat, k)
        ctx.metric("similarity_topk_s", time.perf_counter() - start, x=x)
    ours = {"proponents": [e["index"] for e in explanation["excitatory"]],
            "opponents": [e["index"] for e in explanation["inhibitory"]]}
    for method, sides in results.items():
        for side, found in sides.items():
            ctx.metric("topk_overlap", cm.overlap(found["index"], ours[side]), x=x, series=f"{method}_{side}")
            found["examples"] = [describe(prep, i, s) for i, s in zip(found["index"], found["score"])]
    _json_artifact(ctx, "influence", {"k": k, "target": pred, **results})


def ranking(prep: Prepared, fit: RepresenterFit, ctx: RunContext) -> None:
    """Training points ranked by |alpha| at their own label."""
    labels = torch.from_numpy(prep.train.labels)
    own = fit.alpha[torch.arange(len(labels)), labels].numpy()
    order = np.argsort(-np.abs(own), kind="stable")[:RANKING_ROWS]
    rows = [{**describe(prep, int(i)), "alpha": float(own[i]), "abs_alpha": float(abs(own[i])), "rank": r + 1}
            for r, i in enumerate(order)]
    path = ctx.artifact_dir / "alpha-ranking.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    ctx.artifact("alpha_ranking", path, "parquet")


def mislabel(spec: ExplainSpec, prep: Prepared, ctx: RunContext) -> bool:
    """The flipped-label experiment's curves (from the setup's cache when it ran before: says so)."""
    with torch_threads(SMALL_OPS_THREADS):
        curves, areas, cached = cached_mislabel_curves(prep.train_features, prep.train.labels,
                                                       len(prep.train.classes), spec.flip_fraction, spec.lam,
                                                       spec.seed, prep.folder)
    for method, curve in curves.items():
        for q, found in zip(GRID, curve):
            ctx.metric("mislabel_found", float(found), x=float(q), series=method)
        ctx.metric("mislabel_auc", areas[method], series=method)
    return cached


# ---------------------------------------------------------------- artifacts
def _json_artifact(ctx: RunContext, name: str, payload: dict) -> None:
    import json

    path = ctx.artifact_dir / f"{name.replace('@', '-')}.json"
    path.write_text(json.dumps(payload))
    ctx.artifact(name, path, "json")


def _link_artifact(ctx: RunContext, name: str, source: Path) -> None:
    """The cached fit as a run artifact: a hard link (no copy; deleting the run keeps the cache)."""
    target = ctx.artifact_dir / f"{name.replace('@', '-')}.safetensors"
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem
        shutil.copyfile(source, target)
    ctx.artifact(name, target, "safetensors")
