"""The SAE page in AppTest: it explains itself, bad input is shown beside its widget and queues
nothing, a good spec is queued, and a finished run opens the feature browser."""

from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import save_file
from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.jobs import submit
from sparsity_core.specs import parse_spec

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "sae.py")


def _open() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=120).run()


def test_bad_layer_is_shown_beside_the_widget_and_nothing_is_queued():
    at = _open()
    assert not at.exception
    assert "sparse autoencoder" in at.markdown[0].value
    at.number_input(key="sae_layer").set_value(9)
    at.number_input(key="sae_tokens").set_value(8192)
    at.button(key="sae_submit").click().run()
    assert any("out of range" in e.value for e in at.error)
    assert repo.list_runs() == []


def _fake_finished_run(home: Path, decoder=None, parent=None) -> int:
    """A succeeded SAE run with the artifacts the browser reads (written by hand, no training);
    with `decoder`, also the SAE weights (`W_dec`) that side-by-side matching reads; with `parent`,
    an SAE on that pruning run's model."""
    spec = {"kind": "sae", "model": "minilm-l6", "tokens": 8192, "data": "rotten_tomatoes"}
    if parent is None:
        run_id = submit(spec, status="running", worker="test")
    else:  # stored as it is: the pre-run check would look for the parent's pruned weights
        spec = parse_spec({**spec, "parent_run": parent}).model_dump(mode="json")
        run_id = repo.create_run(kind="sae", model="minilm-l6", spec=spec, spec_version=2, parent_run_id=parent,
                                 method="topk")
    folder = home / "artifacts" / f"run-{run_id:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    # latent 0 fires on 10% of tokens (dense: hidden by default); selectivity = mean top-context
    # activation / mean activation: latent 0: 2.0 / 1.0 = 2, latent 1: (3 + 1) / 2 / 2.0 = 1,
    # latent 2: (2.5 + 1.5) / 2 / 0.5 = 4, the most selective: the browser opens on it
    features = pd.DataFrame({"latent": [0, 1, 2], "density": [0.1, 0.01, 0.004], "log10_density": [-1.0, -2.0, -2.4],
                             "mean_activation": [1.0, 2.0, 0.5], "max_activation": [2.0, 3.0, 2.5],
                             "top_tokens": ["movie", "bad", "<script>"], "act_hist": [[0] * 35, [1] * 35, [2] * 35]})
    contexts = pd.DataFrame({"latent": [0, 1, 1, 2, 2], "rank": [0, 0, 1, 0, 1],
                             "activation": [2.0, 3.0, 1.0, 2.5, 1.5],
                             "left": ["a great", "a really", "not", "see <b>", "the"],
                             "token": ["movie", "bad", "bad", "<script>", "tag"],
                             "right": ["!", "film", "at all", "alert(1)", "& co"]})
    for name, frame in (("features", features), ("contexts", contexts)):
        frame.to_parquet(folder / f"{name}.parquet")
        repo.add_artifact(run_id, name, folder / f"{name}.parquet", "parquet")
    (folder / "saelens").mkdir()
    (folder / "saelens" / "cfg.json").write_text("{}")
    repo.add_artifact(run_id, "saelens", folder / "saelens", "dir")
    if decoder is not None:
        save_file({"W_dec": np.asarray(decoder, dtype=np.float32)}, str(folder / "sae.safetensors"))
        repo.add_artifact(run_id, "sae", folder / "sae.safetensors", "safetensors")
    repo.add_metrics(run_id, [{"key": "l0", "value": 32.0}, {"key": "fve", "value": 0.9},
                              {"key": "train_fve", "x": 4096, "value": 0.5},
                              {"key": "log_density", "x": -1.0, "value": 1.0}])
    repo.finish_run(run_id, "succeeded")
    return run_id


def test_finished_run_opens_the_browser_and_search_finds_a_token(store):
    run_id = _fake_finished_run(store)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = str(run_id)  # /sae?run=ID: the link alone opens it
    at.run()
    assert not at.exception
    assert at.dataframe[0].value.loc[:, "fve"].iloc[0] == 0.9
    at.text_input(key="sae-query").set_value("bad").run()
    assert not at.exception
    browser = at.dataframe[1].value
    assert list(browser["latent"]) == [1]


def test_two_runs_side_by_side_match_their_features(store):
    # B's latents: A's three directions in another order, and (1, 1, 1), whose best cosine with
    # any of A's is 1/sqrt(3) = 0.58, below the 0.7 that counts as the same feature
    a = _fake_finished_run(store, decoder=np.eye(3))
    b = _fake_finished_run(store, decoder=[[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 1]])
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = str(b)
    at.run()
    at.selectbox(key="sae-other").select_index(1).run()
    assert not at.exception
    assert at.selectbox(key="sae-other").value.id == a
    share = next(m for m in at.metric if m.label.startswith("latents with a match"))
    assert share.value == "75.0%"


