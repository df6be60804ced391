"""Writing renewed entries into real stores (made by openssl and keytool), read back by the real tools.

No service here: installs without a reload or endpoints (nginx tests are in test_install_nginx.py).
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from agent.config import Secret, StoreConfig
from agent.install import FAILED, VERIFIED, InstallRequest, install
from agent.inventory import MATCHES, PRIVATE_KEY_ENTRY, TRUSTED_CERTIFICATE, FoundCert, LocationKey
from agent.keys import load_pem_private_key, new_key, pem_key_style, same_public_key
from agent.stores import ReadContext, reader_for
from agent.stores.files import find_key_file

from tests.helpers.install_sites import TestCA, fp, keytool_list, make_pem_site, run


def _read(path: Path, store_type: str, password: str | None = None) -> list[FoundCert]:
    secret = Secret(password) if password is not None else None
    ctx = ReadContext(password=lambda: secret)
    entries = reader_for(store_type).read(str(path), path.read_bytes(), ctx)
    assert not ctx.problems, ctx.problems
    return entries


def _pw(sample_stores: dict, name: str) -> str:
    return Path(sample_stores["password_files"][name]).read_text().rstrip("\n")


def _colon_fp(hex_fp: str) -> str:
    return ":".join(hex_fp[i:i + 2] for i in range(0, len(hex_fp), 2)).upper()


def _install(tmp_path: Path, ca: TestCA, entry: FoundCert, store: StoreConfig, *, key_spec: str = "ec-p256",
             **kw: object):
    key = new_key(key_spec)
    issued = ca.issue(key, ("app.example.test",))
    req = InstallRequest(job_id="job-ks", location=entry.key, store=store, key=key, cert_der=issued.cert_der,
                         chain_ders=issued.chain_ders, expected_old_fingerprint=entry.fingerprint, **kw)  # type: ignore[arg-type]
    return install(req, tmp_path / "data"), issued, key


# --------------------------------------------------------------------------- PKCS#12

def test_pkcs12_from_openssl_entry_replaced(tmp_path: Path, ca: TestCA, sample_stores: dict) -> None:
    p12 = tmp_path / "server.p12"
    shutil.copyfile(sample_stores["files"]["p12"], p12)
    pw, pw_file = _pw(sample_stores, "p12"), Path(sample_stores["password_files"]["p12"])
    old = [e for e in _read(p12, "pkcs12", pw) if e.key.chain_index == 0][0]
    assert old.key.alias == "server"
    store = StoreConfig("tomcat", "pkcs12", (str(p12),), password_file=str(pw_file))
    res, issued, key = _install(tmp_path, ca, old, store)
    assert res.state == VERIFIED, res.reason
    listing = keytool_list(p12, pw_file, "PKCS12")                  # the same store password opens it
    assert "Your keystore contains 1 entry" in listing and "Alias name: server" in listing
    assert _colon_fp(issued.fingerprint) in listing and _colon_fp(old.fingerprint) not in listing
    assert f"Serial number: {issued.serial:x}" in listing
    assert "Certificate chain length: 3" in listing
    entries = _read(p12, "pkcs12", pw)
    assert entries[0].fingerprint == issued.fingerprint and entries[0].key_match == MATCHES
    # openssl reads it too (the password from a file, never a command line)
    out = run("openssl", "pkcs12", "-in", str(p12), "-passin", f"file:{pw_file}", "-nodes", "-nocerts")
    assert same_public_key(load_pem_private_key(out[out.index("-----BEGIN"):].encode()), key)


def test_pkcs12_from_keytool_keeps_its_trusted_entry(tmp_path: Path, ca: TestCA, sample_stores: dict) -> None:
    p12 = tmp_path / "keytool.p12"
    shutil.copyfile(sample_stores["files"]["keytool_p12"], p12)
    pw, pw_file = _pw(sample_stores, "p12"), Path(sample_stores["password_files"]["p12"])
    entries = _read(p12, "pkcs12", pw)
    old = next(e for e in entries if e.key.alias == "tomcat")
    trusted = next(e for e in entries if e.entry_type == TRUSTED_CERTIFICATE)
    store = StoreConfig("tomcat", "pkcs12", (str(p12),), password_file=str(pw_file))
    res, issued, _ = _install(tmp_path, ca, old, store)
    assert res.state == VERIFIED, res.reason
    listing = keytool_list(p12, pw_file, "PKCS12")
    assert "Your keystore contains 2 entries" in listing
    assert "Alias name: sample-root\n" in listing and "Entry type: trustedCertEntry" in listing
    assert _colon_fp(issued.fingerprint) in listing and _colon_fp(old.fingerprint) not in listing
    assert _colon_fp(trusted.fingerprint) in listing


def test_pkcs12_with_two_keys_is_refused(tmp_path: Path, ca: TestCA, sample_stores: dict) -> None:
    p12 = tmp_path / "two.p12"
    shutil.copyfile(sample_stores["files"]["keytool_p12"], p12)
    pw, pw_file = _pw(sample_stores, "p12"), Path(sample_stores["password_files"]["p12"])
    run("keytool", "-genkeypair", "-alias", "second", "-keyalg", "EC", "-groupname", "secp256r1",
        "-dname", "CN=second.example.test", "-validity", "30", "-storetype", "PKCS12",
        "-keystore", str(p12), "-storepass:file", str(pw_file))
    before = p12.read_bytes()
    old = next(e for e in _read(p12, "pkcs12", pw) if e.entry_type == PRIVATE_KEY_ENTRY and e.key.chain_index == 0)
    store = StoreConfig("tomcat", "pkcs12", (str(p12),), password_file=str(pw_file))
    res, _, _ = _install(tmp_path, ca, old, store)
    assert res.state == FAILED and "holds 2 private keys" in res.reason and "nothing was written" in res.reason
    assert p12.read_bytes() == before


# --------------------------------------------------------------------------- JKS / JCEKS

@pytest.mark.parametrize("kind", ["jks", "jceks"])
def test_java_keystore_entry_replaced_others_kept(tmp_path: Path, ca: TestCA, sample_stores: dict, kind: str) -> None:
    ks = tmp_path / f"app.{kind}"
    shutil.copyfile(sample_stores["files"][kind], ks)
    pw, pw_file = _pw(sample_stores, "jks"), Path(sample_stores["password_files"]["jks"])
    other_pw = tmp_path / "other.pass"
    other_pw.write_text("other-key-pass\n")
    # Another private-key entry with its own key password: it must survive byte for byte.
    run("keytool", "-genkeypair", "-alias", "other", "-keyalg", "EC", "-groupname", "secp256r1",
        "-dname", "CN=other.example.test", "-validity", "30", "-storetype", kind.upper(), "-keystore", str(ks),
        "-storepass:file", str(pw_file), "-keypass:file", str(other_pw))
    entries = _read(ks, kind, pw)
    old = next(e for e in entries if e.key.alias == "app" and e.key.chain_index == 0)
    other = next(e for e in entries if e.key.alias == "other")
    trusted = next(e for e in entries if e.entry_type == TRUSTED_CERTIFICATE)
    store = StoreConfig("java", "jks", (str(ks),), password_file=str(pw_file))
    res, issued, key = _install(tmp_path, ca, old, store)
    assert res.state == VERIFIED, res.reason

    listing = keytool_list(ks, pw_file, kind.upper())
    assert "Your keystore contains 3 entries" in listing
    assert _colon_fp(issued.fingerprint) in listing and _colon_fp(old.fingerprint) not in listing
    assert f"Serial number: {issued.serial:x}" in listing
    assert _colon_fp(other.fingerprint) in listing and _colon_fp(trusted.fingerprint) in listing
    after = {(e.key.alias, e.key.chain_index): e for e in _read(ks, kind, pw)}
    assert after[("app", 0)].fingerprint == issued.fingerprint and after[("app", 0)].key_match == MATCHES
    assert [after[("app", i)].der for i in (1, 2)] == list(issued.chain_ders)

    # Java itself opens the new key with the store password, and the other key with its own.
    out = tmp_path / "export.p12"
    run("keytool", "-importkeystore", "-noprompt", "-srckeystore", str(ks), "-srcstoretype", kind.upper(),
        "-srcstorepass:file", str(pw_file), "-srcalias", "app", "-destkeystore", str(out),
        "-deststoretype", "PKCS12", "-deststorepass:file", str(pw_file))
    pem = run("openssl", "pkcs12", "-in", str(out), "-passin", f"file:{pw_file}", "-nodes", "-nocerts")
    assert same_public_key(load_pem_private_key(pem[pem.index("-----BEGIN"):].encode()), key)
    run("keytool", "-importkeystore", "-noprompt", "-srckeystore", str(ks), "-srcstoretype", kind.upper(),
        "-srcstorepass:file", str(pw_file), "-srcalias", "other", "-srckeypass:file", str(other_pw),
        "-destkeystore", str(tmp_path / "other.p12"), "-deststoretype", "PKCS12",
        "-deststorepass:file", str(pw_file))


def test_wrong_store_password_and_trusted_location_are_refused(tmp_path: Path, ca: TestCA,
                                                               sample_stores: dict) -> None:
    ks = tmp_path / "app.jks"
    shutil.copyfile(sample_stores["files"]["jks"], ks)
    before = ks.read_bytes()
    entries = _read(ks, "jks", _pw(sample_stores, "jks"))
    app = next(e for e in entries if e.key.alias == "app" and e.key.chain_index == 0)
    res, _, _ = _install(tmp_path, ca, app, StoreConfig("java", "jks", (str(ks),), password=Secret("Zx9-not-it")))
    assert res.state == FAILED and "does not open the JKS keystore (wrong password" in res.reason
    assert "Zx9" not in repr(res) and "Zx9" not in str(res.to_dict())
    trusted = next(e for e in entries if e.entry_type == TRUSTED_CERTIFICATE)
    store = StoreConfig("java", "jks", (str(ks),), password_file=sample_stores["password_files"]["jks"])
    res, _, _ = _install(tmp_path, ca, trusted, store)
    assert res.state == FAILED and res.reason == (
        f"{ks}: entry 'sample-root' is not a private-key entry; only those are renewed; nothing was written")
    assert ks.read_bytes() == before


# --------------------------------------------------------------------------- PEM: encrypted keys, files, links

@pytest.mark.parametrize("name,style", [("encrypted_key", "pkcs8"), ("legacy_encrypted", "traditional")])
def test_encrypted_pem_key_is_encrypted_again(tmp_path: Path, ca: TestCA, sample_stores: dict, name: str,
                                              style: str) -> None:
    pem = tmp_path / "site.pem"
    shutil.copyfile(sample_stores["files"][name], pem)
    os.chmod(pem, 0o640)
    key_pw_file = sample_stores["password_files"]["key"]
    old = _read(pem, "pem")[0]
    # Without a password the key cannot be written encrypted again: refused, nothing written.
    before = pem.read_bytes()
    res, _, _ = _install(tmp_path, ca, old, StoreConfig("web", "pem", (str(pem),)), key_spec="rsa-2048")
    assert res.state == FAILED and "encrypted" in res.reason and "password" in res.reason
    assert pem.read_bytes() == before
    # With the store password it is.
    store = StoreConfig("web", "pem", (str(pem),), password_file=key_pw_file)
    res, issued, key = _install(tmp_path, ca, old, store, key_spec="rsa-2048")
    assert res.state == VERIFIED, res.reason
    data = pem.read_bytes()
    key_block = data[data.index(b"-----BEGIN", data.index(b"-----END CERTIFICATE-----")):]
    assert pem_key_style(key_block) == (style, True)
    password = _pw(sample_stores, "key")
    assert same_public_key(load_pem_private_key(key_block, password), key)
    assert stat.S_IMODE(pem.stat().st_mode) == 0o640
    run("openssl", "pkey", "-in", str(pem), "-passin", f"file:{key_pw_file}", "-noout")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="changing a file's owner needs root")
def test_owner_group_mode_and_symlinks_are_kept(tmp_path: Path, ca: TestCA) -> None:
    # certbot's layout: live/ holds links into archive/
    site = make_pem_site(tmp_path / "archive", ca, "fullchain")
    live = tmp_path / "live"
    live.mkdir()
    (live / "fullchain.pem").symlink_to(site.cert_path)
    (live / "privkey.pem").symlink_to(site.key_path)
    os.chown(site.cert_path, 4321, 4322)
    os.chmod(site.cert_path, 0o644)
    os.chown(site.key_path, 4321, 4322)
    os.chmod(site.key_path, 0o640)
    key = new_key("ec-p384")
    issued = ca.issue(key)
    req = InstallRequest(job_id="job-own", location=LocationKey("pem", str(live / "fullchain.pem"), "", 0),
                         store=StoreConfig("web", "pem", (str(live / "*.pem"),)), key=key, cert_der=issued.cert_der,
                         chain_ders=issued.chain_ders, expected_old_fingerprint=site.issued.fingerprint,
                         key_file=str(live / "privkey.pem"))
    res = install(req, tmp_path / "data")
    assert res.state == VERIFIED, res.reason
    assert (live / "fullchain.pem").is_symlink() and (live / "privkey.pem").is_symlink()
    for path, mode in ((site.cert_path, 0o644), (site.key_path, 0o640)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 4322, mode)
    assert fp(serialization.load_pem_private_key(site.key_path.read_bytes(), None).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)) == fp(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert not [p for p in site.directory.iterdir() if "certfleet-tmp" in p.name]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write to read-only directories")
def test_unwritable_directory_fails_before_writing(tmp_path: Path, ca: TestCA) -> None:  # pragma: no cover - non-root
    site = make_pem_site(tmp_path / "site", ca, "combined")
    key = new_key("ec-p256")
    issued = ca.issue(key)
    os.chmod(site.directory, 0o555)
    try:
        req = InstallRequest(job_id="j", location=LocationKey("pem", str(site.cert_path), "", 0),
                             store=StoreConfig("web", "pem", (str(site.cert_path),)), key=key,
                             cert_der=issued.cert_der, expected_old_fingerprint=site.issued.fingerprint)
        res = install(req, tmp_path / "data")
        assert res.state == FAILED and "is not writable by the agent" in res.reason
    finally:
        os.chmod(site.directory, 0o755)


def test_find_key_file(tmp_path: Path, ca: TestCA) -> None:
    sep = make_pem_site(tmp_path / "sep", ca, "fullchain")
    (sep.directory / "other.key").write_bytes(
        new_key("ec-p256").private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    assert find_key_file(str(sep.cert_path), sep.issued.cert_der) == str(sep.key_path)
    assert find_key_file(str(sep.cert_path), sep.issued.cert_der,
                         [str(sep.directory / "other.key"), str(sep.key_path)]) == str(sep.key_path)
    assert find_key_file(str(sep.cert_path), sep.issued.cert_der, [str(sep.directory / "other.key")]) is None
    # candidates in other directories are not considered
    elsewhere = tmp_path / "elsewhere.pem"
    shutil.copyfile(sep.key_path, elsewhere)
    assert find_key_file(str(sep.cert_path), sep.issued.cert_der, [str(elsewhere)]) is None
    combined = make_pem_site(tmp_path / "comb", ca, "combined")
    assert find_key_file(str(combined.cert_path), combined.issued.cert_der) == str(combined.cert_path)


def test_inconsistent_requests_write_nothing(tmp_path: Path, ca: TestCA) -> None:
    site = make_pem_site(tmp_path / "site", ca, "fullchain")
    before = {p: p.read_bytes() for p in (site.cert_path, site.key_path)}
    key, stranger = new_key("ec-p256"), new_key("ec-p256")
    issued = ca.issue(stranger)
    base = dict(job_id="j", location=LocationKey("pem", str(site.cert_path), "", 0),
                store=StoreConfig("web", "pem", (str(site.cert_path),)), cert_der=issued.cert_der,
                chain_ders=issued.chain_ders, expected_old_fingerprint=site.issued.fingerprint)
    res = install(InstallRequest(key=key, key_file=str(site.key_path), **base), tmp_path / "data")  # type: ignore[arg-type]
    assert res.state == FAILED and res.reason == "the new certificate is not for the new key; nothing was written"
    res = install(InstallRequest(key=stranger, **base), tmp_path / "data")  # type: ignore[arg-type]
    assert res.state == FAILED and "no private key in this file and no key file named" in res.reason
    other_key = tmp_path / "site" / "unrelated.pem"
    other_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    res = install(InstallRequest(key=stranger, key_file=str(other_key), **base), tmp_path / "data")  # type: ignore[arg-type]
    assert res.state == FAILED and res.reason.startswith("changed out of band: the key file")
    assert {p: p.read_bytes() for p in (site.cert_path, site.key_path)} == before
    assert not (tmp_path / "data").exists()


def test_already_in_place_without_endpoints_is_verified_without_a_write(tmp_path: Path, ca: TestCA) -> None:
    site = make_pem_site(tmp_path / "site", ca, "combined")
    key = new_key("ec-p256")
    issued = ca.issue(key)
    req = InstallRequest(job_id="j", location=LocationKey("pem", str(site.cert_path), "", 0),
                         store=StoreConfig("web", "pem", (str(site.cert_path),)), key=key, cert_der=issued.cert_der,
                         chain_ders=issued.chain_ders, expected_old_fingerprint=site.issued.fingerprint)
    first = install(req, tmp_path / "data")
    assert first.state == VERIFIED and first.written
    mtime = site.cert_path.stat().st_mtime_ns
    again = install(req, tmp_path / "data")
    assert again.state == VERIFIED and not again.written and [s.step for s in again.steps] == ["check"]
    # nothing probed it (the store has no verify entry): the job says so rather than "verified" alone
    assert first.verified_by == again.verified_by == "none"
    assert site.cert_path.stat().st_mtime_ns == mtime
