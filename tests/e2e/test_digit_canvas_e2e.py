"""A person draws a digit with the mouse on the Explanations page's canvas and clicks Explain: the
run is queued with the drawing as its 8x8 image (no worker: the stored spec is what is checked)."""

import re

from db import repo


def test_a_stroke_drawn_with_the_mouse_is_queued_as_the_image(tmp_path, shared_cache, app_server, page, monkeypatch):
    home = tmp_path / "canvas"
    home.mkdir()
    with app_server(home, shared_cache, worker=False) as app:
        monkeypatch.setenv("SPARSITY_HOME", str(app.home))
        monkeypatch.setenv("SPARSITY_DB_URL", app.db_url)
        page.goto(f"{app.url}/explain")
        page.get_by_text("draw a digit", exact=True).click()
        page.locator(".st-key-e_clear button").wait_for()  # the drawing panel is up (its Clear button)
        page.wait_for_timeout(1000)  # and done rerunning: a canvas remounted mid-stroke would drop it
        pad = page.locator(".canvas-root canvas").last  # fabric's top canvas takes the pointer
        box = pad.bounding_box()
        x, y, side = box["x"], box["y"], box["width"]
        # the pointer rests on the canvas first, as a hand's does: the canvas drops a stroke that starts
        # with the very first pointer event it sees (measured: 0 ink pixels without this, 2662 with)
        page.mouse.move(x + side / 2, y + side / 2)
        page.wait_for_timeout(500)
        # a "1": one vertical stroke down the middle of column 3 of the 8 (pixels 72-96 of 192): the
        # 22-pixel pen covers pixels 73-95
        page.mouse.move(x + side * 84 / 192, y + side * 0.15)
        page.mouse.down()
        page.mouse.move(x + side * 84 / 192, y + side * 0.85, steps=20)
        page.mouse.up()
        page.wait_for_timeout(1500)  # the canvas sends its picture on mouse up; the page reruns with it
        page.get_by_role("button", name="Explain", exact=True).click()
        page.get_by_text(re.compile(r"Queued run #\d+")).wait_for()
        (run,) = repo.list_runs(kind="explain")
        image = run.spec["image"]
        assert len(image) == 8 and all(len(row) == 8 for row in image)
        inked = {(r, c) for r in range(8) for c in range(8) if image[r][c] > 0}
        assert {c for _, c in inked} == {3}  # the column the stroke went down, and no other
        assert max(max(row) for row in image) >= 13  # 22 of the cell's 24 pixel columns inked: 14.7
        assert len({r for r, _ in inked}) >= 6  # from near the top to near the bottom