def test_an_sae_on_a_pruned_model_opens_compared_with_the_dense_one(store):
    prune = repo.create_run(kind="prune", model="minilm-l6", spec={"kind": "prune", "model": "minilm-l6",
                                                                   "sparsities": [0.5]}, spec_version=2)
    repo.finish_run(prune, "succeeded")
    # the pruned model's SAE keeps x (cosine 1), turns z towards y (0.6: moved) and has -y, which
    # nothing dense points to; the dense y (0.8 with the turned one) is kept too
    dense = _fake_finished_run(store, decoder=np.eye(3))
    pruned = _fake_finished_run(store, decoder=[[1, 0, 0], [0, 0.8, 0.6], [0, -1, 0]], parent=prune)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = str(pruned)
    at.run()
    assert not at.exception
    assert at.selectbox(key="sae-other").value.id == dense  # chosen for the reader
    counts = {m.label: m.value for m in at.metric if m.label.endswith(" latents")}
    assert counts == {"kept latents": "2", "moved latents": "1", "lost latents": "0", "new latents": "1"}
    at.radio(key="sae-fate").set_value("moved").run()
    assert not at.exception
    row = at.dataframe[-1].value.iloc[0]
    assert (row["latent_a"], row["latent_b"], row["cosine"]) == (2, 1, 0.6)
    assert "dense latent 2 ↔ pruned latent 1" in at.selectbox(key="sae-fate-pair").options


def test_the_url_names_the_latent_shown_and_a_change_updates_it(store):
    run_id = _fake_finished_run(store)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params.update(run=str(run_id), latent="1")  # /sae?run=ID&latent=1
    at.run()
    assert not at.exception
    assert at.selectbox(key="sae-latent").value == 1  # not the densest (latent 0), the one linked
    assert any("**Latent 1** · fires on 1.000%" in m.value for m in at.markdown)
    at.selectbox(key="sae-latent").set_value(2).run()
    assert at.query_params == {"run": str(run_id), "latent": "2"}  # a reload opens latent 2
    assert any(f"[Link to this run](sae?run={run_id}&latent=2)" in m.value for m in at.markdown)


def test_a_linked_dense_latent_opens_though_the_list_hides_dense_ones(store):
    run_id = _fake_finished_run(store)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params.update(run=str(run_id), latent="0")
    at.run()
    assert not at.exception and at.selectbox(key="sae-latent").value == 0


def test_the_browser_opens_on_the_most_selective_latent_and_hides_dense_ones(store):
    run_id = _fake_finished_run(store)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = str(run_id)
    at.run()
    assert not at.exception
    assert at.selectbox(key="sae-order").value == "selectivity (high first)"
    assert at.number_input(key="sae-max-density").value == 1.0  # percent of tokens
    listed = at.dataframe[1].value
    assert list(listed["latent"]) == [2, 1]  # selectivity 4, then 1; latent 0 (10% of tokens) hidden
    assert list(listed["selectivity"]) == [4.0, 1.0]
    assert at.selectbox(key="sae-latent").value == 2
    assert at.query_params["latent"] == "2"
    assert "1 of 3 latents fire on more than 1% of tokens and are hidden (raise the limit to list them)" in [
        c.value for c in at.caption]
    at.number_input(key="sae-max-density").set_value(100.0).run()
    assert list(at.dataframe[1].value["latent"]) == [2, 0, 1]
    assert not any("are hidden" in c.value for c in at.caption)


def test_contexts_shade_the_firing_token_escaped_with_its_value(store):
    run_id = _fake_finished_run(store)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = str(run_id)
    at.run()
    shown = at.html[0].value  # latent 2's contexts, the strongest first
    assert "<script>" not in shown and "<b>" not in shown.replace("<b style", "")
    assert "&lt;script&gt;" in shown and "see &lt;b&gt;" in shown and "&amp; co" in shown
    assert shown.index("2.50</b>") < shown.index("1.50</b>")  # the activation of each context, shown
    # the firing token's shade is its share of the strongest context; hovering shows the value
    assert "title=\"activation 2.5 (100% of this latent&#x27;s top context)\"" in shown
    assert "title=\"activation 1.5 (60% of this latent&#x27;s top context)\"" in shown
    assert "rgba(255,140,0,1.00)" in shown and "rgba(255,140,0,0.66)" in shown  # 0.15 + 0.85 x 0.6


def test_a_latent_the_run_does_not_have_says_so(store):
    run_id = _fake_finished_run(store)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params.update(run=str(run_id), latent="7")
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["`latent=7` in this address is not a latent of this run"]
    assert at.query_params["latent"] == str(at.selectbox(key="sae-latent").value)  # now names the one shown


def test_the_digits_classifier_offers_its_hidden_layers_and_images(store):
    at = _open()
    at.selectbox(key="sae_model").set_value("digits-mlp").run()
    assert not at.exception
    assert at.radio(key="sae_site").options == ["hidden"] and at.selectbox(key="sae_data").options == ["digits"]
    assert at.number_input(key="sae_layer").value == 1  # the last hidden layer, 128 units
    at.number_input(key="sae_k").set_value(8)
    at.number_input(key="sae_expansion").set_value(1)
    at.button(key="sae_submit").click().run()
    assert not at.exception and not at.error
    (run,) = repo.list_runs(kind="sae")
    assert (run.spec["model"], run.spec["site"], run.spec["data"], run.spec["layer"]) == ("digits-mlp", "hidden",
                                                                                          "digits", 1)
    at.selectbox(key="sae_model").set_value("minilm-l6").run()  # back to text: a text site and corpus again
    assert at.radio(key="sae_site").value == "resid" and at.selectbox(key="sae_data").value == "all"
