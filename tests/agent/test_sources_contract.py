"""The contract every location source keeps, one suite subclassed once per source.

A :class:`~agent.sources.base.LocationSource` (agent/sources/) must:

- name itself and the store types it owns; every location it reports is of one of them;
- report what is there: each location's fingerprint is the SHA-256 of its certificate, every
  problem has a reason code of agent.inventory.REASONS, and the host's labels are on its locations;
- give the same digests for the same state twice in a row (a delta report does not flap);
- when it cannot look at all, raise SourceError with a reason (the report then keeps what it
  last reported), never another exception.

The endpoint source runs for real on loopback (openssl s_server); the Windows store source runs
over its boundary fake (tests/helpers/agent_windows_fakes.py), and over the real boundary, which
refuses off Windows, for "cannot look". Adding a source: a subclass here.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from agent.config import load_config
from agent.inventory import REASONS
from agent.sources.base import LocationSource, SourceError
from agent.sources.endpoints import EndpointSource
from agent.sources.windows_store import WindowsStoreSource
from agent.state import key_str
from agent.windows.api import RealWindowsApi
from agent.windows.settings import WindowsSettings

from tests.helpers.agent_stores import write_config
from tests.helpers.agent_windows_fakes import FakeWindowsApi, Pki
from tests.helpers.tls_servers import SServer, TestCA, loopback_block, site_files

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
LABELS = {"environment": "contract"}


@dataclass
class Scene:
    source: LocationSource               # looking at a host where ``expected`` is
    expected: set[str]                   # fingerprints it must report
    blind: LocationSource                # the same source where it cannot look at all
    cleanup: list = field(default_factory=list)   # type: ignore[type-arg]


class LocationSourceContract:
    """Subclass with ``make(tmp_path) -> Scene``."""

    __test__ = False

    def make(self, tmp_path: Path) -> Scene:
        raise NotImplementedError

    @pytest.fixture
    def scene(self, tmp_path: Path) -> Iterator[Scene]:
        s = self.make(tmp_path)
        try:
            yield s
        finally:
            for stop in s.cleanup:
                stop()

    def test_it_names_itself_and_the_store_types_it_owns(self, scene: Scene) -> None:
        src = scene.source
        assert isinstance(src.name, str) and src.name
        assert isinstance(src.store_types, frozenset) and src.store_types
        assert all(isinstance(t, str) and t for t in src.store_types)

    def test_it_reports_what_is_there(self, scene: Scene) -> None:
        result = scene.source.collect(NOW)
        assert scene.expected <= {e.fingerprint for e in result.entries}
        for e in result.entries:
            assert e.key.store_type in scene.source.store_types
            assert e.der and e.fingerprint == hashlib.sha256(e.der).hexdigest()
            assert LABELS.items() <= dict(e.labels).items()
        assert all(p.reason in REASONS and p.message for p in result.problems)

    def test_the_same_state_gives_the_same_digests(self, scene: Scene) -> None:
        first = {key_str(e.key): e.digest() for e in scene.source.collect(NOW).entries}
        again = {key_str(e.key): e.digest() for e in scene.source.collect(NOW).entries}
        assert first and first == again

    def test_a_source_that_cannot_look_says_why(self, scene: Scene) -> None:
        with pytest.raises(SourceError) as e:
            scene.blind.collect(NOW)
        assert e.value.reason in REASONS and e.value.message


class TestEndpointSource(LocationSourceContract):
    """TLS endpoints, for real: a configured target served by openssl s_server on a loopback address."""

    __test__ = True

    def make(self, tmp_path: Path) -> Scene:
        if shutil.which("openssl") is None:
            pytest.skip("needs openssl (Debian package: openssl)")
        site = site_files(tmp_path / "site", TestCA("Certfleet Source Contract"), ("www.example.test",))
        a, b, c, d = loopback_block(17).split(".")
        ip = f"{a}.{b}.{c}.{int(d) + 3}"
        server = SServer(ip, site)
        agent = 'labels = { environment = "contract" }'
        cfg = load_config(write_config(tmp_path / "cfg", f'[endpoints]\nlisteners = false\ntimeout = 3\n'
                                                         f'targets = ["{ip}:{server.port}"]\n', agent=agent))
        blind_cfg = load_config(write_config(tmp_path / "blind", "[endpoints]\nlisteners = true\n", agent=agent))

        def no_socket_table():  # noqa: ANN202 - psutil's error when /proc/net cannot be read
            raise PermissionError("no access to /proc/net/tcp")
        return Scene(EndpointSource(cfg, names=lambda: []), {site.fingerprint},
                     EndpointSource(blind_cfg, listeners=no_socket_table, names=lambda: []), [server.stop])


class TestWindowsStoreSource(LocationSourceContract):
    """The Windows certificate store over its boundary fake; the real boundary, off Windows, cannot look."""

    __test__ = True

    def make(self, tmp_path: Path) -> Scene:
        pki = Pki.make()
        api = FakeWindowsApi()
        key, der = pki.leaf(["www.example.test"])
        thumb = api.add_cert("My", der, key, pki.chain_ders, friendly_name="www")
        api.bind("ipport", "0.0.0.0", 443, thumb)
        settings = WindowsSettings(enabled=True)
        return Scene(WindowsStoreSource(settings, api, LABELS), {hashlib.sha256(der).hexdigest()},
                     WindowsStoreSource(settings, RealWindowsApi(), LABELS))


def test_every_source_the_service_can_build_has_a_contract_suite() -> None:
    import agent.service

    built = {v for v in vars(agent.service).values()
             if isinstance(v, type) and v.__module__.startswith("agent.sources.") and v.__module__ != "agent.sources.base"}
    assert built == {EndpointSource, WindowsStoreSource}
