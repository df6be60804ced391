"""The registry's room rules, read from its source (ast, nothing imported or run): what it may
import, that no store imports the facade back, that the table modules build on models/base.py
only, and that its modules import each other without circles (function-level imports included)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "collector" / "registry"
FACADE = "collector.registry.repository"
#: what registry modules may import of the project (besides the registry itself)
ALLOWED = ("collector.domain", "collector.errors")


def _modules() -> dict[str, Path]:
    out = {}
    for p in REGISTRY.rglob("*.py"):
        if "migrations" in p.relative_to(REGISTRY).parts:
            continue
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


MODULES = _modules()
IMPORTS = {m: _imports(p) for m, p in MODULES.items()}


def _project(name: str) -> bool:
    return name.split(".")[0] in ("collector", "agent", "certfleet")


def _resolve(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def test_the_registry_imports_only_the_pure_domain_and_errors() -> None:
    wrong = {m: sorted(n for n in names if _project(n) and not n.startswith("collector.registry")
                       and not n.startswith(ALLOWED))
             for m, names in IMPORTS.items()}
    assert {m: n for m, n in wrong.items() if n} == {}


def test_no_store_imports_the_facade() -> None:
    importers = {m for m, names in IMPORTS.items() if FACADE in names}
    assert importers <= {"collector.registry"}     # the package re-exports Registry


def test_table_modules_build_on_base_only() -> None:
    for m, names in IMPORTS.items():
        if m.startswith("collector.registry.models.") and m != "collector.registry.models.base":
            assert {n for n in names if _project(n)} <= {"collector.registry.models.base",
                                                         *(f"collector.registry.models.base.{x}" for x in
                                                           ("Base", "BigId", "Blob", "Json", "UTCDateTime"))}, m


def test_no_import_circles_in_the_registry() -> None:
    graph = {m: {r for n in names if (r := _resolve(n)) and r != m and not m.startswith(r + ".")}
             for m, names in IMPORTS.items()}
    circles = []
    state: dict[str, int] = {}          # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                circles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert circles == []
