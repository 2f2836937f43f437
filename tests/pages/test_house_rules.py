"""Rules of ARCHITECTURE.md that a look at the source can check."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "transformers"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_pages_never_import_torch_or_transformers():
    files = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
    assert len(files) >= 3
    offenders = {f.name: sorted(imported_roots(f) & HEAVY) for f in files if imported_roots(f) & HEAVY}
    assert offenders == {}


def test_the_check_itself_sees_an_import(tmp_path):
    bad = tmp_path / "bad_page.py"
    bad.write_text("import streamlit as st\nfrom torch import nn\n")
    assert imported_roots(bad) & HEAVY == {"torch"}


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
