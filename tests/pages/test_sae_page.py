"""The SAE page in AppTest: it explains itself, bad input is shown beside its widget and queues
nothing, a good spec is queued, and a finished run opens the feature browser."""

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from db import repo

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


def test_finished_run_opens_the_browser_and_search_finds_a_token(store, sae_run):
    run_id = sae_run()
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = str(run_id)  # /sae?run=ID: the link alone opens it
    at.run()
    assert not at.exception
    assert at.dataframe[0].value.loc[:, "fve"].iloc[0] == 0.9
    at.text_input(key="sae-query").set_value("bad").run()
    assert not at.exception
    browser = at.dataframe[1].value
    assert list(browser["latent"]) == [1]


def test_two_runs_side_by_side_match_their_features(store, sae_run):
    # B's latents: A's three directions in another order, and (1, 1, 1), whose best cosine with
    # any of A's is 1/sqrt(3) = 0.58, below the 0.7 that counts as the same feature
    a = sae_run(decoder=np.eye(3))
    b = sae_run(decoder=[[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 1]])
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["run"] = str(b)
    at.run()
    at.selectbox(key="sae-other").select_index(1).run()
    assert not at.exception
    assert at.selectbox(key="sae-other").value.id == a
    share = next(m for m in at.metric if m.label.startswith("latents with a match"))
    assert share.value == "75.0%"


def test_an_sae_on_a_pruned_model_opens_compared_with_the_dense_one(store, sae_run):
    prune = repo.create_run(kind="prune", model="minilm-l6", spec={"kind": "prune", "model": "minilm-l6",
                                                                   "sparsities": [0.5]}, spec_version=2)
    repo.finish_run(prune, "succeeded")
    # the pruned model's SAE keeps x (cosine 1), turns z towards y (0.6: moved) and has -y, which
    # nothing dense points to; the dense y (0.8 with the turned one) is kept too
    dense = sae_run(decoder=np.eye(3))
    pruned = sae_run(decoder=[[1, 0, 0], [0, 0.8, 0.6], [0, -1, 0]], parent=prune)
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


def test_the_url_names_the_latent_shown_and_a_change_updates_it(store, sae_run):
    run_id = sae_run()
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params.update(run=str(run_id), latent="1")  # /sae?run=ID&latent=1
    at.run()
    assert not at.exception
    assert at.selectbox(key="sae-latent").value == 1  # not the densest (latent 0), the one linked
    assert any("**Latent 1** · fires on 1.000%" in m.value for m in at.markdown)
    at.selectbox(key="sae-latent").set_value(2).run()
    assert at.query_params == {"run": str(run_id), "latent": "2"}  # a reload opens latent 2
    assert any(f"[Link to this run](sae?run={run_id}&latent=2)" in m.value for m in at.markdown)


def test_a_linked_dense_latent_opens_though_the_list_hides_dense_ones(store, sae_run):
    run_id = sae_run()
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params.update(run=str(run_id), latent="0")
    at.run()
    assert not at.exception and at.selectbox(key="sae-latent").value == 0


def test_the_browser_opens_on_the_most_selective_latent_and_hides_dense_ones(store, sae_run):
    run_id = sae_run()
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


def test_contexts_shade_the_firing_token_escaped_with_its_value(store, sae_run):
    run_id = sae_run()
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


def test_a_latent_the_run_does_not_have_says_so(store, sae_run):
    run_id = sae_run()
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
