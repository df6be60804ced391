"""The agent's shape, read from its source (ast, nothing is imported or run).

- no import circles among the agent's modules, function-level imports included;
- the wire (``certfleet.v1``) is imported only by the door, ``agent/transport/``;
- the agent never imports the collector;
- a function-level import of the agent's own module says why, in a comment on its line or
  the line above (an optional dependency, start-up time, Windows-only code);
- no module over 500 lines.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agent"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for p in AGENT.rglob("*.py"):
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


def test_no_import_circles_in_the_agent() -> None:
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


def test_the_wire_is_imported_only_at_the_door_and_the_collector_never() -> None:
    wire, collector = [], []
    for mod, path in MODULES.items():
        for name, _, _ in _imports(mod, path):
            if name == "certfleet" or name.startswith("certfleet.v1"):
                if not mod.startswith("agent.transport."):
                    wire.append(mod)
            if name == "collector" or name.startswith("collector."):
                collector.append(mod)
    assert sorted(set(wire)) == [] and sorted(set(collector)) == []


def test_function_level_imports_of_the_agent_say_why() -> None:
    silent = []
    for mod, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for name, node, in_function in _imports(mod, path):
            if not in_function or not (name == "agent" or name.startswith("agent.")):
                continue
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if "#" not in here and not above.startswith("#"):
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert sorted(set(silent)) == []


def test_no_module_over_500_lines() -> None:
    big = {str(p.relative_to(ROOT)): n for p in MODULES.values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}
