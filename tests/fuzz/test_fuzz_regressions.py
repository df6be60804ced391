"""Every input that once broke a reader (tests/fuzz/regressions/) still reads to entries or problems."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.corpus import PASSWORD
from tests.fuzz.invariant import REGRESSIONS, read, violations

CASES = sorted(p for p in REGRESSIONS.iterdir() if p.suffix[1:] in ("pem", "der", "pkcs12", "jks", "jceks"))


def test_there_are_regression_cases() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
@pytest.mark.parametrize("store_type", ["configured", "auto"])
def test_regression_input(path: Path, store_type: str) -> None:
    data = path.read_bytes()
    kind = path.suffix[1:]
    out = read(kind if store_type == "configured" else "auto", data, PASSWORD, path=str(path))
    assert violations(kind, data, out) == []
    assert out.entries or out.problems or out.error is not None
