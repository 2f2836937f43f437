"""Rules of ARCHITECTURE.md that a look at the source, or a page rendered in a fresh interpreter, can check."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparsity_core.reports.seed import seed_pruning

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers")
PAGES = sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_"))
# what a page may use of the core: the catalog, the specs, submit/cancel, the report builders
PAGE_CORE = {"catalog", "specs", "jobs", "reports"}
FIRST_RENDER = f"""
import json, sys
from streamlit.testing.v1 import AppTest
heavy = lambda: [m for m in {HEAVY!r} if m in sys.modules]
before = heavy()
at = AppTest.from_file(sys.argv[1], default_timeout=60)
if len(sys.argv) > 2:
    at.switch_page(sys.argv[2])  # the app routes to that page on its first run, as a link would
at.run()
if len(sys.argv) > 3:
    at.button(key=sys.argv[3]).click().run()  # submit with the page's defaults
print(json.dumps({{"before": before, "errors": [e.message for e in at.exception], "after": heavy(),
                  "said": [s.value for s in at.success]}}))
"""


def fresh(code: str, *args: str):
    """Run `code` in a new interpreter (with this test's store in its environment); its last line as JSON."""
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("page", PAGES)
def test_a_page_renders_without_loading_torch_or_transformers(page):
    seed_pruning("magnitude")  # so the pages draw their lists of runs too
    assert fresh(FIRST_RENDER, str(ROOT / "app.py"), page) == {"before": [], "errors": [], "after": [], "said": []}


@pytest.mark.parametrize("page, button", [("pages/pruning.py", "p_submit"), ("pages/sae.py", "sae_submit"),
                                          ("pages/explain.py", "e_submit"), ("pages/kernels.py", "k_submit")])
def test_submitting_a_bundled_model_loads_no_torch(page, button):
    """The checks at submit read the catalog's metadata: a click queues the run, torch stays out."""
    seen = fresh(FIRST_RENDER, str(ROOT / "app.py"), page, button)
    assert (seen["errors"], seen["after"]) == ([], [])
    assert len(seen["said"]) == 1 and seen["said"][0].startswith("Queued run #")


@pytest.mark.parametrize("module", ["sparsity_core.specs", "sparsity_core.catalog"])
def test_specs_and_catalog_load_no_torch(module):
    code = f"import json, sys, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    assert fresh(code) == []


def test_the_fresh_check_sees_torch(tmp_path):
    page = tmp_path / "heavy_page.py"
    page.write_text("import streamlit as st\n\n\ndef draw():\n    import torch\n    st.write(torch.__version__)\n\n\ndraw()\n")
    assert fresh(FIRST_RENDER, str(page))["after"] == ["torch"]


def core_imports(path: Path) -> set[str]:
    """The `sparsity_core` packages a file imports anywhere in it, function bodies included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "sparsity_core" else [node.module]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("sparsity_core.")}
    return found


def test_pages_use_only_the_catalog_specs_jobs_and_reports_of_the_core():
    files = [ROOT / "app.py", *(ROOT / "pages").glob("*.py")]
    offenders = {f.name: sorted(core_imports(f) - PAGE_CORE) for f in files}
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_the_core_import_check_sees_a_lab_inside_a_function(tmp_path):
    page = tmp_path / "bad_page.py"
    page.write_text("from sparsity_core import jobs\n\n\ndef draw():\n    from sparsity_core.sae.compare import x\n")
    assert core_imports(page) == {"jobs", "sae"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_never_imports_streamlit():
    offenders = [str(f.relative_to(ROOT)) for f in (ROOT / "sparsity_core").rglob("*.py")
                 if "streamlit" in imported_roots(f)]
    assert offenders == []


def test_no_pickle_loading_in_code():
    offenders = []
    for f in [*(ROOT / "sparsity_core").rglob("*.py"), *(ROOT / "db").rglob("*.py"), *(ROOT / "pages").glob("*.py")]:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" \
                    and getattr(node.func.value, "id", None) in {"torch", "pickle"}:
                kwargs = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                if node.func.value.id == "pickle" or kwargs.get("weights_only") is not True:
                    offenders.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
