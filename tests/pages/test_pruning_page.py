"""The Pruning page in AppTest: per-method parameters appear, bad input is shown beside its widget
and queues nothing, a good spec is queued, and a finished run draws its figures."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.jobs import submit
from sparsity_core.jobs.store_context import StoreContext
from sparsity_core.pruning.run import run_prune
from sparsity_core.specs import parse_spec

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "pruning.py")


def _open() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=60).run()


def test_method_parameters_and_bad_pattern_beside_the_widget():
    at = _open()
    assert not at.exception
    assert "Pruning sets weights to zero" in at.markdown[0].value
    at.selectbox(key="p_method").set_value("dsnot").run()
    initial = at.selectbox(key="p_param_dsnot_initial")  # dsnot's own parameters, from its param model
    assert (initial.value, initial.options) == ("wanda", ["magnitude", "wanda", "sparsegpt", "random"])
    assert at.number_input(key="p_param_dsnot_iterations").value == 50
    at.text_input(key="p_pattern").set_value("2:4")
    at.text_input(key="p_sparsities").set_value("0.3")
    at.button(key="p_submit").click().run()
    assert any("below it" in e.value for e in at.error)
    assert repo.list_runs() == []


def test_a_valid_spec_is_queued():
    at = _open()
    at.selectbox(key="p_model").set_value("digits-mlp")
    at.selectbox(key="p_method").set_value("wanda").run()
    at.text_input(key="p_pattern").set_value("4:8")
    at.text_input(key="p_sparsities").set_value("0, 0.5")
    at.button(key="p_submit").click().run()
    (run,) = repo.list_runs(kind="prune")
    assert run.status == "queued" and run.spec["pattern"] == "4:8" and run.spec["calibration_samples"] == 64
    assert at.query_params == {"run": str(run.id)}  # a reload keeps it
    assert f"Queued run #{run.id}." in [s.value for s in at.success]  # said in the click's own render
    assert at.subheader[0].value == f"Run #{run.id}"


def test_a_parameter_message_shows_beside_that_parameter(below):
    at = _open()
    at.selectbox(key="p_method").set_value("sparsegpt").run()
    damp = at.number_input(key="p_param_sparsegpt_damp")
    assert (damp.value, damp.min, damp.max) == (0.01, 0.0, 1.0)  # the param model's default and bounds
    damp.set_value(0.0)
    at.button(key="p_submit").click().run()
    assert below(at, "p_param_sparsegpt_damp") == ["Input should be greater than 0"]
    assert repo.list_runs() == []


def test_a_finished_run_draws_its_figures():
    spec = {"kind": "prune", "model": "digits-mlp", "method": "magnitude", "pattern": "block:4x4",
            "sparsities": [0, 0.5]}
    run_id = submit(spec, status="running", worker="test")
    run_prune(parse_spec(spec), StoreContext(run_id))
    repo.finish_run(run_id, "succeeded")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = str(run_id)  # /pruning?run=ID: the link alone opens it
    at.run()
    assert not at.exception
    # accuracy curve, per-layer heatmap, weight histogram, mask view, size bars
    assert len(at.get("plotly_chart")) == 5


def test_the_evaluation_size_follows_the_model():
    at = _open()
    assert at.number_input(key="p_eval").value is None  # the default digits-mlp scores its whole test split
    at.selectbox(key="p_model").set_value("smollm2-135m").run()
    assert at.number_input(key="p_eval").value == 16  # a causal LM starts at 16 windows: fast on a CPU
    at.text_input(key="p_sparsities").set_value("0, 0.5")
    at.button(key="p_submit").click().run()
    (run,) = repo.list_runs(kind="prune")
    assert (run.model, run.spec["eval_samples"]) == ("smollm2-135m", 16)
    at.selectbox(key="p_model").set_value("digits-mlp").run()
    assert at.number_input(key="p_eval").value is None  # back to "all" for a small classifier
