"""The kernel latency page in AppTest: bad input is shown beside its widget and queues nothing,
a good spec is queued, a finished run draws its speedup curve, heatmap and table, a run with a
pruned model shows what "auto" picked (and an old run without that data shows none of it), and
importing a bundle acts only for a session that may change runs."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import repo
from pages._access import READ_ONLY
from sparsity_core.jobs import submit
from sparsity_core.jobs.store_context import StoreContext
from sparsity_core.kernels.run import run_kernel
from sparsity_core.pruning.run import run_prune
from sparsity_core.reports import bundle
from sparsity_core.reports.seed import seed_kernel, seed_pruning
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
    assert not [h for h in at.subheader if "auto picked" in h.value]  # no model: nothing about auto


AUTO_HEADER = "What auto picked: the whole model, timed side by side with dense"


def _show(run_id: int) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _auto_table(at: AppTest):
    (table,) = [d.value for d in at.dataframe if "auto picked" in d.value.columns]
    return table


def test_a_run_with_a_pruned_model_shows_what_auto_picked():
    prune = {"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0, 0.9],
             "eval_samples": 64}
    parent = submit(prune, status="running", worker="test")
    run_prune(parse_spec(prune), StoreContext(parent))
    repo.finish_run(parent, "succeeded")
    spec = {"kind": "kernel", "model": "digits-mlp", "shapes": [], "parent_run": parent, "repeats": 3, "batch": 16}
    run_id = submit(spec, status="running", worker="test")
    run_kernel(parse_spec(spec), StoreContext(run_id))
    repo.finish_run(run_id, "succeeded")

    at = _show(run_id)
    assert AUTO_HEADER in [h.value for h in at.subheader]
    table = _auto_table(at)
    assert list(table["sparsity"]) == ["0%", "90%"]  # one row per sparsity, in words
    picks = repo.get_run(run_id).info["model"]["auto"]
    for row, key in zip(table.to_dict("records"), ["0", "0.9"]):
        pick = picks[key]
        auto_ms = pick["dense_ms"] if pick["chose"] == "dense" else pick["per_layer_ms"]
        assert float(row["auto (ms)"]) == pytest.approx(auto_ms, rel=1e-3)
        assert float(row["dense (ms)"]) == pytest.approx(pick["dense_ms"], rel=1e-3)
        assert float(row["auto ÷ dense"]) <= 1.0
        if pick["chose"] == "dense":
            assert row["auto picked"] == "dense (whole model)"
        else:  # the layouts its layers run, in words ("CSR in every layer (2)", "per layer: CSR ×1, dense ×1")
            assert "in every layer" in row["auto picked"] or row["auto picked"].startswith("per layer: ")
    cells = " ".join(table.astype(str).to_numpy().ravel())
    assert "nan" not in cells.lower() and "None" not in cells
    chosen = at.selectbox(key="k_auto_sparsity")
    assert chosen.options == ["0%", "90%"] and chosen.value == 0.9  # the sparsest first
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "layout chosen for each layer at sparsity 90%" in titles  # beside quality vs speed, per-layer ms


def test_an_old_run_without_the_auto_data_shows_none_of_it():
    parent = seed_pruning()
    run_id = seed_kernel(parent)
    repo.add_metrics(run_id, [{"key": "latency_ms", "series": "model:dense", "x": 0.9, "value": 2.0},
                              {"key": "latency_ms", "series": "model:auto", "x": 0.9, "value": 1.5}])
    repo.update_info(run_id, model={"layouts_chosen": {"0.9": {"csr": 2}}})  # from before dense was weighed
    at = _show(run_id)
    assert AUTO_HEADER not in [h.value for h in at.subheader]
    assert not [d for d in at.dataframe if "auto picked" in d.value.columns]


def test_a_hand_made_run_shows_its_auto_table_cell_by_cell():
    parent = seed_pruning()
    run_id = seed_kernel(parent)
    repo.update_info(run_id, model={"layouts_chosen": {"0.9": {"csr": 2}},
                                    "auto": {"0.9": {"chose": "per_layer", "dense_ms": 2.0, "per_layer_ms": 1.5,
                                                     "dense_iqr_ms": 0.1, "per_layer_iqr_ms": 0.2}}})
    at = _show(run_id)  # no layers artifact: the table, and no per-layer chart
    assert _auto_table(at).to_dict("records") == [
        {"sparsity": "90%", "auto picked": "CSR in every layer (2)", "auto (ms)": "1.5", "dense (ms)": "2",
         "auto ÷ dense": "0.75", "per-layer model (ms)": "1.5", "noise (IQR, ms)": "0.2",
         "against dense": "faster"}]
    assert not [s for s in at.selectbox if s.key == "k_auto_sparsity"]


@pytest.mark.parametrize("token", ["s3cret-token-for-tests-0123", None])
def test_importing_a_bundle_acts_only_with_access(monkeypatch, token):
    if token:
        monkeypatch.setenv("SPARSITY_TOKEN", token)  # and none given: this session may not change runs
    run_id = seed_kernel(seed_pruning())
    data = json.dumps(bundle.bundle_dict([run_id])).encode()
    before = len(repo.list_runs())
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    at.file_uploader(key="k_upload").set_value(("bundle.json", data, "application/json")).run()
    at.button(key="k_import").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    if token:
        assert errors == [READ_ONLY] and len(repo.list_runs()) == before
    else:
        assert READ_ONLY not in errors and len(repo.list_runs()) > before


def test_the_caps_are_in_the_help():
    from sparsity_core.catalog import caps

    at = _open()
    shapes = at.text_input(key="k_shapes").help
    assert f"at most {caps.KERNEL_SWEEP_POINTS} points" in shapes and f"{caps.KERNEL_SHAPES} shapes" in shapes
    assert f"1 to {caps.KERNEL_TOKENS}" in at.text_input(key="k_tokens").help
    assert f"at most {caps.KERNEL_SPARSITIES}" in at.text_input(key="k_sparsities").help
