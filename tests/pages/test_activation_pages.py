"""WINA / TEAL on the pages: the Pruning page names activation-sparsity targets and refuses a global
scope beside its widget; a finished run draws quality against activation sparsity; a kernel run
on it shows the batch-1 GEMVs, dense vs gathered."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.jobs import submit
from sparsity_core.jobs.store_context import StoreContext
from sparsity_core.kernels.run import run_kernel
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import parse_spec

PAGES = Path(__file__).resolve().parents[2] / "pages"
WINA = {"kind": "prune", "model": "digits-mlp", "method": "wina", "sparsities": [0, 0.5, 0.75]}


def _finished(spec: dict, job) -> int:
    run_id = submit(spec, status="running", worker="test")
    job(parse_spec(spec), StoreContext(run_id))
    repo.finish_run(run_id, "succeeded")
    return run_id


def _show(page: str, run_id: int) -> AppTest:
    at = AppTest.from_file(str(PAGES / page), default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_the_pruning_page_offers_wina_with_activation_targets_and_refuses_global_scope(below):
    at = AppTest.from_file(str(PAGES / "pruning.py"), default_timeout=60).run()
    offered = [o.split(" — ")[0] for o in at.selectbox(key="p_method").options]  # "name — description"
    assert {"wina", "teal"} <= set(offered)
    at.selectbox(key="p_model").set_value("digits-mlp")
    at.selectbox(key="p_method").set_value("wina").run()
    assert at.text_input(key="p_sparsities").label == "Activation sparsity targets"
    assert any("weights stay dense" in c.value for c in at.caption)
    at.radio(key="p_scope").set_value("global")
    at.button(key="p_submit").click().run()
    assert "scope layer" in " ".join(below(at, "p_scope"))
    assert repo.list_runs() == []
    at.radio(key="p_scope").set_value("layer")
    at.button(key="p_submit").click().run()
    (run,) = repo.list_runs(kind="prune")
    assert (run.method, run.spec["sparsities"]) == ("wina", [0, 0.5, 0.7])


def test_the_pruning_page_queues_teal_with_greedy_allocation_and_its_small_calibration():
    at = AppTest.from_file(str(PAGES / "pruning.py"), default_timeout=60).run()
    at.selectbox(key="p_model").set_value("smollm2-135m")
    at.selectbox(key="p_method").set_value("teal").run()
    allocation = at.selectbox(key="p_act_allocation")
    assert allocation.options == ["uniform", "greedy"] and "TEAL's block-wise greedy" in allocation.help
    assert not [n for n in at.number_input if n.key == "p_calib_greedy"]  # uniform reads no calibration
    allocation.set_value("greedy").run()
    assert (at.number_input(key="p_calib_greedy").value, at.number_input(key="p_seq_greedy").value) == (8, 128)
    at.button(key="p_submit").click().run()
    (run,) = repo.list_runs(kind="prune")
    assert (run.method, run.spec["allocation"], run.spec["calibration_samples"], run.spec["seq_len"]) == \
        ("teal", "greedy", 8, 128)


def test_a_finished_wina_run_draws_quality_against_activation_sparsity():
    run_id = _finished(WINA, run_prune)
    at = _show("pruning.py", run_id)
    assert _titles(at) == ["accuracy against activation sparsity", "each layer's inputs at activation sparsity 75%"]
    at.select_slider(key="p_activation_layers").set_value(0.5).run()
    assert _titles(at)[1] == "each layer's inputs at activation sparsity 50%"


def test_overlays_offer_runs_of_the_same_family_only():
    # a weight-pruning run and two activation runs on one model: each overlay lists its own kind
    # (their x axes differ: weight sparsity against activation sparsity)
    magnitude = _finished({"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0.5]},
                          run_prune)
    teal = _finished({**WINA, "method": "teal", "sparsities": [0, 0.5]}, run_prune)
    wina = _finished({**WINA, "sparsities": [0, 0.5]}, run_prune)
    (offered,) = _show("pruning.py", wina).multiselect(key="p_activation_overlay").options
    assert f"#{teal}" in offered and "teal" in offered
    assert _show("pruning.py", magnitude).multiselect(key="p_overlay").options == []


def test_a_kernel_run_on_a_wina_run_shows_dense_vs_gathered_gemvs():
    parent = _finished(WINA, run_prune)
    run_id = _finished({"kind": "kernel", "model": "digits-mlp", "shapes": [], "parent_run": parent,
                        "repeats": 3, "warmup": 1}, run_kernel)
    at = _show("kernels.py", run_id)
    assert "Activation sparsity at batch 1: dense vs gathered GEMV" in [h.value for h in at.subheader]
    assert "batch 1: what the skipped input columns buy" in _titles(at)
    (table,) = [d.value for d in at.dataframe if "gathered_ms" in d.value.columns]
    assert list(table["activation sparsity"]) == ["0%", "50%", "75%"]
