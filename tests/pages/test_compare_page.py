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


EVIL = "[x](http://evil.example) ![i](http://evil.example/i.png) <script>alert(1)</script>"


def _markdown_bodies(at) -> list[str]:
    """The markdown source of every element Streamlit renders as markdown (button labels too)."""
    elements = [*at.markdown, *at.caption, *at.title, *at.header, *at.subheader, *at.info, *at.warning,
                *at.error, *at.success, *at.toast]
    return [e.value for e in elements] + [b.label for b in at.button]


def test_hostile_names_are_text_in_every_view(runs, tmp_path):
    """An imported bundle whose run name and method are markdown and HTML: no view renders a live
    link, image, script or bare-URL autolink from them; the failed run's partial row is marked."""
    import json

    from sparsity_core.reports import bundle

    a, _ = runs
    child = repo.list_children([a])[0].id
    data = bundle.bundle_dict([a, child])
    data["runs"][0]["name"] = data["runs"][1]["name"] = EVIL
    data["runs"][1]["method"] = "[m](http://evil.example)"
    data["runs"][0]["status"] = "failed"
    new_a, new_child = bundle.import_bytes(json.dumps(data).encode())
    at = _open({"runs": f"{new_a},{new_child}"})
    for view in VIEWS_TO_CHECK:
        at.radio(key="cmp_view").set_value(view).run()
        assert not at.exception, view
        for body in _markdown_bodies(at):
            assert "evil.example" not in body and "<script" not in body and "![" not in body, (view, body)
        if view == "table":
            assert f"#{new_a} (failed)" in list(at.dataframe[1].value.index)
            assert any("metrics are partial" in c.value for c in at.caption)
        if view == "lineage":
            shown = " ".join(m.value for m in at.markdown)
            assert "&#91;x&#93;&#40;http&#58;" in shown  # the name is there, as entities for its characters
            assert any("&#91;m&#93;" in b.label for b in at.button)


VIEWS_TO_CHECK = ("table", "curves", "latency", "parallel", "panels", "lineage", "share")


def test_imported_explanations_that_are_not_explanations_are_left_out_not_a_crash(runs):
    from sparsity_core.paths import artifacts_dir
    from sparsity_core.specs import SCHEMA_VERSION

    explain = repo.create_run(kind="explain", model="digits-mlp", spec={}, spec_version=SCHEMA_VERSION)
    good = {"input": {"item": [1, 2]}, "prediction": {"class": 1, "name": "one"}, "per_label": {"1": 0.9},
            "excitatory": [{"index": 3, "label": "1", "value": 0.5}], "inhibitory": []}
    _json_artifact(explain, "explanation@dense", good)
    _json_artifact(explain, "explanation@pruned", good)
    _json_artifact(explain, "explanation@nokey", {k: v for k, v in good.items() if k != "prediction"})
    binary = artifacts_dir(explain) / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00 not json")
    repo.add_artifact(explain, "explanation@binary", binary, "json")
    at = _open({"runs": str(explain), "view": "panels"})
    assert not at.exception
    warning = at.warning[0].value
    assert "nokey" in warning and "binary" in warning and "dense" not in warning
    assert "Two explanations of one test example" in [h.value for h in at.subheader]
    assert "top-k shared: excitatory 100%" in " ".join(c.value for c in at.caption)
