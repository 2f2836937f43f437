"""The SAE page's evaluation suite in AppTest: the sweep and probing widgets reach the spec (bad
input beside its widget), a finished run shows its Pareto and probing figures, two dictionary
sizes side by side show feature splitting, and the compare page draws one line per variant."""

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from db import repo

ROOT = Path(__file__).resolve().parents[2]
PAGE, COMPARE = str(ROOT / "pages" / "sae.py"), str(ROOT / "pages" / "compare.py")


SWEEP = [{"key": "l0", "value": 32.0}, {"key": "fve", "value": 0.86}, {"key": "dense_fraction", "value": 0.01},
         {"key": "eval_dead_fraction", "value": 0.02},
         *({"key": "sweep_fve", "series": f"k={k}", "x": float(k), "value": v} for k, v in ((16, 0.8), (32, 0.86))),
         *({"key": "sweep_cosine_recovered", "series": f"k={k}", "x": float(k), "value": v}
           for k, v in ((16, 0.6), (32, 0.7))),
         *({"key": "sweep_absorption_rate", "series": f"k={k}", "x": float(k), "value": v}
           for k, v in ((16, 0.05), (32, 0.02))),
         *({"key": "sparse_probe_accuracy", "series": f"bbc_news|{s}", "x": float(k), "value": 0.7}
           for s in ("sae", "raw", "pca") for k in (1, 2, 5, 20))]


def test_sweep_and_probing_reach_the_spec_and_a_bad_sweep_shows_beside_its_widget(store):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.number_input(key="sae_tokens").set_value(8192)
    at.text_input(key="sae_k_sweep").set_value("16, x")
    at.button(key="sae_submit").click().run()
    assert any("integer" in e.value for e in at.error) and repo.list_runs() == []
    at.text_input(key="sae_k_sweep").set_value("64, 16")
    at.checkbox(key="sae_probing").check()
    at.button(key="sae_submit").click().run()
    assert not at.exception
    (run,) = repo.list_runs()
    assert (run.spec["k_sweep"], run.spec["probing"]) == ([16, 64], True)


def test_a_finished_run_shows_its_pareto_probing_and_splitting_figures(store, sae_run):
    small = sae_run(variant="topk", metrics=SWEEP, decoder=np.eye(2))
    big = sae_run(variant="topk", metrics=SWEEP[:2], decoder=[[1, 0.1], [1, -0.1], [0, 1]])
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = str(small)
    at.run()
    assert not at.exception
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("against L0" in t for t in titles) and any("sparse probing" in t for t in titles)
    assert any("full absorption rate against L0" in t for t in titles)  # the sweep's absorption, its own panel
    assert any("dense latents, held-out" in c.value for c in at.caption)
    at.selectbox(key="sae-other").set_value(next(r for r in repo.list_runs() if r.id == big)).run()
    assert not at.exception
    spec = next(c.proto.spec for c in at.get("plotly_chart") if "feature splitting" in c.proto.spec)
    assert "50% split into 2 or more" in spec  # (1, 0) matches two of the big one's latents, (0, 1) one


def test_the_compare_page_draws_one_line_per_variant(store, sae_run):
    a = sae_run(variant="topk", metrics=SWEEP, decoder=np.eye(2))
    b = sae_run(variant="batchtopk", metrics=SWEEP[:2], decoder=np.eye(2))
    at = AppTest.from_file(COMPARE, default_timeout=120)
    at.query_params.update(runs=f"{a},{b}", view="panels")
    at.run()
    assert not at.exception
    spec = next(c.proto.spec for c in at.get("plotly_chart") if "against L0" in c.proto.spec)
    assert '"name":"topk"' in spec.replace(" ", "") and '"name":"batchtopk"' in spec.replace(" ", "")


ABSORBED = [{"key": "l0", "value": 32.0}, {"key": "fve", "value": 0.86}, {"key": "absorption_rate", "value": 0.2},
            {"key": "absorption_latent_f1", "value": 0.5},
            *({"key": "absorption_by_letter", "series": s, "x": 11.0, "value": v}
              for s, v in (("full absorption", 0.2), ("absorption fraction", 0.3)))]
LETTER_L = {"letter": "l", "main": [2], "split_f1": [0.5], "probe_f1": 0.8, "true_positives": 10, "full": 0.2,
            "fraction": 0.3, "examples": [["lion", 1], ["lamp", 1]]}


def test_absorption_reaches_the_spec_and_a_finished_run_shows_its_letters_and_labels(store, sae_run):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.number_input(key="sae_tokens").set_value(8192)
    at.checkbox(key="sae_absorption").check()
    at.button(key="sae_submit").click().run()
    assert not at.exception and repo.list_runs()[0].spec["absorption"] is True
    run_id = sae_run(metrics=ABSORBED)
    repo.update_info(run_id, absorption={"letters": [LETTER_L], "train_words": 1400, "test_words": 600,
                                         "example": " tartan has the first letter: T\n lion has the first letter:"})
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = str(run_id)
    at.run()
    assert not at.exception
    assert any("absorption by first letter" in c.proto.spec for c in at.get("plotly_chart"))
    table = next(d.value for d in at.dataframe if "main latents" in d.value.columns)
    assert table.iloc[0].to_dict() == {
        "letter": "L", "main latents": "2", "latents' F1": 0.5, "probe F1": 0.8, "words probed right": 10,
        "full absorption": 0.2, "absorption fraction": 0.3, "absorbed words (latent that took it)": "lion (1), lamp (1)"}


def test_a_site_no_letter_was_scored_on_says_why(store, sae_run):
    run_id = sae_run()
    repo.update_info(run_id, absorption={"letters": [], "probe_f1_mean": 0.28, "thresholds": {"min_probe_f1": 0.6}})
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = str(run_id)
    at.run()
    assert not at.exception
    assert any("No letter was scored" in i.value and "0.28" in i.value for i in at.info)
