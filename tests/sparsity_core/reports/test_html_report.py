"""The HTML report: self-contained (plotly.js inlined, no network reference), every figure the
selection allows, user text escaped, and the export CLI around it."""

import json

from plotly.offline import get_plotlyjs

from db import repo
from sparsity_core import cli
from sparsity_core.reports import html_report
from sparsity_core.reports.loaders import load_selection
from sparsity_core.reports.seed import seed_kernel, seed_pruning

HOSTILE = "<script>alert(1)</script>"


def test_report_is_self_contained_and_escapes_user_text():
    a = seed_pruning("magnitude", name=HOSTILE)
    repo.update_run_text(a, notes="<img src=x onerror=alert(2)>")
    b = seed_pruning("wanda", slope=0.2)
    seed_kernel(a)
    page = html_report.render_html(load_selection([a, b]))
    assert HOSTILE not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script src" not in page and get_plotlyjs()[:500] in page  # inlined, not fetched
    assert page.count("Plotly.newPlot") == 5  # 2 curves, latency scatter, parallel, per-layer
    assert "accuracy against measured latency" in page and "digits" in page
    assert "plotly " + html_report.package_versions()["plotly"] in page


def test_cli_export_import_and_list(tmp_path, capsys, monkeypatch):
    a = seed_pruning("magnitude", name=HOSTILE)
    out = {s: tmp_path / f"out.{s}" for s in ("html", "json", "csv")}
    code = cli.main(["export", "--runs", str(a), "--html", str(out["html"]), "--json", str(out["json"]),
                     "--csv", str(out["csv"]), "--summary", "at", "--at", "0.5"])
    assert code == 0 and all(p.stat().st_size > 0 for p in out.values())
    assert "value at target sparsity 50%" in out["html"].read_text()
    capsys.readouterr()
    assert cli.main(["import", str(out["json"])]) == 0
    new_ids = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cli.main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["id"] for r in rows] == [*new_ids, a] and rows[0]["name"] == HOSTILE


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    a = seed_pruning("magnitude")
    target = tmp_path / "r.html"
    assert cli.main(["export", "--runs", f"{a},99", "--html", str(target)]) == 2
    assert capsys.readouterr().err.strip() == "error: no run 99 in the store" and not target.exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "sparsity-lab-bundle", "version": 1, "exported_at": "2026-01-01",
                               "runs": [{"id": "seven"}]}))
    assert cli.main(["import", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid bundle at runs.0.id") and "\n" not in err
    assert [r.id for r in repo.list_runs()] == [a]
