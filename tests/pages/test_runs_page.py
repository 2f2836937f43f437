"""The Runs page lists every run, links it to its lab, cancels, and deletes only after asking."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.paths import artifacts_dir

SPEC = {"kind": "prune", "model": "digits-mlp", "sparsities": [0.5]}


def make(status, error=None):
    run_id = repo.create_run(kind="prune", model="digits-mlp", method="magnitude", spec=SPEC,
                             spec_version=1, status=status)
    if error:
        repo.finish_run(run_id, "failed", error=error)
    return run_id


def page() -> AppTest:
    """The Runs page opened through app.py, so its links to the other pages resolve as in the app."""
    root = Path(__file__).resolve().parents[2]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=60)
    at.switch_page("pages/runs.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_empty_store_says_so():
    at = page()
    assert "No runs yet" in at.info[0].value


def test_lists_runs_with_status_and_error():
    make("queued")
    make("running", error="RuntimeError: boom")
    at = page()
    table = at.dataframe[0].value
    assert list(table["id"]) == [2, 1]
    assert list(table["status"]) == ["failed", "queued"]
    assert table.loc[table["id"] == 2, "error"].item() == "RuntimeError: boom"


def test_every_run_links_to_its_lab_page():
    ids = {kind: repo.create_run(kind=kind, model="digits-mlp", spec=SPEC, spec_version=1)
           for kind in ("prune", "sae", "kernel", "explain")}
    at = page()
    links = dict(zip(at.dataframe[0].value["id"], at.dataframe[0].value["open"]))
    assert links == {ids["prune"]: f"./pruning?run={ids['prune']}", ids["sae"]: f"./sae?run={ids['sae']}",
                     ids["kernel"]: f"./kernels?run={ids['kernel']}", ids["explain"]: f"./explain?run={ids['explain']}"}
    assert at.main.get("page_link")[0].proto.page == "explain"  # the selected (newest) run's own link
    at.selectbox[0].set_value(ids["prune"]).run()
    assert at.main.get("page_link")[0].proto.page == "pruning"
    columns = json.loads(at.dataframe[0].proto.columns)
    assert columns["open"]["type_config"] == {"type": "link", "display_text": "open ↗"}


def test_cancel_a_queued_run_then_delete_it_after_confirming(store):
    run_id = make("queued")
    repo.add_metrics(run_id, [{"key": "accuracy", "x": 0.5, "value": 0.9}])
    folder = artifacts_dir(run_id)
    (folder / "masks.safetensors").write_bytes(b"mask")
    child = repo.create_run(kind="sae", model="digits-mlp", spec=SPEC, spec_version=1, parent_run_id=run_id)
    at = page()
    at.selectbox[0].set_value(run_id).run()
    at.button[0].click().run()  # Cancel
    assert repo.get_run(run_id).status == "cancelled"
    at.button(key="delete").click().run()
    assert repo.get_run(run_id) is not None and folder.exists()  # the first click only asks
    assert at.main.warning[0].value == (f"This deletes run #{run_id} (cancelled), 1 metric value(s), 1 artifact file(s) "
                                   f"(0.0 MB); child run(s) #{child} stay, without a parent. It cannot be undone.")
    at.button(key="delete-keep").click().run()
    assert repo.get_run(run_id) is not None and not at.main.warning
    at.button(key="delete").click().run()
    at.button(key="delete-yes").click().run()
    assert not at.exception and repo.get_run(run_id) is None and not folder.exists()
    assert repo.get_run(child).parent_run_id is None


def test_a_hostile_error_is_shown_as_text():
    make("running", error="[x](http://evil.example) ![i](http://evil.example/i.png) <script>alert(1)</script>")
    at = page()
    bodies = [e.value for e in [*at.error, *at.markdown, *at.caption, *at.warning, *at.info]]
    assert any("&#91;x&#93;" in b for b in bodies)  # the error is on the page, its characters as entities
    assert not any("evil.example" in b or "<script" in b or "![" in b for b in bodies)


def test_the_sidebar_shows_the_ray_clusters_free_resources():
    from pages._ui import cluster_text

    repo.worker_heartbeat("head:1:1", None, info={"executor": "ray", "cluster": {
        "total": {"CPU": 2.0, "GPU": 1.0}, "available": {"CPU": 1.0, "GPU": 0.0},
        "nodes": [{"node": "a"}, {"node": "b"}]}})
    assert cluster_text(repo.live_workers()) == "Ray: 2 node(s), 1 of 2 CPUs free, 0 of 1 GPUs free"


def test_the_runs_table_says_where_each_run_ran():
    on_ray, local = make("queued"), make("queued")
    repo.update_info(on_ray, executor={"name": "ray", "node": "ab12", "host": "gpu-box", "device": "cuda:0"})
    repo.update_info(local, executor={"name": "local", "node": None, "host": "laptop", "device": "cpu"})
    table = page().dataframe[0].value.set_index("id")
    assert table.loc[on_ray, "ran on"] == "ray · gpu-box · cuda:0"
    assert table.loc[local, "ran on"] == "local · laptop · cpu"
