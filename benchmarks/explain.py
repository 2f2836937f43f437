"""Explanations benchmark: representer precompute and per-point latency vs captum TracInCPFast,
reconstruction quality, flipped-label detection areas, and whole digits runs, measured side by side.

    nice -n 10 .venv/bin/python benchmarks/explain.py                 # minilm-l6 on Rotten Tomatoes + digits-mlp
    nice -n 10 .venv/bin/python benchmarks/explain.py --setups digits

The first run embeds the training split once (cached under SPARSITY_HOME); the timed parts are
the representer fit (never cached here), explaining one point, TracInCPFast's top-10 (captum's
class, which recomputes the training side per query, and the closed form the run uses over the
cached training side), the flipped-label experiment (computed here; a run caches it), and for
digits `run_explain` end to end with the defaults (captum and the flip experiment on): the
first point (with whatever the cache holds: `first_cached` says) and the median of the next ones.
Exits 1 when a target is missed: explain < 50 ms per point, Pearson > 0.99 on training points,
a warm digits run < 2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from sparsity_core.explain import captum_methods as cm  # noqa: E402
from sparsity_core.explain.debugging import mislabel_curves  # noqa: E402
from sparsity_core.explain.prepare import prepare  # noqa: E402
from sparsity_core.explain.representer import LAMBDA, fit_representer, pearson, stack_head  # noqa: E402
from sparsity_core.explain.run import decompose, run_explain  # noqa: E402
from sparsity_core.jobs.context import RunContext  # noqa: E402
from sparsity_core.specs import parse_spec  # noqa: E402

SETUPS = {"rotten_tomatoes": ("minilm-l6", "rotten_tomatoes"), "digits": ("digits-mlp", "digits")}
EXPLAIN_MS_TARGET = 50.0
PEARSON_TARGET = 0.99
POINTS = 100  # test points whose explain latency is timed (median reported)
TRACIN_POINTS = 3  # TracInCPFast top-10 timings (each pass reads every training point per checkpoint)
K = 10
RUN_SETUPS = {"digits"}  # whole runs: the teaching model, where the issue sets the 2 s target
RUN_POINTS = 3  # warm runs after the first (median reported)
RUN_WARM_S_TARGET = 2.0


def bench(model: str, dataset: str, flip: float, seed: int) -> dict:
    prep = prepare(model, dataset, seed)
    head = prep.clf.head
    # 1: the representer fit from the trained head, timed fresh
    fit = fit_representer(prep.train_features, torch.softmax(prep.train_logits.double(), -1),
                          stack_head(head.weight.detach(), head.bias.detach()), LAMBDA)
    recon = {s: pearson(torch.softmax(fit.logits(f), -1), torch.softmax(lg.double(), -1))
             for s, f, lg in (("train", prep.train_features, prep.train_logits),
                              ("test", prep.test_features, prep.test_logits))}
    # 2: explaining one point = one product with the stored alpha and features, + top-k
    times = []
    for i in range(min(POINTS, len(prep.test_features))):
        start = time.perf_counter()
        _, pred, _, _ = decompose(fit, prep.test_features[i], head, K)
        times.append(1000 * (time.perf_counter() - start))
    explain_ms = statistics.median(times)
    # 3: captum TracInCPFast's top-10 proponents for the same points (construction included)
    labels = torch.from_numpy(prep.train.labels)
    tracin_ms = []
    for i in range(TRACIN_POINTS):
        pred = int(prep.test_logits[i].argmax())
        start = time.perf_counter()
        method = cm.tracin(prep.train_features, labels, prep.checkpoints, len(prep.train.classes))
        method.influence((prep.test_features[i].double()[None], torch.tensor([pred])), k=K, proponents=True)
        tracin_ms.append(1000 * (time.perf_counter() - start))
    tracin = statistics.median(tracin_ms)
    # 3b: the same top-10 in closed form, as a run computes it (checkpoints read, training side included)
    closed_ms = []
    for i in range(min(POINTS, len(prep.test_features))):
        pred = int(prep.test_logits[i].argmax())
        start = time.perf_counter()
        cm.top_k(cm.tracin_scores(prep.train_features, labels, cm.checkpoint_heads(prep.checkpoints),
                                  prep.test_features[i], pred), K)
        closed_ms.append(1000 * (time.perf_counter() - start))
    # 4: the paper's data-debugging experiment on the same training set (what a run caches)
    folder = prep.folder / "bench-debug"
    start = time.perf_counter()
    _, areas = mislabel_curves(prep.train_features, prep.train.labels, len(prep.train.classes), flip, LAMBDA,
                               seed, folder)
    mislabel_s = time.perf_counter() - start
    return {"setup": f"{model} / {dataset}", "train": len(prep.train), "dim": prep.train_features.shape[1],
            "precompute_s": fit.seconds, "iters": fit.iterations, "grad_ratio": fit.grad_norm_final / fit.grad_norm_start,
            "pearson_train": recon["train"], "pearson_test": recon["test"], "explain_ms": explain_ms,
            "tracin_top10_ms": tracin, "ratio": tracin / explain_ms, "tracin_closed_ms": statistics.median(closed_ms),
            "mislabel_s": mislabel_s, **{f"auc_{k}": v for k, v in areas.items()}}


def whole_runs(model: str, dataset: str, seed: int) -> dict:
    """`run_explain` with the defaults on test points 0, 1, ...: the first, then the median of the next."""
    times, caches = [], []
    for i in range(RUN_POINTS + 1):
        ctx = RunContext()
        start = time.perf_counter()
        run_explain(parse_spec({"kind": "explain", "model": model, "dataset": dataset, "seed": seed,
                                "test_index": i}), ctx)
        times.append(time.perf_counter() - start)
        caches.append(all(ctx.facts["cache"].values()))
    return {"setup": f"{model} / {dataset}", "first_s": times[0], "first_cached": "yes" if caches[0] else "no",
            "warm_s": statistics.median(times[1:]), "warm_cached": "yes" if all(caches[1:]) else "no"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    parser.add_argument("--flip", type=float, default=0.1, help="fraction of training labels flipped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared host OpenMP barriers stall the small ops)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rows = [bench(*SETUPS[s], args.flip, args.seed) for s in args.setups]
    runs = [whole_runs(*SETUPS[s], args.seed) for s in args.setups if s in RUN_SETUPS]
    table(rows, [("setup", "{:<30}"), ("train", "{:>6}"), ("dim", "{:>4}"), ("precompute_s", "{:>12.2f}"),
                 ("iters", "{:>5}"), ("grad_ratio", "{:>10.1e}"), ("pearson_train", "{:>13.5f}"),
                 ("pearson_test", "{:>12.5f}"), ("explain_ms", "{:>10.3f}"), ("tracin_top10_ms", "{:>15.1f}"),
                 ("ratio", "{:>8.0f}x"), ("tracin_closed_ms", "{:>16.2f}"), ("mislabel_s", "{:>10.2f}"),
                 ("auc_representer", "{:>15.3f}"), ("auc_tracin", "{:>10.3f}"), ("auc_random", "{:>10.3f}")])
    print(f"\ntargets: explain_ms < {EXPLAIN_MS_TARGET:g}, pearson_train > {PEARSON_TARGET}; "
          f"ratio = TracInCPFast top-{K} time / representer explain time; tracin_closed_ms = the same top-{K} "
          f"as a run computes it; mislabel_s = the flipped-label experiment, computed once per setup by a run; "
          f"auc = area under the flipped-labels-found vs data-inspected curve ({args.flip:.0%} flipped; random ~0.5)")
    if runs:
        print("\nwhole runs, run_explain with the defaults (captum on, 10% flipped labels):")
        table(runs, [("setup", "{:<30}"), ("first_s", "{:>8.2f}"), ("first_cached", "{:>12}"),
                     ("warm_s", "{:>7.2f}"), ("warm_cached", "{:>11}")])
        print(f"target: warm_s < {RUN_WARM_S_TARGET:g} (first_cached: every part of the first run came from "
              f"the cache, so empty SPARSITY_HOME for a cold first run)")
    print(f"load average while measuring (1/5/15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs, torch threads {args.threads}: a shared host stretches every time above, the ratio less so")
    missed = [r["setup"] for r in rows
              if r["explain_ms"] >= EXPLAIN_MS_TARGET or r["pearson_train"] <= PEARSON_TARGET]
    missed += [f"{r['setup']} (whole run)" for r in runs if r["warm_s"] >= RUN_WARM_S_TARGET]
    if missed:
        print(f"MISSED target(s): {', '.join(missed)}")
        return 1
    return 0


def table(rows: list[dict], cols: list[tuple[str, str]]) -> None:
    print(" ".join(f"{name:>{len(fmt.format(rows[0][name]))}}" for name, fmt in cols))
    for row in rows:
        print(" ".join(fmt.format(row[name]) for name, fmt in cols))


if __name__ == "__main__":
    sys.exit(main())
