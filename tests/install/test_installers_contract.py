"""The contract every install pipeline keeps, one suite subclassed once per pipeline.

An :class:`~agent.install.pipeline.Installer` builds its request from the agent's configuration
and runs it. Every pipeline must:

- verify what is served: the result is ``verified`` only once a real TLS handshake shows the new
  certificate; its steps are named from agent.install.pipeline.STEPS, start with ``check``, were
  announced in the order they were recorded, and hold no private key;
- be harmless when repeated: the same install again is ``verified`` with ``check`` and ``verify``
  only (nothing written, nothing reloaded);
- roll back a service that keeps serving the old certificate: ``rolled_back``, the reason names
  what is served, and the old certificate is served again;
- change nothing when the location changed out of band, or when the certificate is not for the
  key made for it: ``failed`` at ``check``.

The file pipeline runs for real (real files, real nginx on loopback); the Windows pipeline over
its boundary fake, whose http.sys serves real TLS on loopback. Adding a pipeline: a subclass here.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.config import AgentConfig, load_config, parse_config
from agent.install import INSTALLERS, Installer, installer_for
from agent.install.files import FileInstaller
from agent.install.pipeline import FAILED, ROLLED_BACK, STEPS, VERIFIED
from agent.install.windows import WindowsInstaller
from agent.inventory import LocationKey
from agent.keys import new_key
from agent.probe import probe

from tests.helpers.agent_windows_fakes import FakeHttpSys, FakeWindowsApi, Pki, free_port
from tests.helpers.install_sites import Nginx, TestCA, make_pem_site, nginx_binary, served_fingerprint


@dataclass
class InstallScene:
    installer: Installer
    config: Callable[[bool], AgentConfig]     # the agent's config; True: one whose service keeps the old certificate
    location: LocationKey
    old_fingerprint: str
    issue: Callable[[Any], tuple[bytes, tuple[bytes, ...]]]   # a certificate (and chain) for a key
    served: Callable[[], str]                 # what the service serves now, by a real handshake
    data_dir: Path
    stuck: Callable[[], None] = lambda: None  # make the service keep serving what it serves
    cleanup: list = field(default_factory=list)   # type: ignore[type-arg]


class InstallerContract:
    """Subclass with ``make(tmp_path) -> InstallScene``."""

    __test__ = False

    def make(self, tmp_path: Path) -> InstallScene:
        raise NotImplementedError

    @pytest.fixture
    def scene(self, tmp_path: Path) -> Iterator[InstallScene]:
        s = self.make(tmp_path)
        try:
            yield s
        finally:
            for stop in s.cleanup:
                stop()

    @staticmethod
    def request(scene: InstallScene, *, stuck: bool = False, job: str = "job-contract-1", key: Any = None,
                cert_for: Any = None, expected: str | None = None) -> Any:
        key = key or new_key("ec-p256")
        cert_der, chain = scene.issue(cert_for or key)
        return scene.installer.request(
            scene.config(stuck), job_id=job, location=scene.location, key=key, cert_der=cert_der, chain_ders=chain,
            expected_old_fingerprint=expected if expected is not None else scene.old_fingerprint)

    # ----------------------------------------------------------------- the contract

    def test_verified_only_once_the_new_certificate_is_served(self, scene: InstallScene) -> None:
        req = self.request(scene)
        announced: list[str] = []
        result = scene.installer.install(req, scene.data_dir, on_step=lambda step, detail: announced.append(step))
        assert result.state == VERIFIED, result.reason
        assert scene.served() == req.new_fingerprint == result.served_fingerprint == result.new_fingerprint
        assert result.old_fingerprint == scene.old_fingerprint and result.written and result.reason == ""
        names = [s.step for s in result.steps]
        assert names[0] == "check" and {"write", "verify"} <= set(names) and set(names) <= set(STEPS)
        assert all(s.ok for s in result.steps)
        assert announced == names
        assert "PRIVATE KEY" not in json.dumps(result.to_dict())

    def test_installing_again_is_harmless(self, scene: InstallScene) -> None:
        req = self.request(scene)
        assert scene.installer.install(req, scene.data_dir).state == VERIFIED
        again = scene.installer.install(req, scene.data_dir)
        assert again.state == VERIFIED, again.reason
        assert [(s.step, s.ok) for s in again.steps] == [("check", True), ("verify", True)]
        assert scene.served() == req.new_fingerprint

    def test_a_service_that_keeps_the_old_certificate_is_rolled_back(self, scene: InstallScene) -> None:
        scene.stuck()
        req = self.request(scene, stuck=True)
        result = scene.installer.install(req, scene.data_dir)
        assert result.state == ROLLED_BACK, result.reason
        assert f"still serves {scene.old_fingerprint}" in result.reason and not result.written
        names = [(s.step, s.ok) for s in result.steps]
        assert ("verify", False) in names and ("rollback.restore", True) in names and names[-1][1]
        assert scene.served() == scene.old_fingerprint

    def test_a_location_changed_out_of_band_is_left_alone(self, scene: InstallScene) -> None:
        req = self.request(scene, expected="ab" * 32)
        result = scene.installer.install(req, scene.data_dir)
        assert result.state == FAILED and "changed out of band" in result.reason
        assert [(s.step, s.ok) for s in result.steps] == [("check", False)]
        assert scene.served() == scene.old_fingerprint

    def test_a_certificate_for_another_key_is_refused(self, scene: InstallScene) -> None:
        req = self.request(scene, cert_for=ec.generate_private_key(ec.SECP256R1()))
        result = scene.installer.install(req, scene.data_dir)
        assert result.state == FAILED and "not for the new key" in result.reason
        assert [(s.step, s.ok) for s in result.steps] == [("check", False)]
        assert scene.served() == scene.old_fingerprint


class TestFileInstaller(InstallerContract):
    """PEM files served by a real nginx on loopback, reloaded by the store's [reload.nginx] action."""

    __test__ = True

    def make(self, tmp_path: Path) -> InstallScene:
        binary = nginx_binary()
        if binary is None:
            pytest.skip("needs Debian's nginx (apt-get install nginx; packaging/dev/setup.sh installs it)")
        ca = TestCA("Certfleet Installer Contract")
        site = make_pem_site(tmp_path / "site", ca, "separate")
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        n = Nginx(binary, prefix, site.nginx_cert, site.nginx_key)

        def config(stuck: bool) -> AgentConfig:
            command = ["true"] if stuck else n.reload_command       # "true": a reload that changes nothing
            path = tmp_path / ("stuck.toml" if stuck else "agent.toml")
            path.write_text(
                f'[agent]\ndata_dir = "{tmp_path / "data"}"\n'
                f'[reload.nginx]\ncommand = {json.dumps(command)}\ntimeout = "10s"\n'
                f'[[store]]\nname = "web"\ntype = "pem"\npaths = ["{site.directory}/*.pem"]\nreload = "nginx"\n'
                f'verify_timeout = "3s"\n[[store.verify]]\nhost = "127.0.0.1"\nport = {n.port}\n'
                f'sni = "www.example.test"\n')
            os.chmod(path, 0o600)
            return load_config(path)

        def issue(key: Any) -> tuple[bytes, tuple[bytes, ...]]:
            issued = ca.issue(key, ("www.example.test",))
            return issued.cert_der, issued.chain_ders

        return InstallScene(FileInstaller(), config, LocationKey("pem", str(site.cert_path), "", 0),
                            site.issued.fingerprint, issue, lambda: served_fingerprint(n.port), tmp_path / "data",
                            cleanup=[n.stop])


