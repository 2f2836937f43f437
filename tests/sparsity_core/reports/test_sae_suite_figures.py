"""The SAE suite's figures from hand-made metric frames: Pareto points from a sweep and from single
runs, one line per variant, probing panels per task, the splitting histogram's bins."""

import numpy as np
import pandas as pd

from sparsity_core.reports import figures as F
from sparsity_core.reports import sae as figs


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["run_id", "key", "series", "x", "value"])


SWEEP_RUN = [(1, "sweep_fve", "k=16", 15.8, 0.80), (1, "sweep_fve", "k=32", 31.9, 0.86),
             (1, "l0", "", None, 31.9), (1, "fve", "", None, 0.86), (1, "sweep_cosine_recovered", "k=16", 15.8, 0.7)]
SINGLE_RUNS = [(2, "l0", "", None, 16.1), (2, "fve", "", None, 0.78), (3, "l0", "", None, 64.0), (3, "fve", "", None, 0.9)]


def test_pareto_points_take_a_sweep_and_single_runs_alike():
    points = figs.pareto_points(frame(SWEEP_RUN + SINGLE_RUNS), "fve")
    assert points[["run_id", "l0", "value"]].values.tolist() == [[1, 15.8, 0.80], [1, 31.9, 0.86],
                                                                 [2, 16.1, 0.78], [3, 64.0, 0.9]]
    assert list(points["k"]) == ["16", "32", "", ""]


def test_runs_of_one_variant_form_one_line():
    fig = figs.pareto_figure(frame(SWEEP_RUN + SINGLE_RUNS), "fve", groups={1: "topk", 2: "jumprelu", 3: "jumprelu"})
    lines = {t.name: list(t.x) for t in fig.data}
    assert lines == {"topk": [15.8, 31.9], "jumprelu": [16.1, 64.0]}
    assert fig.layout.xaxis.type == "log"
    assert figs.downstream_key(frame(SWEEP_RUN)) == "cosine_recovered"
    assert figs.downstream_key(frame(SINGLE_RUNS)) is None


def test_probing_panels_one_per_task_with_a_line_per_source():
    rows = [(5, "sparse_probe_accuracy", f"{task}|{source}", k, 0.6 + k / 100)
            for task in ("bbc_news", "tweets") for source in ("sae", "raw", "pca") for k in (1, 2, 5, 20)]
    fig = figs.sparse_probing_figure(frame(rows))
    assert len(fig.data) == 6 and [a.text for a in fig.layout.annotations] == ["bbc news", "tweets"]
    assert {t.name for t in fig.data} == {"SAE latents", "raw activations", "principal components"}
    assert list(fig.data[0].x) == [1, 2, 5, 20]
    assert "no sparse probing" in figs.sparse_probing_figure(frame(SINGLE_RUNS)).layout.annotations[0].text


def test_splitting_histogram_bins_five_and_more_together():
    fig = figs.splitting_histogram(np.array([0, 1, 1, 2, 7]), "#1", "#2")
    assert list(fig.data[0].y) == [1, 2, 1, 0, 0, 1]
    assert "40% split" in fig.layout.title.text  # 2 of 5 latents have 2 or more matches


def test_the_suite_metrics_read_as_words():
    assert F.metric_label("dense_fraction") == "dense latents, held-out"
    assert F.metric_label("sweep_fve", "k=16") == "FVE (fraction of variance explained), L0 sweep, k=16"
    assert "10%" in F.metric_help("dense_fraction") and "chance" in F.metric_help("sparse_probe_accuracy")
