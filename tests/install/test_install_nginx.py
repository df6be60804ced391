"""The install pipeline against a real nginx on loopback: write, reload, verify by handshake, roll back."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Callable

from agent.config import ReloadAction, StoreConfig, VerifyEndpoint, load_config
from agent.inventory import LocationKey
from agent.install import FAILED, ROLLED_BACK, VERIFIED, InstallRequest, install
from agent.keys import new_key

from tests.helpers.install_sites import Nginx, PemSite, TestCA, make_pem_site, served_fingerprint

SNI = "www.example.test"


def _store(site: PemSite) -> StoreConfig:
    return StoreConfig(name="web", type="pem", paths=(str(site.directory / "*.pem"),))


def _request(site: PemSite, ca: TestCA, n: Nginx, *, job: str = "job-1", key_file: Path | None = None,
             reload: list[str] | None = None, key_spec: str = "ec-p256", via_intermediate: bool = True,
             verify_timeout: float = 5.0, **kw: object) -> InstallRequest:
    key = new_key(key_spec)
    issued = ca.issue(key, (SNI,), via_intermediate=via_intermediate)
    kf = key_file if key_file is not None else (site.key_path if site.key_path != site.cert_path else None)
    return InstallRequest(
        job_id=job, location=LocationKey("pem", str(site.cert_path), "", 0), store=_store(site), key=key,
        cert_der=issued.cert_der, chain_ders=issued.chain_ders, expected_old_fingerprint=site.issued.fingerprint,
        key_file=str(kf) if kf else None, reload=ReloadAction("nginx", tuple(reload or n.reload_command), 10.0),
        verify=(VerifyEndpoint("127.0.0.1", n.port, SNI),), verify_timeout=verify_timeout, **kw,  # type: ignore[arg-type]
    )


def _snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def test_separate_cert_and_key_from_config(tmp_path: Path, ca: TestCA, nginx: Callable[..., Nginx]) -> None:
    site = make_pem_site(tmp_path / "site", ca, "separate")
    n = nginx(site.nginx_cert, site.nginx_key)
    assert served_fingerprint(n.port) == site.issued.fingerprint
    cfg_path = tmp_path / "agent.toml"
    cmd = ", ".join(json.dumps(a) for a in n.reload_command)
    cfg_path.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[reload.nginx]\ncommand = [{cmd}]\ntimeout = "10s"\n'
        f'[[store]]\nname = "web"\ntype = "pem"\npaths = ["{site.directory}/*.pem"]\nreload = "nginx"\n'
        f'verify_timeout = "5s"\n'
        f'[[store.verify]]\nhost = "127.0.0.1"\nport = {n.port}\nsni = "{SNI}"\n'
    )
    cfg = load_config(cfg_path)
    key = new_key("ec-p256")
    issued = ca.issue(key, (SNI,), via_intermediate=False)
    req = InstallRequest.from_config(
        cfg, job_id="job-sep", location=LocationKey("pem", str(site.cert_path), "", 0), key=key,
        cert_der=issued.cert_der, chain_ders=issued.chain_ders, expected_old_fingerprint=site.issued.fingerprint,
        chain_file=str(site.chain_path),
    )
    assert req.key_file == str(site.key_path)        # found beside the certificate by its public key
    assert req.reload is not None and req.reload.name == "nginx"
    seen: list[tuple[str, str]] = []
    res = install(req, cfg.data_dir, on_step=lambda s, d: seen.append((s, d)))
    assert res.state == VERIFIED, res.reason
    assert [s.step for s in res.steps] == ["check", "backup", "write", "reload", "verify"]
    assert [s for s, _ in seen] == ["check", "backup", "write", "reload", "verify"]
    assert res.verified_by == "endpoints"
    assert all(ok for (_, ok, _, _) in res.steps)
    assert res.served_fingerprint == issued.fingerprint == served_fingerprint(n.port)
    assert res.reload_seconds is not None and 0 < res.reload_seconds < 5
    assert "chain valid" in res.steps[-1].detail
    # The layout is kept: leaf alone, key alone (PKCS#8 as openssl wrote it), chain file with the root.
    assert site.cert_path.read_bytes() == issued.cert_pem
    assert site.key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert site.chain_path is not None and site.chain_path.read_bytes() == issued.chain_pem(with_root=True)
    # The backup holds the old files, private to the agent.
    backup = Path(res.backup_dir or "")
    meta = json.loads((backup / "backup.json").read_text())
    assert meta["old_fingerprint"] == site.issued.fingerprint and meta["new_fingerprint"] == issued.fingerprint
    assert {f["path"] for f in meta["files"]} == {str(site.cert_path), str(site.key_path), str(site.chain_path)}
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((backup / f["backup"]).stat().st_mode) == 0o600 for f in meta["files"])
    assert (backup / meta["files"][0]["backup"]).read_bytes() == site.issued.cert_pem
    # Secrets never reach the result.
    assert b"PRIVATE" not in json.dumps(res.to_dict()).encode()

    # Idempotent: the same install again is verified without a write or a reload.
    mtime = site.cert_path.stat().st_mtime_ns
    again = install(req, cfg.data_dir)
    assert again.state == VERIFIED, again.reason
    assert [s.step for s in again.steps] == ["check", "verify"] and "nothing written" in again.steps[-1].detail
    assert site.cert_path.stat().st_mtime_ns == mtime and again.reload_seconds is None


def test_fullchain_layout_serves_the_new_chain(tmp_path: Path, ca: TestCA, nginx: Callable[..., Nginx]) -> None:
    site = make_pem_site(tmp_path / "site", ca, "fullchain")
    n = nginx(site.nginx_cert, site.nginx_key)
    req = _request(site, ca, n, chain_file=site.chain_path)
    res = install(req, tmp_path / "data")
    assert res.state == VERIFIED, res.reason
    assert served_fingerprint(n.port) == req.new_fingerprint
    from cryptography import x509

    certs = x509.load_pem_x509_certificates(site.cert_path.read_bytes())
    assert [c.subject for c in certs] == [x509.load_der_x509_certificate(d).subject
                                        for d in (req.cert_der, *req.chain_ders[:-1])]
    assert site.chain_path is not None and len(x509.load_pem_x509_certificates(site.chain_path.read_bytes())) == 1


def test_combined_file_keeps_the_traditional_rsa_key(tmp_path: Path, ca: TestCA, nginx: Callable[..., Nginx]) -> None:
    site = make_pem_site(tmp_path / "site", ca, "combined", kind="rsa", traditional=True)
    assert site.cert_path.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    n = nginx(site.nginx_cert, site.nginx_key)
    req = _request(site, ca, n, key_spec="rsa-2048")
    res = install(req, tmp_path / "data")
    assert res.state == VERIFIED, res.reason
    data = site.cert_path.read_bytes()
    assert data.startswith(b"-----BEGIN RSA PRIVATE KEY-----") and data.count(b"BEGIN CERTIFICATE") == 2
    assert stat.S_IMODE(site.cert_path.stat().st_mode) == 0o600
    assert served_fingerprint(n.port) == req.new_fingerprint


def test_key_written_to_the_wrong_file_fails_the_reload_and_rolls_back(
        tmp_path: Path, ca: TestCA, nginx: Callable[..., Nginx]) -> None:
    # nginx reads key.pem; a stale copy of the same key (key2.pem) also matches the certificate, and the
    # install is told to write the new key there: the certificate nginx loads no longer matches its key.
    site = make_pem_site(tmp_path / "site", ca, "fullchain")
    stale = site.directory / "key2.pem"
    stale.write_bytes(site.key_path.read_bytes())
    n = nginx(site.nginx_cert, site.nginx_key)
    before = _snapshot(site.cert_path, site.key_path, stale)
    res = install(_request(site, ca, n, key_file=stale), tmp_path / "data")
    assert res.state == ROLLED_BACK
    assert res.reason.startswith("reload failed: nginx exit 1: ") and "key values mismatch" in res.reason
    assert [(s.step, s.ok) for s in res.steps] == [
        ("check", True), ("backup", True), ("write", True), ("reload", False),
        ("rollback.restore", True), ("rollback.reload", True), ("rollback.verify", True)]
    assert _snapshot(site.cert_path, site.key_path, stale) == before
    assert served_fingerprint(n.port) == site.issued.fingerprint        # nginx kept serving the old one
    assert res.served_fingerprint == site.issued.fingerprint and not res.written


def test_reload_command_exiting_non_zero_rolls_back(tmp_path: Path, ca: TestCA, nginx: Callable[..., Nginx]) -> None:
    site = make_pem_site(tmp_path / "site", ca, "fullchain")
    n = nginx(site.nginx_cert, site.nginx_key)
    before = _snapshot(site.cert_path, site.key_path)
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('reload: service is masked\\n'); sys.exit(3)"]
    res = install(_request(site, ca, n, reload=failing), tmp_path / "data")
    assert res.state == ROLLED_BACK
    prog = os.path.basename(sys.executable)
    assert res.reason.startswith(f"reload failed: {prog} exit 3: reload: service is masked")
    assert "the reload after the restore failed too" in res.reason
    assert _snapshot(site.cert_path, site.key_path) == before
    assert served_fingerprint(n.port) == site.issued.fingerprint


def test_reload_that_does_nothing_is_caught_by_the_handshake(
        tmp_path: Path, ca: TestCA, nginx: Callable[..., Nginx]) -> None:
    # The certbot #8528 lesson: a reload hook that "succeeds" proves nothing.
    site = make_pem_site(tmp_path / "site", ca, "fullchain")
    n = nginx(site.nginx_cert, site.nginx_key)
    before = _snapshot(site.cert_path, site.key_path)
    res = install(_request(site, ca, n, reload=["true"], verify_timeout=1.0), tmp_path / "data")
    assert res.state == ROLLED_BACK
    assert res.reason == f"endpoint 127.0.0.1:{n.port} (SNI {SNI}) still serves {site.issued.fingerprint}"
    assert _snapshot(site.cert_path, site.key_path) == before
    assert served_fingerprint(n.port) == site.issued.fingerprint


def test_chain_that_does_not_validate_rolls_back(tmp_path: Path, ca: TestCA, other_ca: TestCA,
                                                 nginx: Callable[..., Nginx]) -> None:
    # A leaf whose served chain does not lead to the configured root is not a success.
    site = make_pem_site(tmp_path / "site", ca, "fullchain")
    n = nginx(site.nginx_cert, site.nginx_key)
    res = install(_request(site, ca, n, ca_bundle=other_ca.root_pem, verify_timeout=1.0), tmp_path / "data")
    assert res.state == ROLLED_BACK
    assert "serves" in res.reason and "but its chain does not validate" in res.reason
    assert served_fingerprint(n.port) == site.issued.fingerprint


def test_out_of_band_change_fails_before_writing(tmp_path: Path, ca: TestCA, nginx: Callable[..., Nginx]) -> None:
    site = make_pem_site(tmp_path / "site", ca, "fullchain")
    n = nginx(site.nginx_cert, site.nginx_key)
    req = _request(site, ca, n)
    # Somebody renewed by hand since the last scan.
    manual = ca.issue(req.key, (SNI,))
    site.cert_path.write_bytes(manual.cert_pem + manual.chain_pem())
    before = _snapshot(site.cert_path, site.key_path)
    res = install(req, tmp_path / "data")
    assert res.state == FAILED
    assert res.reason == (f"changed out of band: {site.cert_path} holds {manual.fingerprint}, not "
                          f"{site.issued.fingerprint} as the registry expects; nothing was written")
    assert [s.step for s in res.steps] == ["check"]
    assert _snapshot(site.cert_path, site.key_path) == before and not (tmp_path / "data").exists()


def test_leaf_only_file_with_an_intermediate_is_verified_with_a_warning(
        tmp_path: Path, ca: TestCA, nginx: Callable[..., Nginx]) -> None:
    # cert.pem holds the leaf alone, so nginx sends no intermediate: the service was set up that way, and
    # refusing the renewal would only let the old certificate expire. Verified, with a warning that says so.
    site = make_pem_site(tmp_path / "site", ca, "separate")
    n = nginx(site.nginx_cert, site.nginx_key)
    res = install(_request(site, ca, n, via_intermediate=True), tmp_path / "data")
    assert res.state == VERIFIED, res.reason
    assert res.warnings == [f"endpoint 127.0.0.1:{n.port} (SNI {SNI}): the chain validates only with intermediate "
                            "certificates the service does not send; clients without them cannot validate it: "
                            "configure the full chain (leaf + intermediates)"]
    # A strict request refuses it and rolls back.
    strict = _request(site, ca, n, job="job-2", via_intermediate=True, allow_incomplete_chain=False,
                      verify_timeout=1.0)
    strict = InstallRequest(**{**strict.__dict__, "expected_old_fingerprint": res.new_fingerprint})
    res2 = install(strict, tmp_path / "data")
    assert res2.state == ROLLED_BACK and "but its chain does not validate" in res2.reason
    assert served_fingerprint(n.port) == res.new_fingerprint
