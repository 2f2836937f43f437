"""The Explanations page in AppTest: bad input shows beside its widget and queues nothing, and a
finished run draws pictures, the self-check and the global view (drawing: test_digit_canvas.py)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.explain.run import run_explain
from sparsity_core.jobs import submit
from sparsity_core.jobs.store_context import StoreContext
from sparsity_core.specs import parse_spec

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "explain.py")


def _open() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=60).run()


def test_bad_lambda_and_test_index_are_shown_and_nothing_is_queued():
    at = _open()
    assert not at.exception
    assert "Representer points" in at.markdown[0].value
    at.number_input(key="e_lambda").set_value(0.0)
    at.button(key="e_submit").click().run()
    assert any("lambda must be greater than 0" in e.value for e in at.error)
    at.number_input(key="e_lambda").set_value(0.003)
    at.number_input(key="e_index").set_value(5000)
    at.button(key="e_submit").click().run()
    assert any("test split has 359 rows" in e.value for e in at.error)
    assert repo.list_runs() == []


def test_a_finished_run_draws_its_figures():
    spec = {"kind": "explain", "model": "digits-mlp", "train_limit": 300, "top_k": 4, "flip_fraction": 0.2,
            "ig_steps": 16}
    run_id = submit(spec, status="running", worker="test")
    run_explain(parse_spec(spec), StoreContext(run_id))
    repo.finish_run(run_id, "succeeded")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = str(run_id)  # /explain?run=ID: the link alone opens it
    at.run()
    assert not at.exception
    # input, attribution, excitatory, inhibitory, per-label, logits, reconstruction, ranking, flipped labels
    assert len(at.get("plotly_chart")) == 9
    assert "Pearson r, train" in [m.label for m in at.metric]
    assert "captum's influence on the same prediction" in [h.value for h in at.subheader]
