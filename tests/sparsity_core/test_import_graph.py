"""The import graph between sparsity_core's packages has no cycle, and compute never reaches the store.

Every import counts, including those inside function bodies: a deferred import hides a cycle, it
does not remove it. Packages are the folders of sparsity_core (and its top-level modules); `db` is
the store.
"""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPUTE = {"zoo", "data", "pruning", "sae", "explain", "kernels", "training", "specs", "catalog"}
# the only module of `jobs` a compute module may import: the context it runs with (no store in it)
CONTEXT = "sparsity_core.jobs.context"


def _unit(module: str) -> str | None:
    """The graph node of a module: `db`, a package of sparsity_core, or `jobs.context` on its own
    (the one part of `jobs` compute modules run with)."""
    parts = module.split(".")
    if module == CONTEXT or module.startswith(CONTEXT + "."):
        return "jobs.context"
    if parts[0] == "db":
        return "db"
    if parts[0] != "sparsity_core" or len(parts) == 1:
        return None
    return parts[1]


def imports() -> list[tuple[str, str, str]]:
    """(importing file, its unit, imported module) for every absolute import under sparsity_core."""
    out = []
    for path in sorted((ROOT / "sparsity_core").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        unit = _unit(module)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            out += [(str(path.relative_to(ROOT)), unit, n) for n in names]
    return out


def package_graph() -> dict[str, set[str]]:
    graph = defaultdict(set)
    for _, src, target in imports():
        dst = _unit(target)
        if dst and src and dst != src:
            graph[src].add(dst)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_cycle_between_packages():
    assert find_cycle(package_graph()) == []


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_compute_modules_never_import_the_store_or_the_jobs_layer():
    offenders = sorted({f"{path}: {target}" for path, unit, target in imports()
                        if unit in COMPUTE | {"jobs.context"} and _unit(target) in ("db", "jobs")})
    assert offenders == []


def test_nothing_imports_the_old_progress_module():
    assert not (ROOT / "sparsity_core" / "progress.py").exists()
    assert [p for p, _, t in imports() if t.startswith("sparsity_core.progress")] == []
