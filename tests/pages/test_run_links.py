"""A lab page opens the run its URL names (`?run=ID`); a link that names no run of that lab (not a
number, a deleted run, a run of another lab) says so in one line and draws no run."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.reports.seed import seed_kernel, seed_pruning

PAGES = Path(__file__).resolve().parents[2] / "pages"
# page -> what it shows
LABS = {"pruning": "a pruning run", "sae": "an SAE run", "explain": "an explanation run",
        "kernels": "a kernel latency run"}


def _open(page: str, run: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{page}.py"), default_timeout=60)
    at.query_params["run"] = run
    return at.run()


def _says_only(at: AppTest, line: str) -> None:
    assert not at.exception
    assert [w.value for w in at.warning] == [line]
    assert not [h for h in at.subheader if h.value.startswith("Run #")]  # no run is drawn


@pytest.mark.parametrize("page", list(LABS))
def test_a_link_to_no_run_of_this_lab_says_so_in_one_line(page):
    prune = seed_pruning()
    kernel = seed_kernel(prune)
    gone = seed_pruning()
    repo.delete_run(gone)

    _says_only(_open(page, "abc"), "`run=abc` in this address is not a run id (a whole number)")
    _says_only(_open(page, str(gone)), f"run #{gone} does not exist (it may have been deleted)")
    other, other_page = (kernel, "kernels") if page == "pruning" else (prune, "pruning")
    _says_only(_open(page, str(other)), f"run #{other} is {LABS[other_page]}, not {LABS[page]}: "
                                        f"[open it in its lab]({other_page}?run={other})")


def test_an_id_too_long_for_the_store_is_not_a_run_id():
    _says_only(_open("pruning", "9" * 30), f"`run={'9' * 30}` in this address is not a run id (a whole number)")


def test_a_run_page_links_to_itself():
    # seeded: accuracy 0.95 - 0.5 s at five sparsities; no views artifact, so curve + heatmap only
    run_id = seed_pruning()
    at = _open("pruning", str(run_id))
    assert not at.exception
    assert [h.value for h in at.subheader if h.value.startswith("Run #")] == [f"Run #{run_id}"]
    # AppTest has no browser URL, so the link is relative to the page: pruning?run=ID
    assert any(f"[Link to this run](pruning?run={run_id})" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 2


def test_a_page_reached_without_its_parameters_reopens_its_last_run():
    run_id = seed_pruning()
    at = _open("pruning", str(run_id))
    at.query_params.clear()  # what switching pages in the sidebar does to the URL
    at.run()
    assert at.query_params == {"run": str(run_id)}  # the URL names it again: a reload keeps it
    assert [h.value for h in at.subheader if h.value.startswith("Run #")] == [f"Run #{run_id}"]
    repo.delete_run(run_id)
    at.query_params.clear()
    at.run()
    _says_only(at, f"run #{run_id} does not exist (it may have been deleted)")
    at.query_params.clear()
    at.run()  # said once: the run is forgotten
    assert not at.warning and at.query_params == {}
