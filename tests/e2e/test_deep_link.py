"""A shared link is often the first request a fresh server gets: it must open inside the routed
app (sidebar with the store, lab names), not as Streamlit's legacy pages-folder app."""


def test_first_visit_by_deep_link_is_routed_by_app(tmp_path, shared_cache, app_server, page):
    home = tmp_path / "fresh"
    home.mkdir()
    with app_server(home, shared_cache, worker=False) as app:
        page.goto(f"{app.url}/runs")
        page.get_by_text("No runs yet: start one from a lab page.").wait_for()
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_text("Compare").wait_for()  # the titles app.py gives, not file names
        assert nav.get_by_text("ui", exact=True).count() == 0  # pages/_ui.py is not a page
        page.get_by_text("Store", exact=True).wait_for()  # app.py's sidebar ran
