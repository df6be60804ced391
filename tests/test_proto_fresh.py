"""The committed stubs in proto/certfleet/v1 must be what proto/generate.py makes now."""
from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
GENERATED = ROOT / "proto" / "certfleet" / "v1"


def test_committed_stubs_are_fresh(tmp_path: pathlib.Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    fresh = {p.name: p.read_text() for p in (tmp_path / "certfleet" / "v1").iterdir() if p.suffix in (".py", ".pyi")}
    assert fresh, "generate.py produced nothing"
    committed = {p.name: p.read_text() for p in GENERATED.iterdir()
                 if p.suffix in (".py", ".pyi") and p.name != "__init__.py"}
    stale = sorted(name for name in fresh if committed.get(name) != fresh[name])
    extra = sorted(set(committed) - set(fresh))
    assert not stale and not extra, (
        f"stale generated stubs {stale}, leftovers {extra}: run `python proto/generate.py` and commit the result"
    )


def test_stubs_import_as_certfleet_v1() -> None:
    from certfleet.v1 import admin_pb2_grpc, agent_pb2, common_pb2

    assert agent_pb2.DESCRIPTOR.package == "certfleet.v1"
    assert hasattr(admin_pb2_grpc, "AdminServiceStub")
    assert common_pb2.KEY_MATCH_MATCHES == 2
