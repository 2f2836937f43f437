"""The Pruning page's calibration and allocation settings (issue 16): the calibration mode for
methods that calibrate, OWL's parameters only with OWL, and the allocated-vs-reached bars on the
page of a finished ERK run."""

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


def _keys(at) -> set[str]:
    return {w.key for kind in ("selectbox", "number_input") for w in getattr(at, kind)}


def test_calibration_mode_and_owl_parameters_show_when_they_apply():
    at = _open()
    assert "p_calibration" not in _keys(at) and "p_owl_m" not in _keys(at)  # magnitude, uniform
    at.selectbox(key="p_allocation").set_value("owl").run()
    assert {"p_owl_m", "p_owl_lambda", "p_calib", "p_seq"} <= _keys(at)  # OWL reads activations
    assert (at.number_input(key="p_owl_m").value, at.number_input(key="p_owl_lambda").value) == (5.0, 0.08)
    at.selectbox(key="p_method").set_value("wanda").run()
    assert at.selectbox(key="p_calibration").value == "sequential"
    at.text_input(key="p_sparsities").set_value("0, 0.7")
    at.button(key="p_submit").click().run()
    (run,) = repo.list_runs(kind="prune")
    assert (run.spec["calibration"], run.spec["allocation"], run.spec["owl_m"]) == ("sequential", "owl", 5.0)


def test_global_scope_calibrates_in_one_pass_and_refuses_owl_beside_its_widget(below):
    at = _open()
    at.selectbox(key="p_method").set_value("wanda").run()
    at.radio(key="p_scope").set_value("global").run()
    assert "p_calibration" not in _keys(at)
    at.selectbox(key="p_allocation").set_value("owl").run()
    at.button(key="p_submit").click().run()
    assert any("use scope layer" in m for m in below(at, "p_allocation"))
    assert repo.list_runs() == []


def test_an_erk_run_draws_its_allocation_bars():
    spec = {"kind": "prune", "model": "digits-mlp", "method": "random", "allocation": "erk", "sparsities": [0, 0.8]}
    run_id = submit(spec, status="running", worker="test")
    run_prune(parse_spec(spec), StoreContext(run_id))
    repo.finish_run(run_id, "succeeded")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 6  # the five of every one-shot run, and the allocation
    assert any("allocated vs reached" in c.proto.spec for c in charts)
