"""The compare page in AppTest: the URL seeds the selection, differences-only hides shared
settings, the summary choice changes the numbers, and the state goes back into the URL."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.reports.seed import seed_kernel, seed_pruning

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "compare.py")


@pytest.fixture
def runs():
    a = seed_pruning("magnitude", slope=0.5, name="<script>alert(1)</script>")
    b = seed_pruning("wanda", slope=0.2, scope="global")
    seed_pruning("sparsegpt", slope=0.1)  # in the store, not selected
    seed_kernel(a)
    return a, b


def _open(query: dict) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.query_params.update(query)
    return at.run()


def _frame(at, index):
    return at.dataframe[index].value


def test_url_selection_differences_only_and_summary_choice(runs):
    a, b = runs
    at = _open({"runs": f"{a},{b}", "view": "table"})
    assert not at.exception
    assert at.multiselect(key="cmp_runs").value == [a, b]
    config = _frame(at, 0)
    assert "model" in config.index and list(config.columns) == [f"#{a}", f"#{b}"]
    at.toggle(key="cmp_diff").set_value(True).run()
    diff = _frame(at, 0)
    assert set(diff.index) == {"method", "scope", "name"}
    assert diff.loc["name", f"#{a}"] == "<script>alert(1)</script>"  # shown as typed, not run
    assert at.query_params["diff"] == "1"
    last = _frame(at, 1)
    assert last.loc[f"#{a}", "accuracy"] == pytest.approx(0.95 - 0.5 * 0.9)
    at.radio(key="cmp_summary").set_value("at").run()
    at.number_input(key="cmp_x").set_value(0.6).run()
    at_x = _frame(at, 1)
    assert at_x.loc[f"#{a}", "accuracy"] == pytest.approx(0.65)
    assert at_x.loc[f"#{b}", "accuracy"] == pytest.approx(0.95 - 0.2 * 0.6)
    assert at.query_params["summary"] == "at" and at.query_params["x"] == "0.6"


def test_selecting_runs_and_switching_views_updates_the_url(runs):
    a, b = runs
    at = _open({})
    assert at.info and "Select at least one run" in at.info[0].value
    at.multiselect(key="cmp_runs").select(b).select(a).run()
    assert at.query_params["runs"] == f"{b},{a}"
    for view in ("curves", "latency", "parallel", "panels", "lineage", "share"):
        at.radio(key="cmp_view").set_value(view).run()
        assert not at.exception, view
        assert at.query_params["view"] == view
    at.radio(key="cmp_view").set_value("table").run()
    assert at.toggle(key="cmp_diff").value is False  # view settings survive the trip


def test_filters_narrow_the_picker_and_unknown_ids_are_reported(runs):
    a, b = runs
    at = _open({"runs": f"{a},999"})
    assert "#999" in at.warning[0].value
    assert at.multiselect(key="cmp_runs").value == [a]
    at.multiselect(key="cmp_f_method").set_value(["wanda"]).run()
    options = at.multiselect(key="cmp_runs").options
    assert len(options) == 2  # the selected run stays, plus the one wanda run
    at.button[0].click().run()  # "Add all 1 shown"
    assert at.multiselect(key="cmp_runs").value == [a, b]


def test_lineage_adds_the_child_in_one_click(runs):
    a, _ = runs
    at = _open({"runs": str(a), "view": "lineage"})
    child = repo.list_children([a])[0]
    at.button(key=f"lin-{a}-0").click().run()
    assert at.multiselect(key="cmp_runs").value == [a, child.id]


def _json_artifact(run_id, name, payload):
    import json

    from sparsity_core.paths import artifacts_dir

    path = artifacts_dir(run_id) / f"{name.replace('@', '-')}.json"
    path.write_text(json.dumps(payload))
    repo.add_artifact(run_id, name, path, "json")


def test_panels_show_explanation_and_sae_pairs(runs):
    import numpy as np
    from safetensors.numpy import save_file

    from sparsity_core.paths import artifacts_dir
    from sparsity_core.specs import SCHEMA_VERSION

    a, b = runs
    explain = repo.create_run(kind="explain", model="digits-mlp", spec={}, spec_version=SCHEMA_VERSION)
    for variant in ("dense", "pruned"):
        _json_artifact(explain, f"explanation@{variant}", {
            "input": {"item": [1, 2]}, "prediction": {"class": 1, "name": "one"}, "per_label": {"0": 0.1, "1": 0.9},
            "excitatory": [{"index": 3, "label": "1", "value": 0.5}], "inhibitory": []})
    saes = []
    for _ in range(2):
        saes.append(repo.create_run(kind="sae", model="digits-mlp", spec={}, spec_version=SCHEMA_VERSION))
        path = artifacts_dir(saes[-1]) / "sae.safetensors"
        save_file({"W_dec": np.eye(3, dtype=np.float32)}, str(path))
        repo.add_artifact(saes[-1], "sae", path, "safetensors")
    at = _open({"runs": ",".join(map(str, [a, b, explain, *saes])), "view": "panels"})
    assert not at.exception
    titles = [h.value for h in at.subheader]
    assert "Two explanations of one test example" in titles and "Matched features of two SAEs" in titles
    assert "top-k shared: excitatory 100%" in " ".join(c.value for c in at.caption)
