"""Run name and notes are editable on the Runs page and land in the store (shown by compare,
the HTML report and bundles)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.reports.seed import seed_pruning

ROOT = Path(__file__).resolve().parents[2]


def test_edit_name_and_notes_on_the_runs_page():
    run_id = seed_pruning("magnitude", name="before")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    name = next(w for w in at.text_input if w.label == "Name")
    notes = next(w for w in at.text_area if w.label == "Notes")
    assert name.value == "before"
    name.input("after <b>bold</b>")
    notes.input("tried global scope\nsecond line")
    next(b for b in at.button if b.label == "Save name and notes").click().run()
    assert not at.exception
    run = repo.get_run(run_id)
    assert (run.name, run.notes) == ("after <b>bold</b>", "tried global scope\nsecond line")
