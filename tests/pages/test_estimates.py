"""How long a run will take, on the lab pages: before launching, a line computed from similar runs
in the store (none without history: no made-up number); while running, the time left at the pace
so far beside the lab's stage text."""

from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import update
from streamlit.testing.v1 import AppTest

from db import repo
from db.engine import session
from db.models import Run
from pages._ui import _estimate_text, progress_text
from sparsity_core.catalog import METHODS, MODELS
from sparsity_core.jobs import submit

PAGES = Path(__file__).resolve().parents[2] / "pages"


def _finished(spec: dict, seconds: float) -> int:
    """A succeeded run of `spec` that took `seconds`."""
    run_id = submit(spec, status="running", worker="test")
    repo.finish_run(run_id, "succeeded")
    done = repo.get_run(run_id).finished_at
    with session() as s:
        s.execute(update(Run).where(Run.id == run_id).values(started_at=done - timedelta(seconds=seconds)))
        s.commit()
    return run_id


def _estimates(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("⏱️")]


def test_no_history_no_estimate():
    at = AppTest.from_file(str(PAGES / "explain.py"), default_timeout=60).run()
    assert not at.exception and _estimates(at) == []


def test_the_explain_page_shows_the_time_a_similar_run_took():
    _finished({"kind": "explain", "model": "digits-mlp"}, 40)  # captum on, labels flipped: as the page's defaults
    at = AppTest.from_file(str(PAGES / "explain.py"), default_timeout=60).run()
    assert _estimates(at) == ["⏱️ Expected time: about 40 s (1 similar run here)"]
    at.checkbox(key="e_captum").uncheck().run()  # without captum the past run is not similar
    assert _estimates(at) == []


def test_the_pruning_page_scales_by_the_number_of_targets():
    model, method = next(iter(MODELS)), next(iter(METHODS))  # the page's first choices
    _finished({"kind": "prune", "model": model, "method": method, "sparsities": [0.0, 0.5]}, 40)
    at = AppTest.from_file(str(PAGES / "pruning.py"), default_timeout=60).run()
    assert (at.selectbox(key="p_model").value, at.selectbox(key="p_method").value) == (model, method)
    assert at.text_input(key="p_sparsities").value == "0, 0.5, 0.7"  # 3 targets where the past run had 2
    assert _estimates(at) == ["⏱️ Expected time: about 60 s (1 similar run here, scaled by the number of targets)"]
    at.text_input(key="p_sparsities").set_value("0, oops").run()  # a spec that does not validate: no line
    assert not at.exception and _estimates(at) == []


def test_the_progress_line_adds_the_time_left_once_five_percent_is_done():
    start = datetime(2026, 1, 1, 12, 0, 0)
    run = SimpleNamespace(id=7, status="running", message="target 50%: pruning layer 3/36", started_at=start,
                          progress=0.25)
    # 10 s for the first quarter: 30 s for the other three
    assert progress_text(run, start + timedelta(seconds=10)) == \
        "run #7 running: target 50%: pruning layer 3/36 · about 30 s left"
    run.progress = 0.04
    assert progress_text(run, start + timedelta(seconds=10)) == "run #7 running: target 50%: pruning layer 3/36"
    queued = SimpleNamespace(id=8, status="queued", message=None, started_at=None, progress=0.0)
    assert progress_text(queued, start) == "run #8 queued: "


def test_the_sae_page_scales_by_the_token_budget():
    at = AppTest.from_file(str(PAGES / "sae.py"), default_timeout=60).run()
    at.button(key="sae_submit").click().run()  # the spec the page's defaults describe, queued (not finished)
    (sent,) = repo.list_runs(kind="sae")
    _finished({**sent.spec, "tokens": sent.spec["tokens"] // 2}, 20)  # half the tokens took 20 s
    _estimate_text.clear()  # the page's estimates are kept 30 s: the past run has just been added
    at.run()
    assert _estimates(at) == ["⏱️ Expected time: about 40 s (1 similar run here, scaled by the token budget)"]


def test_the_kernels_page_scales_by_sweep_points_and_repeats():
    at = AppTest.from_file(str(PAGES / "kernels.py"), default_timeout=60).run()
    at.number_input(key="k_repeats").set_value(20)
    at.button(key="k_submit").click().run()
    (sent,) = repo.list_runs(kind="kernel")
    _finished({**sent.spec, "repeats": 10}, 40)  # the same sweep with half the repeats took 40 s
    _estimate_text.clear()
    at.run()
    assert _estimates(at) == ["⏱️ Expected time: about 80 s (1 similar run here, scaled by sweep points x repeats)"]
