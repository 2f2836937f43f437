"""Drawing a digit on the Explanations page: the canvas picture becomes the digits model's 8x8
input as scikit-learn's digits were made (ink per cell, 0..16), the preview and Clear follow it,
and the gallery of test digits picks a row. The canvas component cannot be driven by AppTest, so
the tests set the drawing's 8x8 input in session state (`DRAWN`), where the canvas puts it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from db import repo
from sparsity_core.reports import digits

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "explain.py")
WHITE = np.full((192, 192, 4), 255, dtype=np.uint8)


def drawn_keys(node) -> set[str]:
    """Keys of every element drawn under `node` (the canvas shows in AppTest as an unknown element)."""
    children = list(getattr(node, "children", {}).values())
    return {k for c in children for k in ({getattr(c, "key", None)} | drawn_keys(c)) if k}


def test_a_full_cell_reads_16_an_empty_one_0_and_a_half_inked_one_8():
    canvas = WHITE.copy()
    canvas[0:24, 0:24, :3] = 0  # cell (0, 0): all black
    canvas[0:24, 24:36, :3] = 0  # cell (0, 1): its left half black
    image = digits.downsample(digits.ink(canvas))
    assert (len(image), len(image[0])) == (8, 8)
    assert image[0][:3] == [16.0, 8.0, 0.0]
    assert sum(map(sum, image)) == 24.0  # nothing else has ink


def test_transparent_pixels_are_paper_and_grey_is_half_ink():
    canvas = np.zeros((192, 192, 4), dtype=np.uint8)  # transparent black: no ink
    canvas[24:48, 0:24] = [0, 0, 0, 255]
    canvas[24:48, 24:48] = [0, 0, 0, 128]  # half-transparent black on white reads ~half ink
    image = digits.downsample(digits.ink(canvas))
    assert image[0][0] == 0.0 and image[1][0] == 16.0 and abs(image[1][1] - 8.0) < 0.1


def test_a_canvas_drawn_at_another_pixel_ratio_reads_the_same():
    canvas = np.full((288, 288, 4), 255, dtype=np.uint8)  # 192 px at a device pixel ratio of 1.5
    canvas[0:36, 0:36, :3] = 0
    assert digits.drawing_input(canvas)[0][:2] == [16.0, 0.0]


def test_a_blank_canvas_is_no_input():
    assert digits.drawing_input(WHITE) is None and digits.drawing_input(None) is None


def test_a_picture_is_black_ink_on_white_in_sharp_squares():
    pic = digits.picture([[16] + [0] * 7] + [[8] * 8] * 7, scale=3)
    assert pic.shape == (26, 26) and pic.dtype == np.uint8  # 8 x 3 pixels and a 1-pixel frame
    assert pic[0, 0] == pic[0, 5] == pic[25, 25] == digits.FRAME
    assert pic[1, 1] == pic[3, 3] == 0 and pic[1, 4] == 255 and pic[4, 1] == 128


def test_the_gallery_shows_the_first_test_digit_of_each_class():
    items = digits.gallery()
    assert [label for _, label, _ in items] == [str(d) for d in range(10)]
    index, label, image = items[3]
    assert image.shape == (8, 8) and 0 <= image.min() and image.max() <= 16
    assert all(i != index for i, _, _ in items[:3])


def test_a_gallery_button_sets_the_test_row_that_is_explained():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    index, label, _ = digits.gallery()[4]
    button = at.button(key=f"e_pick_{index}")
    assert button.label == label == "4"
    button.click().run()
    assert at.number_input(key="e_index").value == index
    at.button(key="e_submit").click().run()
    (run,) = repo.list_runs(kind="explain")
    assert run.spec["test_index"] == index and run.spec.get("image") is None


def test_a_drawing_is_sent_as_the_spec_image_and_a_blank_canvas_is_refused():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.radio(key="e_mode").set_value("draw a digit").run()
    at.button(key="e_submit").click().run()
    assert any(e.value == "the canvas is blank: draw a digit first" for e in at.error)
    assert repo.list_runs() == []
    drawn = [[0.0] * 8 for _ in range(8)]
    drawn[2][3], drawn[5][4] = 16.0, 8.0
    at.session_state["e_drawn"] = drawn  # what the canvas puts there once a stroke is drawn
    at.button(key="e_submit").click().run()
    (run,) = repo.list_runs(kind="explain")
    assert run.spec["image"] == drawn
    assert at.query_params == {"run": str(run.id)}


def test_clear_empties_the_drawing_and_gives_a_fresh_canvas():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.radio(key="e_mode").set_value("draw a digit").run()
    at.session_state["e_drawn"] = [[16.0] * 8] * 8
    at.run()
    before = at.session_state["e_canvas_n"]
    assert f"e_canvas_{before}" in drawn_keys(at._tree)
    at.button(key="e_clear").click().run()
    assert not at.exception
    assert at.session_state["e_drawn"] is None
    # a canvas under a new key: the component starts empty, the old drawing is gone from the page
    canvases = {k for k in drawn_keys(at._tree) if k.startswith("e_canvas_")}
    assert canvases == {f"e_canvas_{before + 1}"}


def test_the_page_with_its_gallery_and_canvas_loads_no_torch():
    code = f"""
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({PAGE!r}, default_timeout=60).run()
shown = len([b for b in at.button if b.key.startswith("e_pick_")])
at.radio(key="e_mode").set_value("draw a digit").run()
print(json.dumps({{"errors": [e.message for e in at.exception], "gallery": shown,
                  "heavy": [m for m in ("torch", "transformers") if m in sys.modules]}}))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"errors": [], "gallery": 10, "heavy": []}
