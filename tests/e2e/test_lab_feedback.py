"""A person clicks Train with 512 latents per width, over the cap of 256: the SAE page says so
beside the Expansion box, says it queued nothing, and the store has no new run."""

import time

from db import repo


def test_expansion_over_the_cap_is_shown_beside_its_box(live_app, app_store, page):
    before = len(repo.list_runs())
    page.goto(f"{live_app.url}/sae")
    box = page.get_by_role("spinbutton", name="Expansion (latents = expansion x width)")
    box.fill("512")
    page.get_by_role("button", name="Train", exact=True).click()
    started = time.monotonic()
    page.get_by_text("Not queued: check expansion").wait_for()
    print(f"click to message: {time.monotonic() - started:.2f} s")
    # the message sits right below the box, above the next setting of its column
    message = page.get_by_text("Input should be less than or equal to 256").bounding_box()
    below = page.get_by_role("spinbutton", name="Penalty coefficient").bounding_box()
    above = box.bounding_box()
    assert above["y"] < message["y"] < below["y"] and abs(message["x"] - above["x"]) < 50
    assert len(repo.list_runs()) == before
