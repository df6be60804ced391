"""The admin CLI is a client in its own wing: it imports only the wire's client side, the config it
reads, the error tree, pure decisions and the reports' model and rendering -- never the registry,
the services, the servicers or the server (so ``certfleet`` runs without SQLAlchemy's weight). And
the report rendering it shares does not depend on the CLI. Read from the source (ast), and checked
once more by importing the CLI in a fresh interpreter."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = ROOT / "collector" / "cli"
# what the wing may import of the project: these modules and packages with everything in them, and
# the EXACT names (the version, the report catalogue -- not the report builders, which read the
# registry). The report codec (``from_parts``) is the one piece of the server's side the CLI reads:
# if it moves, name its new module in CODEC and the checks below let it, and only it, pass.
CODEC = "collector.api.report_codec"
ALLOWED = ("certfleet.v1", "certfleet.values", "collector.cli", "collector.config.client", "collector.config.core",
           "collector.errors", "collector.domain", "collector.reports.model", "collector.reports.text",
           "collector.reports.render", CODEC)
EXACT = ("collector", "collector.__version__", "collector.reports", "collector.reports.REPORTS")
NEVER = ("collector.registry", "collector.services", "collector.api", "collector.server", "collector.issuers",
         "agent")


def imports(path: pathlib.Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in ("collector", "certfleet", "agent")}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_wing_imports_only_what_a_client_may() -> None:
    files = sorted(CLI.rglob("*.py"))
    assert len(files) >= 15
    bad = {}
    for f in files:
        wrong = [m for m in imports(f)
                 if not within(m, (CODEC,)) and (within(m, NEVER) or not (m in EXACT or within(m, ALLOWED)))]
        if wrong:
            bad[str(f.relative_to(ROOT))] = sorted(wrong)
    assert bad == {}


def test_the_reports_rendering_does_not_depend_on_the_cli() -> None:
    for name in ("model.py", "render.py", "text.py"):
        found = imports(ROOT / "collector" / "reports" / name)
        assert not any(within(m, ("collector.cli",)) for m in found), (name, found)


def test_running_the_cli_loads_no_server_side_module() -> None:
    code = ("import sys, collector.cli.main as m; m.build_parser(); "
            "print('\\n'.join(sorted(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout.split()
    assert "collector.cli.main" in loaded and "collector.cli.netscan" in loaded
    server_side = NEVER + ("sqlalchemy", "alembic", "apscheduler")
    assert [m for m in loaded if within(m, server_side) and m != CODEC and not CODEC.startswith(m + ".")] == []
