"""Fixtures for the high-availability tests: several "collectors" (each its own Registry, engine and
KEK file copy) on one database -- a PostgreSQL schema of the test's own, or SQLite -- and
internal CAs whose state is in that registry (collector/issuers/ca_registry.py)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from collector.issuers.ca_registry import SharedCAState
from collector.issuers.internal_ca import InternalCA
from collector.pki.keywrap import KeyWrapper, generate_kek_file, read_kek_file
from collector.registry import Registry
from tests.helpers.registry_backends import _pg_schema_url, db_url, pg_admin  # noqa: F401 - fixtures

__all__ = ["db_url", "pg_admin", "pg_url", "Collector", "collectors"]


@pytest.fixture
def pg_url(pg_admin) -> Iterator[str]:  # noqa: ANN001, F811
    """A new PostgreSQL schema (the machine's server, never reconfigured)."""
    yield from _pg_schema_url(pg_admin)


@dataclass
class Collector:
    name: str
    data_dir: Path
    registry: Registry
    wrapper: KeyWrapper

    def ca(self, issuer: str = "internal", **kw) -> InternalCA:  # noqa: ANN003
        shared = SharedCAState(self.registry.issuer_state, self.wrapper, issuer, self.name,
                               self.data_dir / "issuers" / issuer)
        return InternalCA(issuer, self.data_dir / "issuers" / issuer, shared=shared, **kw)


@pytest.fixture
def collectors(tmp_path: Path) -> Iterator[Callable[[str, int], list[Collector]]]:
    """``collectors(url, n)``: n collectors on the database at ``url``, sharing one KEK (copied, 0600)."""
    opened: list[Registry] = []
    kek = tmp_path / "kek.master"
    generate_kek_file(kek)

    def make(url: str, n: int = 2) -> list[Collector]:
        out = []
        for i in range(n):
            d = tmp_path / f"collector-{len(opened)}"
            d.mkdir()
            shutil.copy(kek, d / "kek")
            (d / "kek").chmod(0o600)
            reg = Registry.open(url)
            opened.append(reg)
            out.append(Collector(f"c{len(opened)}", d, reg, KeyWrapper(read_kek_file(d / "kek"))))
        return out

    yield make
    for r in opened:
        r.close()
