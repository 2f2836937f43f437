"""The kernel latency page in AppTest: bad input is shown beside its widget and queues nothing,
a good spec is queued, and a finished run draws its speedup curve, heatmap and table."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.jobs import submit
from sparsity_core.jobs.store_context import StoreContext
from sparsity_core.kernels.run import run_kernel
from sparsity_core.specs import parse_spec

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "kernels.py")
TINY = {"kind": "kernel", "shapes": [[64, 128]], "tokens": [4, 8], "sparsities": [0.5, 0.9],
        "layouts": ["csr", "semi24"], "repeats": 3, "warmup": 1}


def _open() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=30).run()


def test_bad_input_is_shown_beside_the_widget_and_nothing_is_queued():
    at = _open()
    assert not at.exception
    assert "FLOPs" in at.markdown[0].value  # the plain explanation comes first
    at.text_input(key="k_sparsities").set_value("0.5, 1.5")
    at.button(key="k_submit").click().run()
    assert any("[0, 1)" in e.value for e in at.error)
    assert repo.list_runs() == []


def test_a_valid_spec_is_queued():
    at = _open()
    at.text_input(key="k_tokens").set_value("16")
    at.button(key="k_submit").click().run()
    (run,) = repo.list_runs(kind="kernel")
    assert run.status == "queued" and run.spec["tokens"] == [16]
    assert at.query_params == {"run": str(run.id)}  # a reload keeps it


def test_a_finished_run_draws_its_figures():
    run_id = submit(TINY, status="running", worker="test")
    run_kernel(parse_spec(TINY), StoreContext(run_id))
    repo.finish_run(run_id, "succeeded")
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.query_params["run"] = str(run_id)  # /kernels?run=ID: the link alone opens it
    at.run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # speedup vs sparsity, tokens x sparsity heatmap
    assert any("could not run here" in e.label for e in at.expander)


def test_the_caps_are_in_the_help():
    from sparsity_core.catalog import caps

    at = _open()
    shapes = at.text_input(key="k_shapes").help
    assert f"at most {caps.KERNEL_SWEEP_POINTS} points" in shapes and f"{caps.KERNEL_SHAPES} shapes" in shapes
    assert f"1 to {caps.KERNEL_TOKENS}" in at.text_input(key="k_tokens").help
    assert f"at most {caps.KERNEL_SPARSITIES}" in at.text_input(key="k_sparsities").help
