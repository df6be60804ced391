"""The product's shape, read from the source of ``agent/`` and ``collector/`` (ast, nothing is
imported or run). The properties of issue 10 and REDESIGN.md, kept:

- no import circles among the project's own modules, function-level imports included;
- the wire (``certfleet.v1``) is imported only at the doors: ``agent/transport/`` on the agent,
  ``collector/api/`` (servicers, convert, the report codec) on the collector's server side and
  ``collector/cli/`` (the admin CLI, a client of the admin API);
- the agent never imports the collector, the collector never imports the agent;
- a function-level import of the project's own module says why, in a comment on its line or
  above its block of imports (an optional dependency, start-up time, Windows-only code);
- no module over 500 lines;
- every package's ``__init__`` docstring says what the room holds.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "collector")
#: the only packages that may import certfleet.v1, and what each process must never import
DOORS = {"agent": ("agent.transport",), "collector": ("collector.api", "collector.cli")}
NEVER = {"agent": "collector", "collector": "agent"}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for p in (q for pkg in PACKAGES for q in (ROOT / pkg).rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(mod: str, path: Path) -> list[tuple[str, ast.AST, bool]]:
    """(imported name, node, at function level) for every import of ``mod``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    out: list[tuple[str, ast.AST, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    anchor = base[: len(base) - (child.level - 1)] if child.level > 1 else base
                    prefix = ".".join(anchor + ([child.module] if child.module else []))
                else:
                    prefix = child.module or ""
                out.append((prefix, child, in_function))
                out.extend((f"{prefix}.{a.name}", child, in_function) for a in child.names)
            visit(child, nested)

    visit(tree, False)
    return out


def _resolve(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in MODULES.items():
        for name, _, _ in _imports(mod, path):
            r = _resolve(name)
            if r and r != mod and not mod.startswith(r + "."):
                graph[mod].add(r)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for m in MODULES:
        if m not in index:
            visit(m)
    assert circles == []


def _within(mod: str, packages: tuple[str, ...]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in packages)


def test_the_wire_is_imported_only_at_the_doors_and_agent_and_collector_never_meet() -> None:
    wire, crossing = [], []
    for mod, path in MODULES.items():
        top = mod.split(".")[0]
        for name, _, _ in _imports(mod, path):
            if (name == "certfleet" or name.startswith("certfleet.v1")) and not _within(mod, DOORS[top]):
                wire.append(mod)
            if _within(name, (NEVER[top],)):
                crossing.append(mod)
    assert sorted(set(wire)) == [] and sorted(set(crossing)) == []


def test_function_level_imports_of_the_project_say_why() -> None:
    silent = []
    for mod, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for name, node, in_function in _imports(mod, path):
            if not in_function or not _within(name, PACKAGES):
                continue
            here = lines[node.lineno - 1]
            i = node.lineno - 2          # the comment may head the block of imports this one is in
            while i >= 0 and lines[i].strip().startswith(("from ", "import ")) and "#" not in lines[i]:
                i -= 1
            above = lines[i].strip() if i >= 0 else ""
            if "#" not in here and not above.startswith("#"):
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert sorted(set(silent)) == []


def test_no_module_over_500_lines() -> None:
    big = {str(p.relative_to(ROOT)): n for p in MODULES.values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}


def test_every_package_says_what_its_room_holds() -> None:
    silent = []
    for mod, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if len(doc) < 40 or "TODO" in doc:
            silent.append(mod)
    assert silent == []