class TestWindowsInstaller(InstallerContract):
    """The Windows store over its boundary fake; its http.sys serves real TLS on a loopback address."""

    __test__ = True

    def make(self, tmp_path: Path) -> InstallScene:
        pki = Pki.make()
        api = FakeWindowsApi()
        old_key, old_der = pki.leaf(["www.example.test"])
        thumb = api.add_cert("My", old_der, old_key, pki.chain_ders, friendly_name="www")
        ip = f"127.251.{os.getpid() % 250}.21"
        port = free_port(ip)
        api.bind("ipport", ip, port, thumb)
        server = FakeHttpSys(api, [(ip, port)])

        def config(stuck: bool) -> AgentConfig:
            return parse_config(f'[agent]\ndata_dir = "{tmp_path / "data"}"\n'
                                f'[windows]\nenabled = true\nverify_address = "{ip}"\nverify_timeout = "3s"\n')

        def issue(key: Any) -> tuple[bytes, tuple[bytes, ...]]:
            return pki.leaf(["www.example.test"], key)[1], pki.chain_ders

        def stuck() -> None:
            api.stuck = True          # netsh "succeeds" but http.sys keeps serving the old certificate

        return InstallScene(WindowsInstaller(api), config, LocationKey("windows", "LocalMachine\\My", thumb, 0),
                            hashlib.sha256(old_der).hexdigest(), issue,
                            lambda: probe(ip, port, None, timeout=3).fingerprint, tmp_path / "data", stuck,
                            cleanup=[server.close])


def test_every_pipeline_the_dispatch_knows_has_a_contract_suite() -> None:
    chosen = {type(i) for i in INSTALLERS.values()} | {type(installer_for("pem"))}
    assert chosen == {FileInstaller, WindowsInstaller}
