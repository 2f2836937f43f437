"""SAE quality benchmark: every variant at matched L0 on minilm-l6 block 3 residual, 8x expansion.

    nice -n 10 python benchmarks/sae_quality.py                      # full size: 1M tokens, L0 16, 32 and 64
    nice -n 10 python benchmarks/sae_quality.py --tokens 131072 --l0 32 --no-downstream
    nice -n 10 python benchmarks/sae_quality.py --tokens 200000 --variants topk jumprelu --figure pareto.html
    nice -n 10 python benchmarks/sae_quality.py --model smollm2-135m --layer 15 --tokens 200000 --l0 32 \
        --variants topk jumprelu matryoshka_batchtopk --no-probing      # CE recovered and absorption

Each row is one real SAE job (`run_sae`), so activations are captured once and shared by all rows
(the job's cache), and every number is what the lab itself reports: FVE / L0 on held-out tokens,
dead fraction over the last window of training tokens, dense latents (> 10% of held-out tokens),
downstream probe accuracy and embedding cosine with the SAE spliced in, training throughput
measured in the same process, and SAEBench's sparse probing (Karvonen et al. 2025): the k = 1 and
k = 5 probe accuracy per labelled task on the latents (`sae`) and on the raw activations (`raw`).
Targets (exit code 1 when one is missed): TopK FVE >= 0.85 with < 5% dead latents at L0 = 32;
feature choice has no dead latents; TopK trains at >= 10k tokens/s; and, per row with probing, the
latents' k = 5 probe beats the raw activations' on at least two of the three tasks (what sparse
probing is meant to show; reported either way). `--figure` writes the Pareto plot (FVE and
downstream against L0, one line per variant) as HTML. The FVE and speed targets are for minilm-l6
block 3, where they were set. A causal LM (`--model smollm2-135m`) gets CE recovered as its
downstream cost and SAEBench's first-letter feature absorption (`sae/absorption.py`): the full
absorption rate, the absorption fraction, main latents per letter and their F1, reported (no target:
SAEBench itself reads absorption as lower-is-better, not as pass or fail).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--l0", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--variants", nargs="+", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-downstream", action="store_true")
    ap.add_argument("--no-probing", action="store_true", help="skip sparse probing (~30 s per row warm)")
    ap.add_argument("--figure", default=None, help="write the Pareto figure (HTML) here")
    args = ap.parse_args()
    os.environ.setdefault("SPARSITY_HOME", tempfile.mkdtemp(prefix="sae-bench-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import pandas as pd
    import torch

    from sparsity_core.catalog.models import model_entry
    from sparsity_core.catalog.sae import VARIANTS
    from sparsity_core.jobs.context import RunContext
    from sparsity_core.sae.run import run_sae
    from sparsity_core.specs import parse_spec

    causal = model_entry(args.model).task == "causal_lm"
    corpora = _corpus_test_sets(args.model, args.layer)
    rows, frames = [], []
    for l0 in args.l0:
        for variant in args.variants or list(VARIANTS):
            spec = parse_spec({"kind": "sae", "model": args.model, "layer": args.layer, "site": "resid",
                               "data": "all", "variant": variant, "expansion": 8, "k": l0, "tokens": args.tokens,
                               "device": args.device, "downstream": not args.no_downstream,
                               "probing": not args.no_probing, "absorption": causal})
            ctx = RunContext()
            run_sae(spec, ctx)
            final = {m["key"]: m["value"] for m in ctx.metrics if m["x"] is None}
            final.update(_fve_per_corpus(ctx.artifact_dir / "sae.safetensors", corpora))
            final.update(_probe_columns(ctx))
            rows.append({"variant": variant, "target_l0": l0, **final})
            frames.append(pd.DataFrame(ctx.metrics).assign(run_id=len(rows), variant=variant))
            print(f"  {variant} L0={l0}: {_fmt(rows[-1])}", flush=True)
    print(f"\n{args.model} block {args.layer} resid, 8x, {args.tokens:,} training tokens of all three corpora "
          f"(seeded shuffle; held-out tokens from their test splits), "
          f"{torch.get_num_threads()} threads, device {args.device}")
    cols = ["variant", "target_l0", "l0", "fve", "nmse", "dead_fraction", "eval_dead_fraction", "dense_fraction",
            "tokens_per_s", "probe_accuracy", "probe_accuracy_clean", "embedding_cosine", "cosine_recovered",
            "ce_recovered", "absorption_rate", "absorption_fraction", "absorption_split", "absorption_latent_f1",
            *(f"fve_{name}" for name in corpora), *PROBE_COLUMNS]
    cols = [c for c in cols if any(c in r for r in rows)]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    if args.figure and frames:
        _write_figure(pd.concat(frames, ignore_index=True), args.figure)
    for r in rows:
        if "absorption_rate" in r:
            print(f"{r['variant']} L0={r['target_l0']}: full absorption {r['absorption_rate']:.1%}, absorption "
                  f"fraction {r['absorption_fraction']:.1%}, {r['absorption_split']:.2f} main latents per letter "
                  f"with F1 {r['absorption_latent_f1']:.2f}")
    return _check(rows, minilm_targets=args.model == "minilm-l6" and args.layer == 3)


def _check(rows, minilm_targets: bool = True) -> int:
    """Missed targets; the TopK FVE / dead / speed ones only where they were set (minilm-l6 block 3)."""
    missed = []
    for r in rows:
        if minilm_targets and r["variant"] == "topk" and r["target_l0"] == 32:
            if r["fve"] < 0.85:
                missed.append(f"topk L0=32 FVE {r['fve']:.3f} < 0.85")
            if r["dead_fraction"] >= 0.05:
                missed.append(f"topk L0=32 dead {r['dead_fraction']:.1%} >= 5%")
        if minilm_targets and r["variant"] == "topk" and r["tokens_per_s"] < 10_000:
            missed.append(f"topk L0={r['target_l0']} trains at {r['tokens_per_s']:,.0f} tokens/s < 10k")
        if r["variant"] == "feature_choice" and r["dead_fraction"] > 0:
            missed.append(f"feature_choice L0={r['target_l0']} has {r['dead_fraction']:.1%} dead latents")
        beats = [t for t in PROBE_TASKS if f"probe5_sae_{t}" in r and r[f"probe5_sae_{t}"] > r[f"probe5_raw_{t}"]]
        if any(f"probe5_sae_{t}" in r for t in PROBE_TASKS):
            print(f"{r['variant']} L0={r['target_l0']}: latents' k=5 probe beats raw on {len(beats)} of "
                  f"{len(PROBE_TASKS)} tasks ({', '.join(beats) or 'none'})")
            if len(beats) < 2:
                missed.append(f"{r['variant']} L0={r['target_l0']}: k=5 probe on the latents beats raw on "
                              f"{len(beats)} of 3 tasks (< 2)")
    for m in missed:
        print("MISSED:", m)
    print("all targets met" if not missed else f"{len(missed)} target(s) missed")
    return 1 if missed else 0


def _corpus_test_sets(model: str, layer: int) -> dict:
    """Held-out activations of each corpus on its own (16k test tokens each), so the mixed FVE
    can be read per corpus: the corpora differ by several points."""
    from sparsity_core.catalog.sae import CORPORA
    from sparsity_core.sae.activations import ActivationKey, load_activations
    from sparsity_core.zoo import load_model

    handle = load_model(model)
    return {name: load_activations(handle, ActivationKey(model, layer, data=name, split="test"), 16_384).acts
            for name in CORPORA}


def _fve_per_corpus(weights, corpora: dict) -> dict[str, float]:
    from sparsity_core.sae.export import load_sae
    from sparsity_core.sae.metrics import reconstruction_metrics

    sae, scale = load_sae(weights)
    return {f"fve_{name}": reconstruction_metrics(sae, acts, scale)[0]["fve"] for name, acts in corpora.items()}


PROBE_TASKS = ("bbc_news", "rotten_tomatoes", "tweets")  # sparsity_core.sae.probing.PROBE_TASKS
PROBE_COLUMNS = [f"probe{k}_{source}_{task}" for task in PROBE_TASKS for k in (1, 5) for source in ("sae", "raw")]


def _probe_columns(ctx) -> dict[str, float]:
    """probe<k>_<source>_<task> for k = 1, 5 and sources sae / raw, from the run's sparse probing."""
    out = {}
    for m in ctx.metrics:
        if m["key"] == "sparse_probe_accuracy" and m["x"] in (1.0, 5.0):
            task, source = m["series"].split("|")
            if source in ("sae", "raw"):
                out[f"probe{int(m['x'])}_{source}_{task}"] = m["value"]
    return out


def _write_figure(frame, path: str) -> None:
    """FVE and the downstream cost against L0, one line per variant, as one HTML file."""
    from sparsity_core.reports import sae as figs

    groups = dict(zip(frame["run_id"], frame["variant"]))
    frame = frame.assign(series=frame["series"].fillna(""))
    down = figs.downstream_key(frame)
    with open(path, "w") as out:
        for i, key in enumerate(["fve", *([down] if down else [])]):
            out.write(figs.pareto_figure(frame, key, groups=groups).to_html(full_html=i == 0,
                                                                             include_plotlyjs=i == 0))
    print(f"Pareto figure written to {path}")


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"
    return str(v)


def _fmt(row) -> str:
    return ", ".join(f"{k} {_cell(v)}" for k, v in row.items() if k not in ("variant", "target_l0"))


if __name__ == "__main__":
    sys.exit(main())
