"""Installing into the Windows store: a fake at the boundary, real TLS handshakes for verification.

The fake http.sys (tests/helpers/agent_windows_fakes.FakeHttpSys) serves, on loopback addresses, the
certificate its binding table names at the moment of each handshake; the
install under test rebinds through the fake API and then proves, by real
handshakes (agent.probe), what is served.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.install import FAILED, ROLLED_BACK, VERIFIED
from agent.inventory import LocationKey
from agent.probe import probe
from agent.install.windows import BACKUP_FILE, WindowsInstallRequest, install_windows
from agent.windows.records import thumbprint_of
from agent.windows.settings import WindowsSettings
from tests.helpers.agent_windows_fakes import FakeHttpSys, FakeWindowsApi, Pki, free_port


@dataclass
class Scene:
    api: FakeWindowsApi
    server: FakeHttpSys
    ip: str                  # the IP:port binding's address
    sni_ip: str              # where the SNI binding is checked
    port: int
    old_der: bytes
    old_thumb: str
    other_thumb: str
    request: Callable[..., WindowsInstallRequest]

    @property
    def old_fp(self) -> str:
        return hashlib.sha256(self.old_der).hexdigest()

    def served(self, host: str, sni: str | None = None) -> str:
        return probe(host, self.port, sni, timeout=3).fingerprint

    def table(self) -> dict[str, str]:
        return {b.endpoint: b.certificate_hash for b in self.api.sslcerts}


@pytest.fixture
def scene(pki: Pki, loopback: Callable[[int], str]) -> Iterator[Scene]:
    api = FakeWindowsApi()
    old_key, old_der = pki.leaf(["www.example.test"])
    old_thumb = api.add_cert("My", old_der, old_key, pki.chain_ders, friendly_name="www (2025)")
    other_key, other_der = pki.leaf(["other.example.test"])
    other_thumb = api.add_cert("My", other_der, other_key, pki.chain_ders)
    ip, sni_ip = loopback(11), loopback(12)
    port = free_port(ip, (sni_ip,))
    api.bind("ipport", ip, port, old_thumb)
    api.bind("hostnameport", "www.example.test", port, old_thumb, store="My")
    api.bind("hostnameport", "other.example.test", port, other_thumb, store="My")
    server = FakeHttpSys(api, [(ip, port), (sni_ip, port)])

    def request(new: tuple[Any, bytes] | None = None, **settings: Any) -> WindowsInstallRequest:
        key, der = new or pki.leaf(["www.example.test"], ec.generate_private_key(ec.SECP256R1()))
        opts = dict(enabled=True, verify_address=sni_ip, verify_timeout=2.0)
        opts.update(settings)
        return WindowsInstallRequest(
            job_id="job-win-1", location=LocationKey("windows", "LocalMachine\\My", old_thumb, 0), key=key,
            cert_der=der, chain_ders=pki.chain_ders, expected_old_fingerprint=hashlib.sha256(old_der).hexdigest(),
            settings=WindowsSettings(**opts), confirmations=2, settle=0.05, probe_timeout=1.0)

    try:
        yield Scene(api, server, ip, sni_ip, port, old_der, old_thumb, other_thumb, request)
    finally:
        server.close()


def steps(result) -> list[tuple[str, bool]]:  # noqa: ANN001
    return [(s.step, s.ok) for s in result.steps]


def test_install_imports_rebinds_every_binding_verifies_and_removes_the_old(
        scene: Scene, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert scene.served(scene.ip) == scene.old_fp                       # before: the old certificate
    req = scene.request()
    new_thumb = thumbprint_of(req.cert_der)

    result = install_windows(req, tmp_path, api=scene.api)

    assert result.state == VERIFIED, result.reason
    assert steps(result) == [("check", True), ("backup", True), ("write", True), ("reload", True),
                             ("verify", True), ("cleanup", True)]
    # every binding that used the old thumbprint now names the new one; the other site's is untouched
    assert scene.table() == {f"{scene.ip}:{scene.port}": new_thumb, f"www.example.test:{scene.port}": new_thumb,
                             f"other.example.test:{scene.port}": scene.other_thumb}
    # and really serves it: a handshake of our own, after the install
    assert scene.served(scene.ip) == req.new_fingerprint
    assert scene.served(scene.sni_ip, "www.example.test") == req.new_fingerprint
    assert scene.served(scene.sni_ip, "other.example.test") != req.new_fingerprint
    verify = next(s for s in result.steps if s.step == "verify")
    assert f"{scene.ip}:{scene.port}" in verify.detail and "www.example.test" in verify.detail
    assert "chain valid for www.example.test" in verify.detail
    # imported non-exportable (the old key was not exportable) with the old friendly name; intermediates to CA
    assert ("import_pfx", "My", False, "www (2025)") in scene.api.calls
    assert scene.api.record(new_thumb).key.export_policy == 0
    assert scene.api.thumbs("CA") == [thumbprint_of(req.chain_ders[0])]
    # the replaced certificate is gone, with its key, on purpose and in the steps
    assert scene.old_thumb not in scene.api.thumbs()
    assert ("delete", "My", scene.old_thumb, True) in scene.api.calls
    cleanup = next(s for s in result.steps if s.step == "cleanup")
    assert scene.old_thumb in cleanup.detail and "and its key" in cleanup.detail
    # the rebinding went through netsh's selectors, keeping the store name
    updates = [c for c in scene.api.calls if c[0] == "update_sslcert"]
    assert updates == [("update_sslcert", f"ipport={scene.ip}:{scene.port}", new_thumb, "My"),
                       ("update_sslcert", f"hostnameport=www.example.test:{scene.port}", new_thumb, "My")]
    # the bindings as they were are recorded for the operator
    backup = json.loads((tmp_path / "backups" / "job-win-1" / BACKUP_FILE).read_text())
    assert backup["old_thumbprint"] == scene.old_thumb and len(backup["bindings"]) == 2

    # nothing secret anywhere: the one-time PFX password is in no log line, step, result or file
    [password] = scene.api.passwords
    assert len(password) >= 32
    assert password not in caplog.text
    assert password not in json.dumps(result.to_dict())
    assert password not in (tmp_path / "backups" / "job-win-1" / BACKUP_FILE).read_text()
    assert password not in repr(scene.api.calls)


def test_service_keeps_serving_the_old_certificate_rolls_back(scene: Scene, tmp_path: Path) -> None:
    scene.api.stuck = True            # netsh "succeeds" but http.sys keeps serving the old certificate
    req = scene.request()
    new_thumb = thumbprint_of(req.cert_der)

    result = install_windows(req, tmp_path, api=scene.api)

    assert result.state == ROLLED_BACK
    assert f"still serves {scene.old_fp}" in result.reason
    assert steps(result) == [("check", True), ("backup", True), ("write", True), ("reload", True),
                             ("verify", False), ("rollback.restore", True), ("rollback.verify", True)]
    # bindings pointed back at the old thumbprint, the new certificate and its key removed, old one kept
    restores = [c for c in scene.api.calls if c[0] == "update_sslcert" and c[2] == scene.old_thumb]
    assert [c[1] for c in restores] == [f"ipport={scene.ip}:{scene.port}",
                                        f"hostnameport=www.example.test:{scene.port}"]
    assert [c[3] for c in restores] == ["MY", "My"]                    # each binding's own store name, as it was
    assert ("delete", "My", new_thumb, True) in scene.api.calls
    assert new_thumb not in scene.api.thumbs() and scene.old_thumb in scene.api.thumbs()
    assert scene.served(scene.ip) == scene.old_fp
    assert not result.written


def test_a_failed_rebinding_restores_the_ones_already_changed(scene: Scene, tmp_path: Path) -> None:
    scene.api.fail_update = {f"www.example.test:{scene.port}"}
    req = scene.request()
    new_thumb = thumbprint_of(req.cert_der)

    result = install_windows(req, tmp_path, api=scene.api)

    assert result.state == ROLLED_BACK
    assert f"rebinding www.example.test:{scene.port} failed" in result.reason and "Error: 1312" in result.reason
    assert steps(result) == [("check", True), ("backup", True), ("write", True), ("reload", False),
                             ("rollback.restore", True), ("rollback.verify", True)]
    assert scene.table()[f"{scene.ip}:{scene.port}"] == scene.old_thumb
    assert scene.served(scene.ip) == scene.old_fp
    assert new_thumb not in scene.api.thumbs()


def test_exportable_only_when_the_old_key_was(pki: Pki, loopback: Callable[[int], str], tmp_path: Path) -> None:
    api = FakeWindowsApi()
    old_key, old_der = pki.leaf(["app.example.test"])
    old_thumb = api.add_cert("WebHosting", old_der, old_key, pki.chain_ders, exportable=True)
    new_key, new_der = pki.leaf(["app.example.test"])
    req = WindowsInstallRequest(
        job_id="job-win-2", location=LocationKey("windows", "LocalMachine\\WebHosting", old_thumb, 0), key=new_key,
        cert_der=new_der, chain_ders=pki.chain_ders, expected_old_fingerprint=hashlib.sha256(old_der).hexdigest(),
        settings=WindowsSettings(enabled=True, remove_replaced=False))
    result = install_windows(req, tmp_path, api=api)
    assert result.state == VERIFIED, result.reason
    assert ("import_pfx", "WebHosting", True, "") in api.calls
    verify = next(s for s in result.steps if s.step == "verify")
    assert "no http.sys binding uses this certificate" in verify.detail
    assert old_thumb in api.thumbs("WebHosting")                      # remove_replaced = false: kept
    assert not any(c[0] == "delete" for c in api.calls)


def test_changed_out_of_band_changes_nothing(scene: Scene, tmp_path: Path) -> None:
    req = scene.request()
    wrong = WindowsInstallRequest(**{**req.__dict__, "expected_old_fingerprint": "ab" * 32})
    result = install_windows(wrong, tmp_path, api=scene.api)
    assert result.state == FAILED and "changed out of band" in result.reason
    assert steps(result) == [("check", False)]
    assert not any(c[0] in ("import_pfx", "update_sslcert", "delete") for c in scene.api.calls)


def test_a_certificate_for_another_key_is_refused(scene: Scene, pki: Pki, tmp_path: Path) -> None:
    _, der = pki.leaf(["www.example.test"])
    req = scene.request(new=(ec.generate_private_key(ec.SECP256R1()), der))
    result = install_windows(req, tmp_path, api=scene.api)
    assert result.state == FAILED and "not for the new key" in result.reason
    assert not any(c[0] == "import_pfx" for c in scene.api.calls)


def test_an_import_failure_changes_no_binding(scene: Scene, tmp_path: Path) -> None:
    scene.api.fail_import = True
    result = install_windows(scene.request(), tmp_path, api=scene.api)
    assert result.state == FAILED and "Access is denied" in result.reason
    assert steps(result) == [("check", True), ("backup", True), ("write", False)]
    assert not any(c[0] == "update_sslcert" for c in scene.api.calls)
    assert scene.served(scene.ip) == scene.old_fp


def test_installing_again_is_harmless(scene: Scene, tmp_path: Path) -> None:
    req = scene.request()
    assert install_windows(req, tmp_path, api=scene.api).state == VERIFIED
    imports = sum(1 for c in scene.api.calls if c[0] == "import_pfx")
    again = install_windows(req, tmp_path, api=scene.api)
    assert again.state == VERIFIED, again.reason
    assert steps(again) == [("check", True), ("verify", True)]
    assert sum(1 for c in scene.api.calls if c[0] == "import_pfx") == imports


def test_the_install_dispatch_hands_windows_locations_to_the_windows_pipeline(scene: Scene, tmp_path: Path) -> None:
    """agent.install.request_for / install() hand windows locations to agent.install.windows."""
    from agent.config import parse_config
    from agent.install import install, request_for

    config = parse_config(f'[agent]\ndata_dir = "{tmp_path}"\n[windows]\nenabled = true\n')
    base = scene.request()
    req = request_for(config, job_id="job-win-3", location=base.location, key=base.key,
                      cert_der=base.cert_der, chain_ders=base.chain_ders,
                      expected_old_fingerprint=base.expected_old_fingerprint)
    assert isinstance(req, WindowsInstallRequest) and req.settings.enabled
    result = install(req, tmp_path)             # the real API: off Windows it fails cleanly, changing nothing
    assert result.state == FAILED and "only be read on Windows" in result.reason
    assert steps(result) == [("check", False)]
