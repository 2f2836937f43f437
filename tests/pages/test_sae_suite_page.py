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
