"""The layering the README's "Where things live" states, checked on the source.

Edges are the imports a module runs when it is imported (module level, outside `if TYPE_CHECKING:`)
plus, for the layering rules, the imports inside functions too: a lazy import still couples.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jobengine", "jobtui")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The module of ours an imported name lives in (`jobengine.keys`, or a package)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, *, module_level_only: bool) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(filter(None, (_resolve(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:  # `from pkg import module` imports the module
                    target = _resolve(f"{base}.{alias.name}") or _resolve(base)
                    if target:
                        found.add(target)
            if module_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list) and children and isinstance(children[0], ast.stmt | ast.excepthandler):
                    visit([c for c in children if isinstance(c, ast.stmt)] +
                          [s for h in children if isinstance(h, ast.ExceptHandler) for s in h.body])

    visit(tree.body)
    found.discard(module)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_graph_is_read_from_the_source() -> None:
    """Guard against a walker that finds nothing: known edges are present."""
    assert "jobengine.history.events" in _imports("jobengine.runtime.bookkeeping", module_level_only=True)
    assert "jobengine.keys" in _imports("jobengine.monitor", module_level_only=True)
    assert "jobengine.runtime.fastworker" in _imports("jobengine.engine", module_level_only=False)
    assert "jobengine.runtime.fastworker" not in _imports("jobengine.engine", module_level_only=True)


def test_no_import_cycles() -> None:
    graph = {m: _imports(m, module_level_only=True) for m in MODULES}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_jobengine_never_imports_jobtui() -> None:
    offenders = [(m, t) for m in MODULES if m.startswith("jobengine")
                 for t in _imports(m, module_level_only=False) if t.startswith("jobtui")]
    assert offenders == []


def test_widgets_do_no_io() -> None:
    """Widgets render what they are given: no Redis, PostgreSQL or engine parts below the models."""
    allowed = ("jobengine.models", "jobengine.types", "jobtui.widgets", "jobtui.format", "jobtui.actions")
    offenders = []
    for module, path in MODULES.items():
        if not module.startswith("jobtui.widgets"):
            continue
        ours = [t for t in _imports(module, module_level_only=False) if not t.startswith(allowed)]
        text = path.read_text(encoding="utf-8")
        foreign = [lib for lib in ("redis", "psycopg", "rq") if f"import {lib}" in text or f"from {lib}" in text]
        if ours or foreign:
            offenders.append((module, ours, foreign))
    assert offenders == []


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_declared() -> None:
    """What jobengine and jobtui import (lazily too) is in pyproject's dependencies, not merely
    pulled in by one of them. pytest: only jobengine.testing, the pytest plugin, imports it."""
    tops: set[str] = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops.update(a.name.partition(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.partition(".")[0])
    tops -= set(sys.stdlib_module_names) | set(PACKAGES) | {"pytest"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_normalized(re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    distributions = packages_distributions()
    assert "rq" in tops and "textual" in tops  # the walk found imports
    missing = sorted(t for t in tops if not declared & {_normalized(d) for d in distributions.get(t, [t])})
    assert missing == []


def test_rq_keys_are_spelled_only_in_keys_py() -> None:
    """RQ's key names come from jobengine.keys (built on RQ's own templates): no other module has
    a string literal starting `rq:` (Lua scripts get their keys and prefixes passed in)."""
    offenders = []
    for module, path in MODULES.items():
        if module == "jobengine.keys":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("rq:"):
                offenders.append(f"{module}:{node.lineno}: {node.value[:40]!r}")
    assert offenders == []
